"""SCRAPS's LSTM integrator: a sequence of encoder states summarised by an LSTM's final hidden state.

Unlike a mean, the final state depends on the order of the states, and a single integrator can be
shared by the phone and the speech side, so both are summarised by the same recurrence (the paper's
default). Padded steps are packed away, so a sequence gives the same vector alone or in a batch.
"""

from __future__ import annotations

from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence


class LstmIntegrator(nn.Module):
    """Read [B, T, input_size] states up to each row's length; return the last layer's final hidden state [B, hidden_size]."""

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1) -> None:
        super().__init__()
        self.lstm = nn.LSTM(input_size, hidden_size, num_layers=num_layers, batch_first=True)

    @property
    def hidden_size(self) -> int:
        return self.lstm.hidden_size

    def forward(self, states: Tensor, mask: Tensor) -> Tensor:
        if states.ndim != 3 or mask.shape != states.shape[:2]:
            raise ValueError(
                f"integrator needs states [B, T, D] and mask [B, T]; got {tuple(states.shape)} and {tuple(mask.shape)}"
            )
        lens = mask.sum(dim=1).clamp(min=1).cpu()
        packed = pack_padded_sequence(states, lens, batch_first=True, enforce_sorted=False)
        _, (hidden, _) = self.lstm(packed)
        return hidden[-1]

def build_integrators(kind: str, input_size: int, hidden_size: int, num_layers: int) -> nn.ModuleDict:
    """The integrators of the two sides: one module under both names ("shared"), one each ("separate"),
    or none ("none": the sides are mean-pooled, the ablation's baseline)."""
    if kind == "shared":
        shared = LstmIntegrator(input_size, hidden_size, num_layers)
        return nn.ModuleDict({"speech": shared, "phone": shared})
    if kind == "separate":
        return nn.ModuleDict({side: LstmIntegrator(input_size, hidden_size, num_layers) for side in ("speech", "phone")})
    if kind == "none":
        return nn.ModuleDict()
    raise ValueError(f"model.integrator={kind!r}; use one of shared, separate, none")

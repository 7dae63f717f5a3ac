"""The ContrastiveRNN acoustic word encoder (Jacobs et al. 2021): a word segment's frames -> one vector."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence


@dataclass
class WordEncoderConfig:
    """Bidirectional GRU sizes; the embedding is a projection of the last layer's final states."""

    hidden: int = 256
    layers: int = 2
    dim: int = 128
    dropout: float = 0.1
    frame_stack: int = 1  # consecutive frames concatenated into one GRU step (2: 20 ms steps, half the cost)


class WordRnn(nn.Module):
    """Bidirectional GRU over log-mel frames; final forward and backward states, projected to ``dim``."""

    def __init__(self, n_mels: int, cfg: WordEncoderConfig) -> None:
        super().__init__()
        self.stack = cfg.frame_stack
        self.gru = nn.GRU(n_mels * cfg.frame_stack, cfg.hidden, num_layers=cfg.layers, batch_first=True, bidirectional=True,
                          dropout=cfg.dropout if cfg.layers > 1 else 0.0)
        self.proj = nn.Linear(2 * cfg.hidden, cfg.dim)

    def forward(self, feats: Tensor, lens: Tensor) -> Tensor:
        """Embeddings [B, dim] (not normalised) of padded frames [B, T, F] with ``lens`` valid frames each."""
        if self.stack > 1:
            b, t, f = feats.shape
            feats = F.pad(feats, (0, 0, 0, -t % self.stack)).reshape(b, -1, f * self.stack)
            lens = torch.div(lens + self.stack - 1, self.stack, rounding_mode="floor")
        packed = pack_padded_sequence(feats, lens.cpu(), batch_first=True, enforce_sorted=False)
        _, hidden = self.gru(packed)  # [layers * 2, B, H]
        return self.proj(torch.cat([hidden[-2], hidden[-1]], dim=-1))


@torch.no_grad()
def embed_rows(encoder: nn.Module, segments: Any, rows: list[int], batch_size: int = 512) -> Tensor:
    """Embeddings [len(rows), dim] on the CPU of ``segments`` (a DataModule's ``Segments``) batched by length;
    the encoder's train / eval mode is restored afterwards."""
    was_training = encoder.training
    encoder.eval()
    device = next(encoder.parameters()).device
    order = torch.argsort(segments.lengths()[rows], descending=True).tolist()
    out = torch.empty(len(rows), encoder.proj.out_features)
    for i in range(0, len(order), batch_size):
        chunk = order[i : i + batch_size]
        batch = segments.batch([rows[j] for j in chunk])
        out[chunk] = encoder(batch["feats"].to(device), batch["lens"]).float().cpu()
    encoder.train(was_training)
    return out

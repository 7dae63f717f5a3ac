"""The ContrastiveRNN acoustic word encoder (Jacobs et al. 2021): a word segment's frames -> one vector."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence


@dataclass
class WordEncoderConfig:
    """Bidirectional GRU sizes; the embedding is a projection of the last layer's final states."""

    hidden: int = 256
    layers: int = 2
    dim: int = 128
    dropout: float = 0.1


class WordRnn(nn.Module):
    """Bidirectional GRU over log-mel frames; final forward and backward states, projected to ``dim``."""

    def __init__(self, n_mels: int, cfg: WordEncoderConfig) -> None:
        super().__init__()
        self.gru = nn.GRU(n_mels, cfg.hidden, num_layers=cfg.layers, batch_first=True, bidirectional=True,
                          dropout=cfg.dropout if cfg.layers > 1 else 0.0)
        self.proj = nn.Linear(2 * cfg.hidden, cfg.dim)

    def forward(self, feats: Tensor, lens: Tensor) -> Tensor:
        """Embeddings [B, dim] (not normalised) of padded frames [B, T, F] with ``lens`` valid frames each."""
        packed = pack_padded_sequence(feats, lens.cpu(), batch_first=True, enforce_sorted=False)
        _, hidden = self.gru(packed)  # [layers * 2, B, H]
        return self.proj(torch.cat([hidden[-2], hidden[-1]], dim=-1))

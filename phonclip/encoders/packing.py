"""Pack a padded batch of token rows into fewer, fuller rows for a transformer.

At equal audio duration espeak's speaking rates differ twofold, so the IPA transcriptions of one
training batch differ in length and ~43 % of a padded [B, L] phone batch is padding the encoder would
compute on. Packed several to a row, with a block-diagonal attention mask and each token's position
counted within its own transcription, every token sees exactly what it saw padded: the states are the
same, for ~40 % fewer token positions (docs/BENCHMARKS.md, training).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

MIN_WIDTH = 64  # packed row length: long enough for several words, short enough that attention stays cheap


@dataclass(frozen=True)
class Packing:
    """Where each real token of a padded [B, L] batch goes in the packed [rows, width] one."""

    rows: int
    width: int
    source: Tensor  # [n] flat index into the padded B × L positions
    target: Tensor  # [n] flat index into the packed rows × width positions
    segment: Tensor  # [rows, width] which padded row each packed position holds (-1: empty)
    position: Tensor  # [rows, width] its position within that row

    @classmethod
    def plan(cls, lens: Tensor, length: int, max_width: int = MIN_WIDTH) -> Packing:
        """First-fit decreasing: longest rows first, each into the first packed row with room. Packed rows
        are ``MIN_WIDTH`` long, or ``length`` if longer, but no longer than ``max_width`` allows (a BERT's
        position table also bounds the row length it reads)."""
        width = max(length, min(MIN_WIDTH, max_width))
        sizes = lens.tolist()
        free: list[int] = []
        row_of, offset_of = [0] * len(sizes), [0] * len(sizes)
        for b in sorted(range(len(sizes)), key=lambda i: -sizes[i]):
            row = next((r for r, room in enumerate(free) if room >= sizes[b]), len(free))
            if row == len(free):
                free.append(width)
            row_of[b], offset_of[b] = row, width - free[row]
            free[row] -= sizes[b]
        device = lens.device
        counts = lens.long()
        n = int(counts.sum())
        within = torch.arange(n, device=device) - torch.repeat_interleave(torch.cumsum(counts, 0) - counts, counts)
        rows = torch.tensor(row_of, device=device)
        starts = rows * width + torch.tensor(offset_of, device=device)
        batch_rows = torch.arange(len(sizes), device=device)
        source = torch.repeat_interleave(batch_rows * length, counts) + within
        target = torch.repeat_interleave(starts, counts) + within
        segment = torch.full((len(free) * width,), -1, dtype=torch.long, device=device)
        segment[target] = torch.repeat_interleave(batch_rows, counts)
        position = torch.zeros(len(free) * width, dtype=torch.long, device=device)
        position[target] = within
        return cls(len(free), width, source, target, segment.view(-1, width), position.view(-1, width))

    def pack(self, padded: Tensor) -> Tensor:
        """[B, L, ...] → [rows, width, ...] (empty positions zero)."""
        flat = padded.flatten(0, 1)
        out = flat.new_zeros((self.rows * self.width, *flat.shape[1:]))
        return out.index_copy(0, self.target, flat[self.source]).unflatten(0, (self.rows, self.width))

    def unpack(self, packed: Tensor, batch: int, length: int) -> Tensor:
        """[rows, width, ...] → [B, L, ...] (padding positions zero)."""
        flat = packed.flatten(0, 1)
        out = flat.new_zeros((batch * length, *flat.shape[1:]))
        return out.index_copy(0, self.source, flat[self.target]).unflatten(0, (batch, length))

    def attention_mask(self, keys: Tensor) -> Tensor:
        """[rows, width, width] bool: a query attends to the keys of its own row that ``keys`` [B, L] allows."""
        allowed = self.pack(keys)
        same = (self.segment[:, :, None] == self.segment[:, None, :]) & (self.segment[:, None, :] >= 0)
        return same & allowed[:, None, :]

"""Padding masks and masked mean pooling, shared so all encoders summarise padded batches alike."""

from __future__ import annotations

import torch
from torch import Tensor


def lengths_to_mask(lens: Tensor, max_len: int) -> Tensor:
    """Turn per-row lengths into a [B, max_len] bool mask (True = real step)."""
    if lens.ndim != 1:
        raise ValueError(f"lens must be 1-D [B], got shape {tuple(lens.shape)}")
    return torch.arange(max_len, device=lens.device)[None, :] < lens[:, None]


def masked_mean(hidden: Tensor, mask: Tensor) -> Tensor:
    """Average only real steps, so a clip embeds the same alone or in a padded batch."""
    if hidden.ndim != 3 or mask.shape != hidden.shape[:2]:
        raise ValueError(
            f"masked_mean needs hidden [B, T, D] and mask [B, T]; got hidden {tuple(hidden.shape)} "
            f"and mask {tuple(mask.shape)}"
        )
    summed = hidden.masked_fill(~mask[..., None], 0.0).sum(dim=1)
    counts = mask.sum(dim=1, keepdim=True).clamp(min=1)
    return summed / counts.to(hidden.dtype)

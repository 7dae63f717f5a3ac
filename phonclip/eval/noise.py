"""Corrupted copies of test clips for robustness analyses: Gaussian noise mixed in by weight or at an SNR,
and babble made of other clips. Every function is deterministic given its ``torch.Generator``."""

from __future__ import annotations

import torch
from torch import Tensor


def rms(x: Tensor) -> Tensor:
    """Root mean square of a waveform (a small floor keeps silent clips finite)."""
    return x.float().pow(2).mean().sqrt().clamp(min=1e-8)


def mix_gaussian(x: Tensor, alpha: float, generator: torch.Generator) -> Tensor:
    """SCRAPS's noise test: x' = (1 − α)·x + α·n, with n white Gaussian noise scaled to x's RMS.

    α = 0 is the clean clip and α = 1 pure noise; the speech-to-noise power ratio is ((1 − α)/α)², so
    α = 0.25, 0.5, 0.75 are SNRs of +9.5, 0 and −9.5 dB.
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha={alpha} must be in [0, 1]")
    noise = torch.randn(x.shape, generator=generator) * rms(x)
    return (1 - alpha) * x + alpha * noise


def add_at_snr(x: Tensor, noise: Tensor, snr_db: float) -> Tensor:
    """x + n, with n (same length as x) rescaled so that 10·log10(rms(x)² / rms(n)²) = ``snr_db``."""
    if noise.shape != x.shape:
        raise ValueError(f"noise {tuple(noise.shape)} must match the clip {tuple(x.shape)}")
    return x + noise * (rms(x) / rms(noise) * 10 ** (-snr_db / 20))


def white_noise(x: Tensor, generator: torch.Generator) -> Tensor:
    """Unit-variance Gaussian noise as long as x."""
    return torch.randn(x.shape, generator=generator)


def babble(clips: list[Tensor], target: int, talkers: int, generator: torch.Generator) -> Tensor:
    """The sum of ``talkers`` other clips (not clip ``target``), each at unit RMS, looped or cut to
    clip ``target``'s length: several voices talking at once."""
    others = [i for i in range(len(clips)) if i != target]
    if len(others) < talkers:
        raise ValueError(f"babble of {talkers} talkers needs {talkers + 1} clips, got {len(clips)}")
    picks = torch.randperm(len(others), generator=generator)[:talkers].tolist()
    length = len(clips[target])
    out = torch.zeros(length)
    for k in picks:
        other = clips[others[k]].float()
        looped = other.repeat(-(-length // len(other)))[:length]
        out += looped / rms(looped)
    return out

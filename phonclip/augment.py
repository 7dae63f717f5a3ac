"""Waveform augmentation (noise, gain, speed) so embeddings generalise beyond the synthesiser's clean voices."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torchaudio.functional as AF
from torch import Tensor, nn


@dataclass
class SpecAugmentConfig:
    """Mask counts and widths for ``phonclip.features.SpecAugment``."""

    freq_masks: int = 2
    freq_width: int = 10
    time_masks: int = 2
    time_width: float = 0.08  # fraction of each clip's valid frames


@dataclass
class AugmentConfig:
    """Training-time augmentation; every part can be switched off with 0 / null."""

    specaugment: SpecAugmentConfig = field(default_factory=SpecAugmentConfig)
    noise_prob: float = 0.5
    snr_db: tuple[float, float] = (10.0, 40.0)
    gain_db: tuple[float, float] = (-6.0, 6.0)
    speed_prob: float = 0.5
    speeds: tuple[float, ...] = (0.9, 1.1)


class WaveformAugment(nn.Module):
    """Per-clip noise at a random SNR and random gain; per-batch speed perturbation by resampling."""

    def __init__(self, cfg: AugmentConfig) -> None:
        super().__init__()
        self.cfg = cfg

    def forward(self, audio: Tensor, lens: Tensor) -> tuple[Tensor, Tensor]:
        if not self.training:
            return audio, lens
        audio, lens = self._speed(audio, lens)
        mask = torch.arange(audio.shape[1], device=audio.device)[None] < lens[:, None]
        b = audio.shape[0]
        lo, hi = self.cfg.gain_db
        gain = 10 ** ((lo + (hi - lo) * torch.rand(b, 1, device=audio.device)) / 20)
        audio = audio * gain
        if self.cfg.noise_prob > 0:
            power = (audio.pow(2) * mask).sum(1, keepdim=True) / lens[:, None].clamp(min=1)
            lo, hi = self.cfg.snr_db
            snr = lo + (hi - lo) * torch.rand(b, 1, device=audio.device)
            noise = torch.randn_like(audio) * torch.sqrt(power / 10 ** (snr / 10))
            apply = (torch.rand(b, 1, device=audio.device) < self.cfg.noise_prob).to(audio.dtype)
            audio = audio + apply * noise
        return audio * mask, lens

    def _speed(self, audio: Tensor, lens: Tensor) -> tuple[Tensor, Tensor]:
        if not self.cfg.speeds or float(torch.rand(())) >= self.cfg.speed_prob:
            return audio, lens
        speed = self.cfg.speeds[int(torch.randint(len(self.cfg.speeds), ()))]
        orig = 16_000
        new = round(orig / speed / 100) * 100
        out = AF.resample(audio, orig, new)
        new_lens = torch.clamp((lens.float() * new / orig).long(), max=out.shape[1])
        return out, new_lens

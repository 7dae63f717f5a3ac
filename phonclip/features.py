"""Whisper's log-mel, batched on the model's device: Whisper's features without a CPU bottleneck."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from transformers.audio_utils import mel_filter_bank


def _reflect(index: Tensor, n: Tensor) -> Tensor:
    """Fold any sample index into ``[0, n)`` the way ``torch.stft``'s reflect padding does."""
    period = (2 * (n - 1)).clamp(min=1)
    index = index.abs() % period
    return torch.where(index >= n, period - index, index).clamp(min=0)


def _lengths_mask(lens: Tensor, size: int) -> Tensor:
    """True at valid positions: ``[B, size]`` from per-row lengths ``[B]``."""
    return torch.arange(size, device=lens.device) < lens[:, None]


class LogMel(nn.Module):
    """Whisper's log-mel, computed per clip as if each clip were alone, so padding never leaks.

    Follows Whisper's recipe (hann STFT with centred reflect padding, power spectrum without the
    last frame, slaney mel, ``log10(max(x, 1e-10))``, dynamic range ``max(x, x.max() - 8)``, then
    ``(x + 4) / 4``) with three deliberate differences: the reflect padding and the max are taken
    at each clip's own end and over its own ``n // hop_length`` frames, nothing is padded to 30 s,
    and frames past a clip's end are set to ``pad_value``.
    """

    def __init__(
        self,
        n_mels: int = 80,
        sample_rate: int = 16000,
        n_fft: int = 400,
        hop_length: int = 160,
        pad_value: float = 0.0,
    ) -> None:
        super().__init__()
        self.n_mels = n_mels
        self.sample_rate = sample_rate
        self.n_fft = n_fft
        self.hop_length = hop_length
        self.pad_value = pad_value
        filters = mel_filter_bank(
            num_frequency_bins=1 + n_fft // 2,
            num_mel_filters=n_mels,
            min_frequency=0.0,
            max_frequency=sample_rate / 2,
            sampling_rate=sample_rate,
            norm="slaney",
            mel_scale="slaney",
        )
        self.register_buffer("mel_filters", torch.from_numpy(filters.T).float(), persistent=False)
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)

    def _apply(self, fn: Callable[[Tensor], Tensor], recurse: bool = True) -> LogMel:
        """Follow device moves but keep window and filters float32 (bf16 copies add ~0.07 error)."""
        target = fn(torch.empty(0, device=self.window.device)).device
        kept = {name: self._buffers.pop(name).to(target) for name in ("mel_filters", "window")}
        super()._apply(fn, recurse)
        self._buffers.update(kept)
        return self

    def frame_lengths(self, audio_lens: Tensor) -> Tensor:
        """Frames per clip (Whisper's ``n // hop_length``), for callers needing lengths up front."""
        return torch.div(audio_lens, self.hop_length, rounding_mode="floor")

    def _reflect_pad(self, audio: Tensor, audio_lens: Tensor) -> Tensor:
        """Centre-pad each row by ``n_fft // 2``, reflecting at its own end as a lone clip would."""
        pad = self.n_fft // 2
        n = audio_lens[:, None]
        offsets = torch.arange(pad, device=audio.device)
        padded = F.pad(audio, (pad, pad))
        padded[:, :pad] = audio.gather(1, _reflect(offsets - pad, n))
        padded.scatter_(1, n + pad + offsets, audio.gather(1, _reflect(n + offsets, n)))
        return padded

    def forward(self, audio: Tensor, audio_lens: Tensor) -> tuple[Tensor, Tensor]:
        """Batch features ``[B, n_mels, T // hop]`` and the frame counts the encoder masks by."""
        if audio.dim() != 2:
            raise ValueError(f"audio must be [B, T], got shape {tuple(audio.shape)}")
        if audio.shape[1] == 0:
            raise ValueError("audio has no samples (T == 0)")
        out_dtype = audio.dtype if audio.is_floating_point() else torch.float32
        # Clip lengths to T rather than sync to check them: an index past T is a CUDA assert.
        audio_lens = audio_lens.to(audio.device).long().clamp(0, audio.shape[1])
        frame_lens = self.frame_lengths(audio_lens)
        with torch.autocast(device_type=audio.device.type, enabled=False):
            padded = self._reflect_pad(audio.float(), audio_lens)
            spec = torch.stft(
                padded,
                self.n_fft,
                self.hop_length,
                window=self.window,
                center=False,
                return_complex=True,
            )[..., :-1]
            power = spec.real.square() + spec.imag.square()
            mel = torch.matmul(self.mel_filters, power).clamp(min=1e-10).log10()
            valid = _lengths_mask(frame_lens, mel.shape[-1])[:, None, :]
            peak = mel.masked_fill(~valid, float("-inf")).amax(dim=(1, 2), keepdim=True)
            feats = torch.maximum(mel, peak - 8.0).add_(4.0).div_(4.0)
            feats.masked_fill_(~valid, self.pad_value)
        return feats.to(out_dtype), frame_lens


class SpecAugment(nn.Module):
    """Frequency and time masks drawn per clip inside its valid frames, so short clips survive.

    torchaudio's ``FrequencyMasking``/``TimeMasking`` take no lengths and size time masks by the
    padded width, so this is a small vectorised version: each of ``time_masks`` masks is at most
    ``time_width`` times the clip's own frame count wide, each of ``freq_masks`` at most
    ``freq_width`` bins. Identity in eval mode.
    """

    def __init__(
        self,
        freq_masks: int = 2,
        freq_width: int = 27,
        time_masks: int = 2,
        time_width: float = 0.05,
        mask_value: float = 0.0,
    ) -> None:
        super().__init__()
        if min(freq_masks, freq_width, time_masks) < 0 or not 0.0 <= time_width <= 1.0:
            raise ValueError(
                "SpecAugment needs non-negative counts/widths and time_width in [0, 1], got "
                f"freq_masks={freq_masks}, freq_width={freq_width}, "
                f"time_masks={time_masks}, time_width={time_width}"
            )
        self.freq_masks = freq_masks
        self.freq_width = freq_width
        self.time_masks = time_masks
        self.time_width = time_width
        self.mask_value = mask_value

    @staticmethod
    def _band_mask(lens: Tensor, max_width: Tensor, count: int, size: int) -> Tensor:
        """``[B, size]`` union of ``count`` random bands per row, each within the row's length."""
        shape = (lens.shape[0], count)
        width = (torch.rand(shape, device=lens.device) * (max_width[:, None] + 1)).long()
        width = torch.minimum(width, lens[:, None])
        start = (torch.rand(shape, device=lens.device) * (lens[:, None] - width + 1)).long()
        pos = torch.arange(size, device=lens.device)[None, None, :]
        inside = (pos >= start[..., None]) & (pos < (start + width)[..., None])
        return inside.any(dim=1)

    def forward(self, feats: Tensor, frame_lens: Tensor) -> Tensor:
        """Regularise ``feats [B, n_mels, F]`` while training; pass them through in eval."""
        if not self.training:
            return feats
        batch, n_mels, frames = feats.shape
        frame_lens = frame_lens.to(feats.device).long()
        mask = torch.zeros(batch, n_mels, frames, dtype=torch.bool, device=feats.device)
        if self.freq_masks and self.freq_width:
            bins = torch.full_like(frame_lens, n_mels)
            width = torch.full_like(frame_lens, min(self.freq_width, n_mels))
            mask |= self._band_mask(bins, width, self.freq_masks, n_mels)[:, :, None]
        if self.time_masks and self.time_width:
            width = (frame_lens.float() * self.time_width).long()
            mask |= self._band_mask(frame_lens, width, self.time_masks, frames)[:, None, :]
        mask &= _lengths_mask(frame_lens, frames)[:, None, :]
        return feats.masked_fill(mask, self.mask_value)

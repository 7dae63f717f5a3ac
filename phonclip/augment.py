"""Training-time augmentation of speech (room, noise, channel, speed, vocal tract) so embeddings
generalise beyond the synthesiser's clean voices."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
import torchaudio.functional as AF
from omegaconf import DictConfig, OmegaConf
from torch import Tensor, nn
from transformers.audio_utils import hertz_to_mel, mel_to_hertz

SAMPLE_RATE = 16_000


@dataclass
class SpecAugmentConfig:
    """Mask counts and widths for ``phonclip.features.SpecAugment``."""

    freq_masks: int = 2
    freq_width: int = 10
    time_masks: int = 2
    time_width: float = 0.08  # fraction of each clip's valid frames


@dataclass
class RoomConfig:
    """Shoebox rooms simulated by pyroomacoustics (image source), cached on disk as a bank of RIRs."""

    prob: float = 0.0  # share of clips convolved with a room impulse response
    bank_size: int = 32
    rt60_s: tuple[float, float] = (0.15, 0.7)
    min_size_m: tuple[float, float, float] = (3.0, 3.0, 2.4)
    max_size_m: tuple[float, float, float] = (10.0, 8.0, 4.0)
    max_rir_s: float = 0.5  # tails cut here: longer ones cost convolution time and change little
    seed: int = 0


@dataclass
class AugmentConfig:
    """Training-time augmentation; every part can be switched off with 0 / null."""

    specaugment: SpecAugmentConfig = field(default_factory=SpecAugmentConfig)
    noise_prob: float = 0.5
    snr_db: tuple[float, float] = (10.0, 40.0)
    # spectral slopes 1/f^β drawn per clip: 0 white, 1 pink, 2 brown
    noise_colours: tuple[float, ...] = (0.0,)
    gain_db: tuple[float, float] = (-6.0, 6.0)
    speed_prob: float = 0.5
    speeds: tuple[float, ...] = (0.9, 1.1)
    room: RoomConfig = field(default_factory=RoomConfig)
    bandlimit_prob: float = 0.0  # share of clips low-passed (telephone to wideband channels)
    bandlimit_hz: tuple[float, float] = (3400.0, 7000.0)
    mulaw_prob: float = 0.0  # share of clips passed through 8-bit μ-law (G.711)
    vtlp_prob: float = 0.0  # share of clips whose mel axis is warped (vocal-tract length, formants)
    vtlp_alpha: tuple[float, float] = (0.9, 1.1)


class WaveformAugment(nn.Module):
    """Per-clip room, gain, coloured noise at a random SNR, band-limit and μ-law; per-batch speed
    perturbation by resampling. Identity in eval mode."""

    def __init__(self, cfg: AugmentConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.rirs: Tensor | None = None  # simulated at first use in training, not at model load

    def forward(self, audio: Tensor, lens: Tensor) -> tuple[Tensor, Tensor]:
        if not self.training:
            return audio, lens
        audio, lens = self._speed(audio, lens)
        mask = torch.arange(audio.shape[1], device=audio.device)[None] < lens[:, None]
        audio = _on_some(audio * mask, self.cfg.room.prob, self._room, mask)
        b = audio.shape[0]
        lo, hi = self.cfg.gain_db
        gain = 10 ** ((lo + (hi - lo) * torch.rand(b, 1, device=audio.device)) / 20)
        audio = audio * gain
        if self.cfg.noise_prob > 0:
            power = audio.pow(2).sum(1, keepdim=True) / lens[:, None].clamp(min=1)
            lo, hi = self.cfg.snr_db
            snr = lo + (hi - lo) * torch.rand(b, 1, device=audio.device)
            noise = _on_some(audio, self.cfg.noise_prob, self._coloured_noise, otherwise=0.0)
            audio = audio + noise * torch.sqrt(power / 10 ** (snr / 10))
        audio = _on_some(audio, self.cfg.bandlimit_prob, self._bandlimit)
        audio = _on_some(audio, self.cfg.mulaw_prob, _mulaw)
        return audio * mask, lens

    def _speed(self, audio: Tensor, lens: Tensor) -> tuple[Tensor, Tensor]:
        if not self.cfg.speeds or float(torch.rand(())) >= self.cfg.speed_prob:
            return audio, lens
        speed = self.cfg.speeds[int(torch.randint(len(self.cfg.speeds), ()))]
        new = round(SAMPLE_RATE / speed / 100) * 100
        out = AF.resample(audio, SAMPLE_RATE, new)
        new_lens = torch.clamp((lens.float() * new / SAMPLE_RATE).long(), max=out.shape[1])
        return out, new_lens

    def _room(self, dry: Tensor, mask: Tensor) -> Tensor:
        """Each clip convolved with a random RIR of the bank, cut to its length, its energy kept."""
        if self.rirs is None or self.rirs.device != dry.device:
            self.rirs = room_impulse_responses(self.cfg.room).to(dry.device)
        rir = self.rirs[torch.randint(len(self.rirs), (len(dry),))].to(dry.dtype)
        n = 1 << (dry.shape[1] + rir.shape[1] - 2).bit_length()  # a power of two: FFTs 3x faster
        wet = torch.fft.irfft(torch.fft.rfft(dry, n) * torch.fft.rfft(rir, n), n)[:, : dry.shape[1]] * mask
        scale = dry.pow(2).sum(1, keepdim=True) / wet.pow(2).sum(1, keepdim=True).clamp(min=1e-12)
        return wet * scale.sqrt()

    def _coloured_noise(self, like: Tensor) -> Tensor:
        """Unit-power noise per row (so the SNR is exact), each with a slope 1/f^β drawn from
        ``noise_colours``."""
        noise = torch.randn_like(like)
        colours = torch.tensor(self.cfg.noise_colours, device=like.device, dtype=like.dtype)
        if bool((colours != 0).any()):
            beta = colours[torch.randint(len(colours), (like.shape[0],), device=like.device)]
            freqs = torch.fft.rfftfreq(like.shape[1], device=like.device)
            slope = freqs.clamp(min=1.0 / like.shape[1]).pow(-beta[:, None] / 2)
            noise = torch.fft.irfft(torch.fft.rfft(noise) * slope, n=like.shape[1])
        return noise / noise.pow(2).mean(1, keepdim=True).sqrt().clamp(min=1e-12)

    def _bandlimit(self, audio: Tensor) -> Tensor:
        """Each clip low-passed at a random cut-off in ``bandlimit_hz`` (its FFT bins above zeroed)."""
        lo, hi = self.cfg.bandlimit_hz
        cutoff = lo + (hi - lo) * torch.rand(audio.shape[0], 1, device=audio.device)
        freqs = torch.fft.rfftfreq(audio.shape[1], 1 / SAMPLE_RATE, device=audio.device)
        return torch.fft.irfft(torch.fft.rfft(audio) * (freqs[None] < cutoff), n=audio.shape[1])


def _mulaw(audio: Tensor) -> Tensor:
    """Each clip through 8-bit μ-law, scaled to its peak first as a codec's input would be."""
    peak = audio.abs().amax(1, keepdim=True).clamp(min=1e-8)
    return AF.mu_law_decoding(AF.mu_law_encoding(audio / peak, 256), 256) * peak


def _on_some(
    audio: Tensor, prob: float, fn: Callable[..., Tensor], *rows: Tensor, otherwise: float | None = None
) -> Tensor:
    """``fn`` applied to a random share ``prob`` of the rows only (the costly parts run on those),
    with the same rows of ``rows``; the other rows stay as they are, or become ``otherwise``."""
    if prob <= 0 and otherwise is None:
        return audio
    out = audio.clone() if otherwise is None else torch.full_like(audio, otherwise)
    chosen = torch.nonzero(torch.rand(audio.shape[0]) < prob).flatten().to(audio.device)
    if len(chosen):
        out[chosen] = fn(audio[chosen], *(r[chosen] for r in rows))
    return out


class MelWarp(nn.Module):
    """Vocal-tract length perturbation on log-mel features: each chosen clip's frequency axis is
    scaled by a random α (a bin at f reads the input at f / α), on Whisper's slaney mel scale."""

    def __init__(self, cfg: AugmentConfig, n_mels: int) -> None:
        super().__init__()
        self.prob = cfg.vtlp_prob
        self.alpha = cfg.vtlp_alpha
        top = hertz_to_mel(SAMPLE_RATE / 2, mel_scale="slaney")
        self.mels = np.linspace(0.0, top, n_mels + 2)[1:-1]
        self.centres_hz = mel_to_hertz(self.mels, mel_scale="slaney")  # filter centres, as LogMel's

    def forward(self, feats: Tensor) -> Tensor:
        """``feats`` [B, n_mels, T], warped where chosen; identity in eval mode."""
        if not self.training or self.prob <= 0:
            return feats
        b, n, t = feats.shape
        lo, hi = self.alpha
        alpha = lo + (hi - lo) * torch.rand(b, 1)
        alpha = torch.where(torch.rand(b, 1) < self.prob, alpha, torch.ones_like(alpha)).numpy()
        source_hz = np.minimum(self.centres_hz[None] / alpha, SAMPLE_RATE / 2)
        step = self.mels[1] - self.mels[0]
        pos = (hertz_to_mel(source_hz, mel_scale="slaney") - self.mels[0]) / step  # fractional bins
        pos = torch.from_numpy(pos.clip(0, n - 1)).to(feats.device, feats.dtype)
        below = pos.floor().long()
        above = (below + 1).clamp(max=n - 1)
        weight = (pos - below)[..., None]
        at = lambda idx: feats.gather(1, idx[..., None].expand(b, n, t))
        return at(below) * (1 - weight) + at(above) * weight


def room_impulse_responses(cfg: RoomConfig | DictConfig) -> Tensor:
    """[bank_size, samples] RIRs of random shoebox rooms, simulated once and cached by config."""
    from data_modules.synthetic import cache_root  # the one cache directory of the suite

    spec = OmegaConf.to_container(OmegaConf.structured(cfg))  # a dataclass or the model's DictConfig
    digest = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:12]
    path = cache_root() / "rooms" / f"{digest}.npy"
    if not path.exists():
        bank = _simulate_rooms(cfg)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{np.random.default_rng().integers(1 << 30)}.npy")
        np.save(tmp, bank)
        tmp.replace(path)
    return torch.from_numpy(np.load(path))


def _simulate_rooms(cfg: RoomConfig) -> np.ndarray:
    """Image-source RIRs: random room size and RT60, source and microphone ≥ 0.5 m from walls."""
    import pyroomacoustics as pra

    rng = np.random.default_rng(cfg.seed)
    length = round(cfg.max_rir_s * SAMPLE_RATE)
    bank = np.zeros((cfg.bank_size, length), dtype=np.float32)
    for i in range(cfg.bank_size):
        size = rng.uniform(cfg.min_size_m, cfg.max_size_m)
        rt60 = rng.uniform(*cfg.rt60_s)
        absorption, max_order = pra.inverse_sabine(rt60, size)
        room = pra.ShoeBox(size, fs=SAMPLE_RATE, materials=pra.Material(absorption),
                           max_order=min(max_order, 12))  # fmt: skip
        source, mic = (rng.uniform(0.5, size - 0.5) for _ in range(2))
        room.add_source(source)
        room.add_microphone(mic)
        room.compute_rir()
        rir = np.asarray(room.rir[0][0], dtype=np.float32)[:length]
        direct = int(np.argmax(np.abs(rir)))
        rir = rir[max(0, direct - 40) :]  # start at the direct path: the room adds no delay
        bank[i, : len(rir)] = rir / np.abs(rir).max()
    return bank

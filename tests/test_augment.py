"""Each augmentation does what its name says to the clips it picks, and nothing in eval mode."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from phonclip import augment
from phonclip.augment import (
    AugmentConfig,
    MelWarp,
    RoomConfig,
    WaveformAugment,
    room_impulse_responses,
)

SR = 16_000
ROOM = RoomConfig(prob=1.0, bank_size=3, max_rir_s=0.2, rt60_s=(0.3, 0.5))
OFF = {"noise_prob": 0.0, "speed_prob": 0.0, "gain_db": (0.0, 0.0)}


@pytest.fixture(autouse=True)
def _cache_and_seed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PHONCLIP_CACHE", str(tmp_path))
    torch.manual_seed(0)


def tones(b: int = 4, seconds: float = 0.5, hz: float = 440.0) -> tuple[torch.Tensor, torch.Tensor]:
    t = torch.arange(int(SR * seconds)) / SR
    audio = torch.sin(2 * torch.pi * hz * t).repeat(b, 1) * 0.5
    return audio, torch.full((b,), audio.shape[1])


def band_power(audio: torch.Tensor, lo: float, hi: float) -> torch.Tensor:
    freqs = torch.fft.rfftfreq(audio.shape[-1], 1 / SR)
    power = torch.fft.rfft(audio).abs().square()
    return power[..., (freqs >= lo) & (freqs < hi)].sum(-1)


def test_room_bank_is_simulated_once_and_starts_at_the_direct_path(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    bank = room_impulse_responses(ROOM)
    assert bank.shape == (3, round(0.2 * SR)) and bank.dtype == torch.float32
    assert torch.all(bank.abs().amax(1) == 1.0) and torch.all(bank.abs().argmax(1) < 50)
    assert not torch.equal(bank[0], bank[1])
    energy = bank.square().sum(1)  # a reverberant room keeps ringing 50 ms after the direct path
    assert torch.all(bank[:, 800:].square().sum(1) > 0.01 * energy)

    def fail(cfg: RoomConfig) -> None:
        raise AssertionError("simulated again")

    monkeypatch.setattr(augment, "_simulate_rooms", fail)
    assert torch.equal(room_impulse_responses(ROOM), bank)


def test_reverb_keeps_length_and_energy_and_smears_in_time() -> None:
    audio, lens = tones()
    audio[:, SR // 4 :] = 0  # a tone that stops: the room rings on after it
    lens[1] = SR // 4
    cfg = OmegaConf.structured(AugmentConfig(room=ROOM, **OFF))  # as the models hold it
    out, out_lens = WaveformAugment(cfg).train()(audio.clone(), lens)
    assert out.shape == audio.shape and torch.equal(out_lens, lens)
    assert torch.allclose(
        out.square().sum(1),
        (audio * (torch.arange(audio.shape[1]) < lens[:, None])).square().sum(1),
        rtol=1e-3,
    )
    assert torch.all(out[[0, 2, 3], SR // 4 + 400 :].abs().amax(1) > 1e-3)  # the tail rings on
    assert torch.all(out[1, SR // 4 :] == 0)  # past the clip's own length stays silent


def test_bandlimit_removes_everything_above_the_cut_off() -> None:
    audio = torch.randn(4, SR // 2)
    lens = torch.full((4,), SR // 2)
    cfg = AugmentConfig(bandlimit_prob=1.0, bandlimit_hz=(3400.0, 4000.0), **OFF)
    out, _ = WaveformAugment(cfg).train()(audio, lens)
    assert torch.all(band_power(out, 4000, SR / 2) < 1e-6 * band_power(audio, 4000, SR / 2))
    assert torch.allclose(band_power(out, 0, 3400), band_power(audio, 0, 3400), rtol=1e-3)


def test_mulaw_quantises_to_256_levels_of_the_clip_peak() -> None:
    audio, lens = tones(b=2)
    audio[1] *= 0.01  # quiet clips keep their level: the codec sees them scaled to full range
    out, _ = WaveformAugment(AugmentConfig(mulaw_prob=1.0, **OFF)).train()(audio, lens)
    for row, src in zip(out, audio):
        assert len(torch.unique(row)) <= 256 and not torch.equal(row, src)
        assert (row - src).abs().max() < 0.05 * src.abs().max()


def test_noise_colours_slope_the_spectrum_and_keep_the_snr() -> None:
    audio, lens = tones(b=8, seconds=1.0)
    for beta, low_over_high in ((0.0, (0.5, 2.0)), (2.0, (100.0, float("inf")))):
        cfg = AugmentConfig(
            noise_prob=1.0,
            snr_db=(10.0, 10.0),
            noise_colours=(beta,),
            speed_prob=0.0,
            gain_db=(0.0, 0.0),
        )
        noise = WaveformAugment(cfg).train()(audio, lens)[0] - audio
        snr = 10 * torch.log10(audio.square().sum(1) / noise.square().sum(1))
        assert torch.allclose(snr, torch.full_like(snr, 10.0), atol=0.01)
        ratio = band_power(noise, 100, 1000) / band_power(noise, 4000, 4900)  # equal 900 Hz bands
        assert torch.all((ratio > low_over_high[0]) & (ratio < low_over_high[1])), (beta, ratio)


def test_eval_mode_is_identity() -> None:
    audio, lens = tones()
    cfg = AugmentConfig(room=ROOM, bandlimit_prob=1.0, mulaw_prob=1.0, vtlp_prob=1.0)
    assert WaveformAugment(cfg).eval()(audio, lens)[0] is audio
    feats = torch.randn(2, 80, 30)
    assert MelWarp(cfg, 80).eval()(feats) is feats


def peak_hz(feats: torch.Tensor) -> float:
    """Frequency of the centre of mass of the first clip's first frame."""
    centre = float((feats[0, :, 0] * torch.arange(80)).sum() / feats[0, :, 0].sum())
    return float(np.interp(centre, np.arange(80), MelWarp(AugmentConfig(), 80).centres_hz))


def test_vtlp_moves_formants_by_alpha_on_the_mel_scale() -> None:
    feats = torch.zeros(3, 80, 5)
    feats[:, 40] = 1.0  # a formant at mel bin 40 (about 1.6 kHz)
    same = MelWarp(AugmentConfig(vtlp_prob=1.0, vtlp_alpha=(1.0, 1.0)), 80).train()(feats)
    assert torch.allclose(same, feats)
    up = MelWarp(AugmentConfig(vtlp_prob=1.0, vtlp_alpha=(1.2, 1.2)), 80).train()(feats)
    down = MelWarp(AugmentConfig(vtlp_prob=1.0, vtlp_alpha=(0.8, 0.8)), 80).train()(feats)
    assert peak_hz(up) / peak_hz(feats) == pytest.approx(1.2, rel=0.03)
    assert peak_hz(down) / peak_hz(feats) == pytest.approx(0.8, rel=0.03)
    assert torch.allclose(up[:, :, 0], up[:, :, 4])  # the same warp in every frame of a clip

"""LogMel must reproduce Whisper's features clip by clip; SpecAugment must stay in valid frames."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import WhisperFeatureExtractor

from phonclip.features import LogMel, SpecAugment

LENGTHS = [1_000, 1_600, 7_777, 16_000, 24_123]


def _clips(lengths: list[int], seed: int = 0) -> list[np.ndarray]:
    """Noise plus a tone with a different loudness per clip, so per-clip maxima differ."""
    rng = np.random.default_rng(seed)
    clips = []
    for i, n in enumerate(lengths):
        t = np.arange(n) / 16_000
        tone = np.sin(2 * np.pi * (200 + 150 * i) * t) * (0.5 / (i + 1))
        clips.append((tone + 0.01 * rng.standard_normal(n)).astype(np.float32))
    return clips


def _batch(clips: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    lens = torch.tensor([len(c) for c in clips])
    audio = torch.zeros(len(clips), int(lens.max()))
    for i, c in enumerate(clips):
        audio[i, : len(c)] = torch.from_numpy(c)
    return audio, lens


@pytest.mark.parametrize("n_mels", [80, 128])
def test_matches_whisper_feature_extractor_per_clip(n_mels: int) -> None:
    extractor = WhisperFeatureExtractor(feature_size=n_mels)
    logmel = LogMel(n_mels=n_mels)
    clips = _clips(LENGTHS)
    feats, frame_lens = logmel(*_batch(clips))
    assert feats.shape == (len(clips), n_mels, max(LENGTHS) // 160)
    assert frame_lens.tolist() == [n // 160 for n in LENGTHS]
    for i, clip in enumerate(clips):
        # padding="longest" on one clip means no padding, so Whisper's max is over this clip alone.
        ref = extractor(clip, sampling_rate=16_000, padding="longest", return_tensors="np")
        ref = ref["input_features"][0]
        ref_numpy = extractor._np_extract_fbank_features(clip[None], "cpu")[0]
        ours = feats[i, :, : frame_lens[i]].numpy()
        assert ref.shape == ours.shape == ref_numpy.shape
        assert np.abs(ours - ref).max() <= 1e-3
        assert np.abs(ours - ref_numpy).max() <= 1e-3


def test_padding_does_not_change_other_clips() -> None:
    logmel = LogMel()
    clips = _clips(LENGTHS, seed=1)
    feats, frame_lens = logmel(*_batch(clips))
    for i, clip in enumerate(clips):
        alone, _ = logmel(*_batch([clip]))
        valid = int(frame_lens[i])
        torch.testing.assert_close(feats[i, :, :valid], alone[0], atol=1e-5, rtol=0)
        assert torch.all(feats[i, :, valid:] == logmel.pad_value)


@pytest.mark.parametrize("n", [180, 250, 8_000, 8_160])
def test_padding_with_loud_noise_is_ignored(n: int) -> None:
    logmel = LogMel()
    audio, lens = _batch(_clips([n]))
    loud = torch.cat([audio, 100 * torch.randn(1, 8_000)], dim=1)
    alone, frame_lens = logmel(audio, lens)
    assert frame_lens.item() == n // 160 > 0
    torch.testing.assert_close(logmel(loud, lens)[0][..., : n // 160], alone)


def test_empty_clip_in_batch_gives_pad_frames_and_no_nan() -> None:
    logmel = LogMel()
    audio, _ = _batch(_clips([3_200, 3_200]))
    feats, frame_lens = logmel(audio, torch.tensor([3_200, 0]))
    assert frame_lens.tolist() == [20, 0]
    assert torch.isfinite(feats).all()
    assert torch.all(feats[1] == logmel.pad_value)


def test_bf16_autocast_and_dtype() -> None:
    logmel = LogMel()
    audio, lens = _batch(_clips([4_000, 2_500]))
    ref, _ = logmel(audio, lens)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        under_autocast, _ = logmel(audio, lens)
    assert under_autocast.dtype == torch.float32
    torch.testing.assert_close(under_autocast, ref)
    half_module = LogMel().to(torch.bfloat16)
    assert half_module.window.dtype == half_module.mel_filters.dtype == torch.float32
    half, _ = half_module(audio.bfloat16(), lens)
    assert half.dtype == torch.bfloat16
    # Only the output rounding may differ: the STFT itself runs in float32.
    rounded_input, _ = logmel(audio.bfloat16().float(), lens)
    torch.testing.assert_close(half.float(), rounded_input, atol=1e-2, rtol=0)


def test_filters_are_not_saved_in_state_dict() -> None:
    assert LogMel(n_mels=128).state_dict() == {}


def _feats(lengths: list[int], n_mels: int = 80) -> tuple[torch.Tensor, torch.Tensor]:
    """Valid frames in [1, 2), padding at -5, so any mask (value 0) is visible everywhere."""
    frame_lens = torch.tensor(lengths)
    feats = torch.rand(len(lengths), n_mels, max(lengths)) + 1.0
    valid = (torch.arange(max(lengths)) < frame_lens[:, None])[:, None, :]
    return feats.masked_fill(~valid, -5.0), frame_lens


def test_specaugment_eval_is_identity() -> None:
    feats, frame_lens = _feats([100, 40])
    augment = SpecAugment().eval()
    assert augment(feats, frame_lens) is feats


@pytest.mark.parametrize("n_mels", [80, 128])
def test_specaugment_masks_only_valid_frames(n_mels: int) -> None:
    torch.manual_seed(0)
    feats, frame_lens = _feats([300, 120, 20, 5], n_mels)
    augment = SpecAugment(freq_masks=2, freq_width=20, time_masks=3, time_width=0.2).train()
    out = augment(feats, frame_lens)
    masked = out != feats
    assert masked.any()
    valid = torch.arange(feats.shape[-1]) < frame_lens[:, None]
    assert not masked.transpose(1, 2)[~valid].any()
    assert torch.all(out[masked] == 0.0)
    for i, n in enumerate(frame_lens.tolist()):
        all_bins_masked = masked[i, :, :n].all(dim=0)
        # 3 masks of at most 20% each can never wipe a clip.
        assert all_bins_masked.sum() <= 3 * int(0.2 * n)
        assert masked[i, :, :n].all(dim=1).sum() <= 2 * 20


def test_specaugment_is_deterministic_under_seed_and_varies_per_clip() -> None:
    feats = torch.rand(8, 80, 200) + 1.0
    frame_lens = torch.full((8,), 200)
    augment = SpecAugment(time_width=0.2).train()
    torch.manual_seed(123)
    first = augment(feats, frame_lens)
    torch.manual_seed(123)
    second = augment(feats, frame_lens)
    assert torch.equal(first, second)
    masks = first == 0.0
    assert not all(torch.equal(masks[0], masks[i]) for i in range(1, 8))


def test_specaugment_rejects_bad_widths() -> None:
    with pytest.raises(ValueError, match="time_width"):
        SpecAugment(time_width=1.5)

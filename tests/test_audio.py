"""Every reader decodes through phonclip.audio: round-trips and failures must hold per format."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from phonclip.audio import AudioError, decode_audio, load_audio, resample


def _tone(n: int = 8_000, sr: int = 16_000) -> np.ndarray:
    return (0.5 * np.sin(2 * np.pi * 440 * np.arange(n) / sr)).astype(np.float32)


def _npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def _sf_bytes(array: np.ndarray, sr: int, fmt: str, subtype: str | None = None) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, array, sr, format=fmt, subtype=subtype)
    return buffer.getvalue()


def test_npy_float32_round_trip() -> None:
    audio = _tone()
    out = decode_audio(_npy_bytes(audio), ".npy")
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, audio)


def test_npy_int16_is_scaled() -> None:
    pcm = np.array([0, 16_384, -32_768, 32_767], dtype=np.int16)
    out = decode_audio(_npy_bytes(pcm), "npy")
    np.testing.assert_allclose(out, [0.0, 0.5, -1.0, 32_767 / 32_768])


def test_npy_multichannel_is_mixed_to_mono() -> None:
    stereo = np.stack([np.ones(100), -np.ones(100) * 0.5], axis=1).astype(np.float32)
    np.testing.assert_allclose(decode_audio(_npy_bytes(stereo), "npy"), np.full(100, 0.25))
    np.testing.assert_allclose(decode_audio(_npy_bytes(stereo.T), "npy"), np.full(100, 0.25))


@pytest.mark.parametrize("fmt,ext,tol", [("FLAC", ".flac", 1e-4), ("WAV", ".wav", 1e-4)])
def test_lossless_round_trip(fmt: str, ext: str, tol: float) -> None:
    audio = _tone()
    out = decode_audio(_sf_bytes(audio, 16_000, fmt), ext)
    assert out.dtype == np.float32 and out.shape == audio.shape
    np.testing.assert_allclose(out, audio, atol=tol)


def test_ogg_decodes_at_length() -> None:
    audio = _tone()
    out = decode_audio(_sf_bytes(audio, 16_000, "OGG", "VORBIS"), ".ogg")
    assert abs(len(out) - len(audio)) <= 1
    assert np.corrcoef(out[: len(audio)], audio[: len(out)])[0, 1] > 0.99


def test_stereo_wav_is_mixed_and_resampled() -> None:
    left = _tone(22_050, sr=22_050)
    stereo = np.stack([left, left], axis=1)
    out = decode_audio(_sf_bytes(stereo, 22_050, "WAV"), "wav")
    assert len(out) == 16_000
    assert np.abs(out).max() == pytest.approx(0.5, abs=0.02)


def test_resample_lengths_and_types() -> None:
    audio = _tone(22_050, sr=22_050)
    out = resample(audio, 22_050, 16_000)
    assert isinstance(out, np.ndarray) and out.shape == (16_000,)
    batch = resample(torch.from_numpy(np.stack([audio, audio])), 22_050, 16_000)
    assert isinstance(batch, torch.Tensor) and batch.shape == (2, 16_000)
    assert resample(audio, 16_000, 16_000) is audio
    with pytest.raises(ValueError, match="orig_sr=0"):
        resample(audio, 0, 16_000)


@pytest.mark.parametrize(
    "data,ext,match,kind",
    [
        (b"not audio at all" * 10, ".flac", "cannot decode flac", "corrupt"),
        (b"not audio at all" * 10, ".npy", "cannot decode npy", "corrupt"),
        (b"", ".wav", "empty", "empty"),
        (_npy_bytes(np.zeros(0, dtype=np.float32)), ".npy", "no samples", "empty"),
        (_npy_bytes(np.array([0.1, np.nan], dtype=np.float32)), ".npy", "NaN", "non_finite"),
        (_npy_bytes(np.array([0.1, np.inf], dtype=np.float32)), ".npy", "infinite", "non_finite"),
        (_npy_bytes(np.array(["a", "b"])), ".npy", "dtype", "corrupt"),
        (_npy_bytes(np.zeros((2, 2, 2), dtype=np.float32)), ".npy", "shape", "corrupt"),
    ],
)
def test_bad_data_raises_audio_error(data: bytes, ext: str, match: str, kind: str) -> None:
    with pytest.raises(AudioError, match=match) as caught:
        decode_audio(data, ext)
    assert caught.value.kind == kind


def test_nan_in_flac_float_wav_raises() -> None:
    bad = _tone()
    bad[10] = np.nan
    with pytest.raises(AudioError, match="NaN"):
        decode_audio(_sf_bytes(bad, 16_000, "WAV", "FLOAT"), ".wav")


def test_load_audio_reads_files_and_names_them(tmp_path: Path) -> None:
    audio = _tone()
    good = tmp_path / "clip.flac"
    sf.write(good, audio, 16_000)
    np.testing.assert_allclose(load_audio(good), audio, atol=1e-4)
    assert len(load_audio(str(good), target_sr=8_000)) == len(audio) // 2

    missing = tmp_path / "missing.wav"
    with pytest.raises(FileNotFoundError, match="missing.wav"):
        load_audio(missing)

    text = tmp_path / "notes.wav"
    text.write_text("this is not a wav file")
    with pytest.raises(AudioError, match="notes.wav") as caught:
        load_audio(text)
    assert caught.value.kind == "corrupt"

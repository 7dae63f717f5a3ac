"""Audio bytes or files to clean mono float32 at the model's rate, so every reader fails alike."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torchaudio.functional as AF
from torch import Tensor

NPY_SAMPLE_RATE = 16_000  # .npy carries no rate; shards store 16 kHz (data_modules/schema.py)


class AudioError(ValueError):
    """Unusable audio; ``kind`` ("empty", "non_finite" or "corrupt") lets readers count drops."""

    def __init__(self, message: str, kind: str = "corrupt") -> None:
        super().__init__(message)
        self.kind = kind


def resample(audio: np.ndarray | Tensor, orig_sr: int, target_sr: int) -> np.ndarray | Tensor:
    """Resample along the last axis with torchaudio's windowed sinc, keeping the input's type."""
    if orig_sr <= 0 or target_sr <= 0:
        raise ValueError(
            f"sample rates must be positive, got orig_sr={orig_sr}, target_sr={target_sr}"
        )
    if orig_sr == target_sr:
        return audio
    if isinstance(audio, Tensor):
        return AF.resample(audio, int(orig_sr), int(target_sr))
    out = AF.resample(
        torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32)), orig_sr, target_sr
    )
    return out.numpy()


def _npy_to_float(array: np.ndarray) -> np.ndarray:
    """Float arrays as they are, signed int PCM scaled to [-1, 1]; the shorter axis is channels."""
    if np.issubdtype(array.dtype, np.signedinteger):
        array = array.astype(np.float32) / float(np.iinfo(array.dtype).max + 1)
    elif not np.issubdtype(array.dtype, np.floating):
        raise AudioError(f"npy audio must be float or signed int PCM, got dtype {array.dtype}")
    if array.ndim == 2:
        array = array.mean(axis=int(np.argmin(array.shape)))
    elif array.ndim != 1:
        raise AudioError(f"npy audio must be 1-D or [samples, channels], got shape {array.shape}")
    return array.astype(np.float32, copy=False)


def decode_audio(data: bytes, ext: str, target_sr: int = 16000) -> np.ndarray:
    """Decode shard bytes: ``.npy`` (16 kHz) or any libsndfile format (flac, wav, ogg, mp3…)."""
    kind = ext.lower().lstrip(".")
    if not data:
        raise AudioError(f"empty {kind or 'audio'} data (0 bytes)", "empty")
    if kind == "npy":
        try:
            array = np.load(io.BytesIO(data), allow_pickle=False)
        except (ValueError, OSError, EOFError) as err:
            raise AudioError(f"cannot decode npy audio: {err}") from err
        if not isinstance(array, np.ndarray):
            raise AudioError(f"npy data must hold one array, got {type(array).__name__}")
        audio, sr = _npy_to_float(array), NPY_SAMPLE_RATE
    else:
        try:
            frames, sr = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
        except sf.SoundFileError as err:
            reason = getattr(err, "error_string", str(err))
            raise AudioError(
                f"cannot decode {kind or 'audio'} data with libsndfile: {reason}"
            ) from err
        audio = frames.mean(axis=1)
    if audio.size == 0:
        raise AudioError(f"{kind or 'audio'} data holds no samples", "empty")
    if not np.isfinite(audio).all():
        raise AudioError(f"{kind or 'audio'} data holds NaN or infinite samples", "non_finite")
    return np.ascontiguousarray(resample(audio, sr, target_sr), dtype=np.float32)


def load_audio(path: str | Path, target_sr: int = 16000) -> np.ndarray:
    """Read an audio file as mono float32 at ``target_sr``, naming the file in every error."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"audio file not found: {path}")
    try:
        return decode_audio(path.read_bytes(), path.suffix, target_sr)
    except AudioError as err:
        raise AudioError(f"{path}: {err}", err.kind) from err

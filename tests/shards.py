"""Writes tiny IPAPACK-format shards for tests, so readers are exercised on real tar files without any download."""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import soundfile as sf
from webdataset import TarWriter

from data_modules.schema import SAMPLE_RATE, Sample

AUDIO_FORMATS = ("npy", "flac", "wav")


def tone(seconds: float, freq: float = 220.0, amplitude: float = 0.3) -> np.ndarray:
    """A float32 sine tone at 16 kHz: audio that survives 16-bit encoding almost unchanged."""
    t = np.arange(round(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def encode_audio(audio: np.ndarray, audio_format: str, npy_dtype: str = "float32") -> bytes:
    """``audio`` as the bytes of a ``.npy`` (float32 or int16 PCM), ``.flac`` or ``.wav`` member."""
    buf = io.BytesIO()
    if audio_format == "npy":
        if npy_dtype == "int16":
            audio = np.round(np.clip(audio, -1, 1) * 32767).astype(np.int16)
        np.save(buf, audio.astype(npy_dtype, copy=False))
    elif audio_format in ("flac", "wav"):
        sf.write(buf, audio, SAMPLE_RATE, format=audio_format.upper(), subtype="PCM_16")
    else:
        raise ValueError(f"audio_format must be one of {AUDIO_FORMATS}, got {audio_format!r}")
    return buf.getvalue()


def members(
    sample: Sample, audio_format: str = "npy", npy_dtype: str = "float32", with_json: bool = True
) -> dict:
    """The tar members of ``sample``; ``.json`` carries lang, text and meta."""
    out = {"__key__": sample.key, audio_format: encode_audio(sample.audio, audio_format, npy_dtype)}
    out["txt"] = sample.ipa.encode("utf-8")
    if with_json:
        out["json"] = json.dumps({"lang": sample.lang, "text": sample.text, **sample.meta}).encode(
            "utf-8"
        )
    return out


def write_shards(
    directory: str | Path,
    samples: Sequence[Sample | dict],
    shard_size: int,
    audio_format: str = "npy",
    npy_dtype: str = "float32",
    with_json: bool = True,
    prefix: str = "shard",
) -> list[Path]:
    """Write ``samples`` as ``<prefix>-%06d.tar`` shards of ``shard_size`` each; dicts are raw members (bytes)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for start in range(0, len(samples), shard_size):
        path = directory / f"{prefix}-{start // shard_size:06d}.tar"
        with TarWriter(str(path), encoder=False) as writer:
            for sample in samples[start : start + shard_size]:
                raw = (
                    sample
                    if isinstance(sample, dict)
                    else members(sample, audio_format, npy_dtype, with_json)
                )
                writer.write(raw)
        paths.append(path)
    return paths


def good_samples(
    n: int, seconds: float = 0.5, lang: str = "xx", prefix: str = "clip"
) -> list[Sample]:
    """``n`` distinct valid clips (tones of different pitch) with plain IPA, text and language."""
    ipas = ["pa", "ta", "ka", "ma", "na", "sa", "la", "ba"]
    return [
        Sample(
            key=f"{prefix}{i:04d}",
            audio=tone(seconds + 0.01 * (i % 7), freq=200.0 + 20 * i),
            ipa=ipas[i % len(ipas)],
            text=f"word{i}",
            lang=lang,
            meta={"kind": "word"},
        )
        for i in range(n)
    ]

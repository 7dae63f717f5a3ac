"""Pads and tokenises a list of samples into the one batch dict every model reads (see ``schema.py``)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from data_modules.schema import Sample

UNITS = ("ipa", "text")


def collate(
    samples: list[Sample], tokenizer: Any, units: str, dropped: dict[str, int]
) -> dict[str, Any]:
    """The batch for ``samples``: audio zero-padded, ``units`` ("ipa" or "text") encoded and padded with ``pad_id``."""
    if units not in UNITS:
        raise ValueError(f"units must be one of {UNITS}, got {units!r}")
    ids = [tokenizer.encode(s.ipa if units == "ipa" else s.text) for s in samples]
    audio_lens = [len(s.audio) for s in samples]
    audio = np.zeros((len(samples), max(audio_lens, default=0)), dtype=np.float32)
    for row, sample in zip(audio, samples):
        row[: len(sample.audio)] = sample.audio
    phone_lens = [len(x) for x in ids]
    phone_ids = torch.full(
        (len(samples), max(phone_lens, default=0)), tokenizer.pad_id, dtype=torch.long
    )
    for row, x in zip(phone_ids, ids):
        row[: len(x)] = torch.as_tensor(x, dtype=torch.long)
    return {
        "audio": torch.from_numpy(audio),
        "audio_lens": torch.as_tensor(audio_lens, dtype=torch.long),
        "phone_ids": phone_ids,
        "phone_lens": torch.as_tensor(phone_lens, dtype=torch.long),
        "ipa": [s.ipa for s in samples],
        "text": [s.text for s in samples],
        "lang": [s.lang for s in samples],
        "key": [s.key for s in samples],
        "meta": [dict(s.meta) for s in samples],
        "dropped": dict(dropped),
    }

"""The one sample and batch schema every DataModule yields, so models never care which corpus fed them.

Shard layout (IPAPACK, webdataset tar): ``<key>.npy`` (or ``.flac`` / ``.wav``) 16 kHz mono audio,
``<key>.txt`` the IPA transcription, optional ``<key>.json`` metadata (see ``ClipMeta``).

Batch (a dict):
    audio       float32 [B, T]   16 kHz waveforms, zero-padded
    audio_lens  int64   [B]      valid samples per clip
    phone_ids   int64   [B, L]   tokenizer ids (IPA segments, or text units), padded with pad_id
    phone_lens  int64   [B]      valid tokens per row
    ipa         list[str]        NFD-normalised IPA
    text        list[str]        orthography ("" when unknown)
    lang        list[str]        ISO 639 code ("" when unknown)
    key         list[str]        sample keys
    meta        list[dict]       ClipMeta as a dict (timings for alignment), {} when absent
    dropped     dict[str, int]   samples skipped by kind since the previous batch of this worker
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

SAMPLE_RATE = 16_000


@dataclass
class Sample:
    """One decoded clip, after filtering and before tokenisation."""

    key: str
    audio: np.ndarray  # float32 [T] at SAMPLE_RATE
    ipa: str
    text: str = ""
    lang: str = ""
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def duration(self) -> float:
        return len(self.audio) / SAMPLE_RATE


# ClipMeta keys written by the synthetic generator (all optional for real IPAPACK shards):
#   lang, text, kind ("word" | "phrase"), voice, rate, pitch, split,
#   words:  [{"text", "ipa", "start", "end"}]   (seconds)
#   phones: [{"ipa", "start", "end"}]           (seconds)

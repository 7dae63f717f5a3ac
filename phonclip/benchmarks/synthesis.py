"""Embedded-corpus synthesis speed: every fresh machine generates the corpus before training."""

from __future__ import annotations

import json
import os
import tempfile
from unittest import mock

from data_modules.synthetic import MANIFEST, SyntheticConfig, generate_corpus

TARGET_CLIPS_PER_S = 500  # on 2 cores
SUBSET = {"seen_languages": ["en", "de", "ru", "fi"], "unseen_languages": ["vi", "da"]}
WORDS_PER_LANGUAGE = 300
STEPS = "espeak, resample to 16 kHz, int16 npy, tar"


def run() -> list[dict]:
    """Generate a default-settings corpus for a few languages into a temp cache and time it."""
    cfg = SyntheticConfig(**SUBSET, words_per_language=WORDS_PER_LANGUAGE)
    with tempfile.TemporaryDirectory() as cache, mock.patch.dict(os.environ, PHONCLIP_CACHE=cache):
        root = generate_corpus(cfg, progress=False)
        manifest = json.loads((root / MANIFEST).read_text(encoding="utf-8"))
    clips = sum(s["clips"] for s in manifest["splits"].values())
    total_s = manifest["generation_seconds"]
    render_s = total_s - manifest["vocabulary_seconds"]
    setup = (
        f"{clips} clips, {len(cfg.seen_languages) + len(cfg.unseen_languages)} languages, "
        f"{cfg.workers} worker processes on {os.cpu_count()} CPUs"
    )
    kb_per_clip = manifest["bytes"] / clips / 1e3
    target = f">= {TARGET_CLIPS_PER_S} on 2 cores"
    rows = [
        ("corpus synthesis, clips only", clips / render_s, "clips/s", target, f"{setup}; {STEPS}"),
        ("corpus synthesis, end to end", clips / total_s, "clips/s", "—", "plus choosing words"),
        ("corpus size per clip", kb_per_clip, "kB", "—", "int16 npy + IPA + JSON timings in tar"),
    ]
    keys = ("benchmark", "value", "unit", "target", "note")
    return [dict(zip(keys, row)) for row in rows]

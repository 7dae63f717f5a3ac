"""The tiny corpus settings tests share: seconds to generate, yet every split non-empty."""

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

TINY_CORPUS = {
    "seen_languages": ["de", "fr"],
    "unseen_languages": ["vi"],
    "words_per_language": 8,
    "unseen_words_per_language": 6,
    "heldout_word_fraction": 0.25,
    "renditions_per_word": 2,
    "valid_words_per_language": 2,
    "test_voices_words_per_language": 2,
    "train_phrases_per_language": 2,
    "phrases_per_language": 2,
    "phrase_words": [2, 3],
    "shard_size": 16,
}


def corpus_overrides(prefix: str, values: dict) -> list[str]:
    """``values`` as dotted CLI overrides under ``prefix`` (e.g. ``data.corpus``)."""
    return [f"{prefix}.{key}={json.dumps(value)}" for key, value in values.items()]


EMBED_DIM = 32
RUN_CORPUS = TINY_CORPUS | {"seen_languages": ["de", "es"], "workers": 2}  # what ``tiny_run`` trains on
RUN_MODEL = {
    "embed_dim": EMBED_DIM,
    "speech.exit_layer": 1,
    "phone.hidden_size": 32,
    "phone.num_layers": 1,
    "phone.num_heads": 2,
    "phone.intermediate_size": 64,
    "eval.gallery_size": 50,
    "eval.max_clips": 50,
}


@dataclass
class TinyRun:
    """A run directory with ``checkpoints/last.ckpt``, and the module that was trained into it."""

    path: Path
    model: Any

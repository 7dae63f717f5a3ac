"""The tiny corpus settings tests share: seconds to generate, yet every split non-empty."""

import json

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

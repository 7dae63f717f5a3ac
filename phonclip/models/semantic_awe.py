"""Semantic AWEs (Jacobs & Kamper 2023, "Leveraging multilingual transfer for unsupervised semantic
acoustic word embeddings"): word embeddings whose similarity follows meaning, from target-language
speech with word boundaries but no transcriptions.

Read top to bottom: config → stage 1, the multilingual phonetic AWE (a ContrastiveRNN over log-mel
word segments of the *seen* languages, same-word pairs across voices, InfoNCE at a fixed temperature)
→ evaluation, which runs stage 2 on the target language (``phonclip.models.skipgram``: K-means soft
pseudo-word labels → Skipgram; the baselines and the text topline beside it) and scores them all.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from torch import Tensor

from phonclip.api import resolve_checkpoint
from phonclip.encoders.word_rnn import WordEncoderConfig, WordRnn, embed_rows
from phonclip.losses import ClipLoss
from phonclip.models.base import PhonclipModel
from phonclip.models.skipgram import Stage2Config
from phonclip.optim import OptimConfig, configure_adamw

STRATEGIES = ("phonetic", "cluster_skipgram", "projection", "context_rnn", "text_skipgram")


@dataclass
class SemanticEvalConfig:
    """Which words are scored against which gold, and how the query-by-example search is set up."""

    gold: str = "wordnet"  # "wordnet" (Wu–Palmer of noun senses) or a TSV of ``word1 word2 score``
    words: int = 150  # most frequent target nouns (WordNet gold) scored pairwise
    min_train_count: int = 5  # occurrences in the unlabelled training speech, at least
    min_test_count: int = 2  # spoken segments in the test split, at least
    max_pairs: int = 20_000
    qbe_queries: int = 100
    qbe_threshold: float = 0.8  # gold similarity at which an utterance counts as relevant to a query
    ap_min_chars: int = 5  # same-word AP over words this long (the AWE literature's convention)
    ap_max_segments: int = 4000
    plot_words: int = 60
    seed: int = 0


@dataclass
class SemanticAweConfig:
    name: str = "semantic_awe"
    units: str = "ipa"  # unused: segments are audio
    n_mels: int = 40  # must match data.n_mels
    encoder: WordEncoderConfig = field(default_factory=WordEncoderConfig)
    temperature: float = 0.1  # of the stage-1 InfoNCE
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(lr=1e-3, warmup_steps=100))
    strategies: list[str] = field(default_factory=lambda: ["phonetic", "cluster_skipgram", "text_skipgram"])
    stage2: Stage2Config = field(default_factory=Stage2Config)
    init_from: str | None = None  # a semantic_awe run dir or .ckpt: reuse its stage 1 (ablations of stage 2)
    eval: SemanticEvalConfig = field(default_factory=SemanticEvalConfig)


def as_config(cfg: Any) -> DictConfig:
    """Validate a dict / DictConfig (e.g. from a checkpoint's hyper-parameters) against SemanticAweConfig."""
    cfg = OmegaConf.merge(OmegaConf.structured(SemanticAweConfig), cfg)
    if bad := [s for s in cfg.strategies if s not in STRATEGIES]:
        raise ValueError(f"model.strategies: unknown {bad}; use some of {list(STRATEGIES)}")
    return cfg


class SemanticAwe(PhonclipModel):
    """Stage 1 trains here (the Trainer's job); stage 2 and the baselines run in ``evaluate``."""

    Config = SemanticAweConfig

    def __init__(self, cfg: Any, tokenizer: Any = None, seed: int = 0) -> None:
        super().__init__(seed=seed)
        cfg = as_config(cfg)
        self.save_hyperparameters({"cfg": OmegaConf.to_container(cfg), "seed": seed})
        self.cfg = cfg
        self.tokenizer = tokenizer
        self.encoder = WordRnn(cfg.n_mels, cfg.encoder)
        self.loss = ClipLoss(init_logit_scale=math.log(1 / cfg.temperature)).requires_grad_(False)
        if cfg.init_from:
            ckpt = resolve_checkpoint(cfg.init_from, experiment="semantic_awe")
            state = torch.load(ckpt, map_location="cpu", weights_only=False)["state_dict"]
            self.load_state_dict(state)

    def embed(self, feats: Tensor, lens: Tensor) -> Tensor:
        """Phonetic AWEs [B, dim] (not normalised) of padded segments."""
        return self.encoder(feats, lens)

    def embed_segments(self, segments: Any, rows: list[int], batch_size: int = 512) -> Tensor:
        """Phonetic AWEs [len(rows), dim] of a DataModule's segments, on the CPU."""
        return embed_rows(self.encoder, segments, rows, batch_size)

    def _loss(self, batch: dict) -> Tensor:
        z = self.embed(batch["feats"], batch["lens"])
        anchors, positives = z.chunk(2)
        return self.loss(anchors, positives)

    def training_step(self, batch: dict, batch_idx: int) -> Tensor:
        loss = self._loss(batch)
        self.log("train/loss", loss, prog_bar=True, batch_size=len(batch["lens"]) // 2)
        return loss

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self.log("val/loss", self._loss(batch), prog_bar=True, batch_size=len(batch["lens"]) // 2)

    def configure_optimizers(self) -> dict:
        return configure_adamw(self, self.cfg.optim)

    def evaluate(self, datamodule: Any, out_dir: Path) -> dict[str, Any]:
        from phonclip.eval.semantic_awe_suite import evaluate_semantic_awe

        if datamodule.cfg.n_mels != self.cfg.n_mels:
            raise ValueError(f"data.n_mels={datamodule.cfg.n_mels} but model.n_mels={self.cfg.n_mels}")
        return evaluate_semantic_awe(self, datamodule, Path(out_dir), logger=self.logger)

"""IPA-CLIP (Matsuhira et al. 2023, "IPA-CLIP: Integrating Phonetic Priors into Vision and Language
Pretraining"): a pronunciation encoder that reads IPA and outputs what a frozen text encoder outputs for
the same sentence, so whatever was built on that text encoder (CLIP image search, zero-shot
classification, sentence similarity) also accepts pronunciations, nonwords included.

Read top to bottom: config → the phoneme embedding (p = xᵀW over IPA-chart attributes, W frozen at
random init by default; or a plain lookup, the baseline) → a DistilBERT trained from scratch over it,
mean-pooled and projected to the teacher's width → MSE to the teacher's sentence embedding, magnitude
kept (plus, optionally, a contrastive term) → evaluation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from omegaconf import DictConfig, OmegaConf
from torch import Tensor, nn
from transformers import DistilBertConfig, DistilBertModel

from phonclip.encoders.attributes import PhonemeEmbedding
from phonclip.encoders.pooling import lengths_to_mask, masked_mean
from phonclip.encoders.text_teacher import (
    TeacherConfig,
    TextTeacher,
    cached_embeddings,
    load_teacher,
)
from phonclip.losses import ClipLoss
from phonclip.models.base import PhonclipModel, embed_strings, pad_token_ids
from phonclip.optim import OptimConfig, configure_adamw


@dataclass
class PronunciationEncoderConfig:
    """DistilBERT sizes (trained from scratch) and the phoneme embedding its tokens enter through."""

    embedding: str = "frozen"  # "frozen" / "trainable" attribute projection W, or "lookup" (the baseline)
    dim: int = 256
    n_layers: int = 4
    n_heads: int = 4
    hidden_dim: int = 1024
    dropout: float = 0.1
    max_positions: int = 128


@dataclass
class ImageNetEvalConfig:
    """Image classification from pronunciations; runs when ``root`` is set (needs a CLIP teacher)."""

    root: str | None = None  # ImageNet val in ImageFolder layout
    class_names: str | None = None  # id -> name file (.json / .tsv); None: the folder names
    tower: str = "openai/clip-vit-base-patch32"  # CLIP image tower, the teacher's own model
    max_images_per_class: int | None = None
    recall_k: int = 50


@dataclass
class IpaClipEvalConfig:
    """Phoneme-space analysis, nonword retrieval and (optionally) ImageNet classification settings."""

    language_words: int = 150  # frequent words phonemised per corpus language for the all-languages phone set
    nonword_classes: int = 300  # class words ("a photo of a <word>") of the nonword test
    nonword_consonants: dict[str, str] = field(default_factory=lambda: {
        "p": "p", "b": "b", "t": "t", "d": "d", "k": "k", "ɡ": "g", "m": "m", "n": "n", "f": "f", "v": "v",
        "s": "s", "z": "z", "ʃ": "sh", "h": "h", "l": "l", "ɹ": "r", "w": "w", "j": "y", "θ": "th",
        "tʃ": "ch", "dʒ": "j",
    })  # candidate initial consonant -> its English spelling (for the teacher-on-spelling comparison)
    seed: int = 0
    imagenet: ImageNetEvalConfig = field(default_factory=ImageNetEvalConfig)


@dataclass
class IpaClipConfig:
    name: str = "ipa_clip"
    units: str = "ipa"
    encoder: PronunciationEncoderConfig = field(default_factory=PronunciationEncoderConfig)
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    teacher_dim: int = 384  # the teacher's embedding width (all-MiniLM-L6-v2: 384; CLIP ViT-B/32: 512)
    # Beyond the paper (MSE only, weight 0): + weight × a CLIP loss between student and teacher embeddings
    # at a fixed temperature, so a short CPU run learns what tells sentences apart (docs/TUNING.md).
    contrastive_weight: float = 0.0
    contrastive_temperature: float = 0.05
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(lr=5e-4, warmup_steps=200))
    eval: IpaClipEvalConfig = field(default_factory=IpaClipEvalConfig)


def as_config(cfg: Any) -> DictConfig:
    """Validate a dict / DictConfig (e.g. from a checkpoint's hyper-parameters) against IpaClipConfig."""
    cfg = OmegaConf.merge(OmegaConf.structured(IpaClipConfig), cfg)
    if cfg.encoder.embedding not in PhonemeEmbedding.KINDS:
        raise ValueError(f"model.encoder.embedding={cfg.encoder.embedding!r}; use one of {PhonemeEmbedding.KINDS}")
    if cfg.units != "ipa":
        raise ValueError(f"model.units={cfg.units!r}: IPA-CLIP reads IPA")
    return cfg


class IpaClip(PhonclipModel):
    """DistilBERT over attribute phoneme embeddings, distilled (MSE) from a frozen text encoder."""

    Config = IpaClipConfig

    def __init__(self, cfg: Any, tokenizer: Any, seed: int = 0) -> None:
        super().__init__(seed=seed)
        cfg = as_config(cfg)
        self.save_hyperparameters({"cfg": OmegaConf.to_container(cfg), "seed": seed})
        self.cfg = cfg
        self.tokenizer = tokenizer
        e = cfg.encoder
        self.encoder = DistilBertModel(DistilBertConfig(
            vocab_size=tokenizer.vocab_size, dim=e.dim, n_layers=e.n_layers, n_heads=e.n_heads,
            hidden_dim=e.hidden_dim, dropout=e.dropout, attention_dropout=e.dropout,
            max_position_embeddings=e.max_positions, pad_token_id=tokenizer.pad_id,
        ))
        self.encoder.set_input_embeddings(PhonemeEmbedding(e.embedding, tokenizer.vocab, e.dim, tokenizer.pad_id))
        self.proj = nn.Linear(e.dim, cfg.teacher_dim)
        self.contrastive = ClipLoss(init_logit_scale=math.log(1 / cfg.contrastive_temperature)).requires_grad_(False)
        self.targets: Tensor | None = None  # teacher embeddings of the DataModule's pairs, set in setup()

    @property
    def phoneme_embedding(self) -> PhonemeEmbedding:
        return self.encoder.get_input_embeddings()

    def teacher(self) -> TextTeacher:
        """The frozen teacher, loaded on first use and kept out of this module (and its checkpoints)."""
        teacher = load_teacher(**self.cfg.teacher)
        if teacher.dim != self.cfg.teacher_dim:
            raise ValueError(f"model.teacher_dim={self.cfg.teacher_dim} but {self.cfg.teacher.name_or_path} "
                             f"outputs {teacher.dim}: set model.teacher_dim={teacher.dim}")
        return teacher

    def teacher_embeddings(self, texts: list[str]) -> Tensor:
        """The teacher's embeddings of ``texts`` (cached on disk), on the CPU."""
        return cached_embeddings(self.cfg.teacher, texts, teacher=self.teacher())

    # ---- embeddings -------------------------------------------------------------------------
    def pronunciation_embedding(self, ids: Tensor, lens: Tensor) -> Tensor:
        """Embeddings in the teacher's space (not normalised) of token id rows [B, L]."""
        mask = lengths_to_mask(lens, ids.shape[1])
        hidden = self.encoder(input_ids=ids, attention_mask=mask.long()).last_hidden_state
        return self.proj(masked_mean(hidden, mask))

    def tokenize(self, strings: list[str]) -> tuple[Tensor, Tensor]:
        """Pad tokenizer ids of ``strings`` into [B, L] on this module's device."""
        return pad_token_ids(self.tokenizer, strings, self.cfg.encoder.max_positions, self.device)

    def embed_pronunciations(self, ipa: list[str], batch_size: int = 256) -> Tensor:
        """Embeddings of IPA strings in the teacher's space (compare with its text embeddings); [N, D] on CPU."""
        return embed_strings(self, self.pronunciation_embedding, ipa, batch_size, self.cfg.teacher_dim)

    # ---- training ---------------------------------------------------------------------------
    def setup(self, stage: str) -> None:
        """Look up every pair's teacher embedding once; start the output at their mean (a checkpoint being
        resumed overwrites it), so training fits what distinguishes sentences rather than the offset."""
        datamodule = self.trainer.datamodule
        self.targets = self.teacher_embeddings(datamodule.texts)
        with torch.no_grad():
            self.proj.bias.copy_(self.targets[datamodule.train_index].mean(0))

    def _losses(self, batch: dict) -> dict[str, Tensor]:
        student = self.pronunciation_embedding(batch["phone_ids"], batch["phone_lens"])
        target = self.targets[batch["index"].cpu()].to(student.device)
        mse = F.mse_loss(student, target)
        contrastive = self.contrastive(student, target)
        return {"mse": mse, "contrastive": contrastive, "loss": mse + self.cfg.contrastive_weight * contrastive,
                "cosine": F.cosine_similarity(student, target).mean()}

    def training_step(self, batch: dict, batch_idx: int) -> Tensor:
        losses = self._losses(batch)
        self.log_dict({f"train/{k}": v for k, v in losses.items() if k != "cosine"}, prog_bar=True,
                      batch_size=len(batch["ipa"]))
        return losses["loss"]

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        losses = self._losses(batch)
        self.log_dict({f"val/{k}": v for k, v in losses.items()}, prog_bar=True, batch_size=len(batch["ipa"]))

    def configure_optimizers(self) -> dict:
        return configure_adamw(self, self.cfg.optim)

    # ---- evaluation -------------------------------------------------------------------------
    def evaluate(self, datamodule: Any, out_dir: Path) -> dict[str, Any]:
        from phonclip.eval.ipa_clip_suite import evaluate_ipa_clip

        return evaluate_ipa_clip(self, datamodule, Path(out_dir), self.cfg.eval, logger=self.logger)

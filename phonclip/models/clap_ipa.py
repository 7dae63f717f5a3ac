"""CLAP-IPA (Zhu et al. 2024, "The taste of IPA"): speech and IPA meet in one space through a SigLIP loss.

Read top to bottom: config → encoders → embedding functions → training step (with phonetically
informed hard negatives) → optimiser → evaluation.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from omegaconf import DictConfig, OmegaConf
from torch import Tensor, nn

from phonclip.augment import AugmentConfig, MelWarp, WaveformAugment
from phonclip.encoders.phone import PhoneEncoder, PhoneEncoderConfig
from phonclip.encoders.speech import SpeechEncoder, SpeechEncoderConfig
from phonclip.features import LogMel, SpecAugment
from phonclip.losses import SigLipLoss
from phonclip.minimal_pairs import MinimalPairSampler
from phonclip.models.base import SpeechPhoneModel
from phonclip.optim import OptimConfig, configure_adamw


@dataclass
class HardNegativeConfig:
    """Minimal-pair negatives for the phone side; they enlarge the phone batch by ``rate`` × B."""

    rate: float = 0.0  # hard negatives per positive (0 disables)
    k_neighbours: int = 5
    p_substitute: float = 0.6
    p_insert: float = 0.2
    p_delete: float = 0.2


@dataclass
class EvalConfig:
    """Evaluation sizes: each test set is scored on a seeded random gallery of ``gallery_size`` distinct words."""

    gallery_size: int = 500
    max_clips: int = 5000  # clips embedded per test set before drawing the gallery
    minimal_pair_k: int = 5
    kws_seed: int = 0
    similarity_plot_size: int = 24


@dataclass
class ClapIpaConfig:
    name: str = "clap_ipa"
    units: str = "ipa"  # "ipa": IPA segments; "text": orthographic characters (ablation)
    n_mels: int = 80
    # Mel hop in samples: 160 (10 ms) is Whisper's and what its pretrained weights expect; 320 halves
    # the frames a random-init speech encoder reads (docs/TUNING.md).
    hop_length: int = 160
    embed_dim: int = 256
    siglip_chunk: int = 0  # 0: one chunk (dense)
    # SigLIP's init: the paper's t = 10, b = -10 (chosen for ~32k batches); docs/TUNING.md has one run
    # with b = -5 at this project's ~110-clip batches.
    siglip_init_temperature: float = 10.0
    siglip_init_bias: float = -10.0
    speech: SpeechEncoderConfig = field(default_factory=SpeechEncoderConfig)
    phone: PhoneEncoderConfig = field(default_factory=PhoneEncoderConfig)
    hard_negatives: HardNegativeConfig = field(default_factory=HardNegativeConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)


def _process_rank() -> int:
    """This process's rank in the default process group (0 without one): DDP with or without a Trainer."""
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def as_config(cfg: Any) -> DictConfig:
    """Validate a dict / DictConfig (e.g. from a checkpoint's hyper-parameters) against ClapIpaConfig."""
    return OmegaConf.merge(OmegaConf.structured(ClapIpaConfig), cfg)


class ClapIpa(SpeechPhoneModel):
    """Speech encoder + phone encoder + SigLIP; ``embed_speech`` / ``embed_phones`` serve users and evaluation."""

    Config = ClapIpaConfig

    def __init__(self, cfg: Any, tokenizer: Any, seed: int = 0) -> None:
        super().__init__(seed=seed)
        cfg = as_config(cfg)
        self.save_hyperparameters({"cfg": OmegaConf.to_container(cfg), "seed": seed})
        self.cfg = cfg
        self.tokenizer = tokenizer
        self.logmel = LogMel(n_mels=cfg.n_mels, hop_length=cfg.hop_length)
        self.specaugment = SpecAugment(**OmegaConf.to_container(cfg.augment.specaugment))
        self.wave_augment = WaveformAugment(cfg.augment)
        self.mel_warp = MelWarp(cfg.augment, cfg.n_mels)
        self.speech_encoder = SpeechEncoder(cfg.speech)
        if cfg.speech.pretrained is not None and cfg.hop_length != self.speech_encoder.mel_hop_length:
            raise ValueError(
                f"model.hop_length={cfg.hop_length}, but the pretrained encoder ({cfg.speech.pretrained}) "
                f"reads {self.speech_encoder.mel_hop_length}-sample frames"
            )
        features = tokenizer.feature_matrix() if cfg.phone.articulatory_features else None
        self.phone_encoder = PhoneEncoder(cfg.phone, vocab_size=tokenizer.vocab_size, feature_matrix=features)
        self.speech_proj = nn.Linear(self.speech_encoder.hidden_size, cfg.embed_dim)
        self.phone_proj = nn.Linear(self.phone_encoder.hidden_size, cfg.embed_dim)
        self.loss = SigLipLoss(
            init_logit_scale=math.log(cfg.siglip_init_temperature),
            init_logit_bias=cfg.siglip_init_bias,
            chunk_size=cfg.siglip_chunk or None,
        )
        hn = cfg.hard_negatives
        self.minimal_pairs = (
            MinimalPairSampler(
                k_neighbours=hn.k_neighbours, p_substitute=hn.p_substitute, p_insert=hn.p_insert, p_delete=hn.p_delete
            )
            if hn.rate > 0 and cfg.units == "ipa"
            else None
        )

    # ---- embeddings -------------------------------------------------------------------------
    def speech_embedding(self, audio: Tensor, audio_lens: Tensor) -> Tensor:
        """L2-normalised speech embeddings of 16 kHz waveforms [B, T]."""
        feats, frame_lens = self.logmel(audio, audio_lens)
        if self.training:
            feats = self.specaugment(self.mel_warp(feats), frame_lens)
        pooled = self.speech_encoder.pooled(feats, frame_lens)
        return F.normalize(self.speech_proj(pooled), dim=-1)

    def phone_embedding(self, ids: Tensor, lens: Tensor) -> Tensor:
        """L2-normalised embeddings of token id rows [B, L]."""
        return F.normalize(self.phone_proj(self.phone_encoder.pooled(ids, lens)), dim=-1)

    # ---- training ---------------------------------------------------------------------------
    def hard_negatives(self, ipa: list[str], rank: int) -> list[str]:
        """Minimal pairs of rows drawn from ``ipa``; seeded by (seed, step, rank), so resumes repeat them
        and DDP ranks draw different ones."""
        rng = random.Random(f"{self.seed}/{self.global_step}/{rank}")
        n = max(1, round(self.cfg.hard_negatives.rate * len(ipa)))
        return [self.minimal_pairs(rng.choice(ipa), rng) for _ in range(n)]

    def _phone_batch(self, batch: dict) -> tuple[Tensor, Tensor | None]:
        """Positive phone embeddings and, when enabled, minimal-pair hard-negative embeddings."""
        positives = self.phone_embedding(batch["phone_ids"], batch["phone_lens"])
        if self.minimal_pairs is None:
            return positives, None
        negatives = self.hard_negatives(batch["ipa"], rank=_process_rank())
        return positives, self.phone_embedding(*self.tokenize(negatives))

    def training_step(self, batch: dict, batch_idx: int) -> Tensor:
        self.phone_encoder.mark_trained(batch["phone_ids"], batch["phone_lens"])
        audio, audio_lens = self.wave_augment(batch["audio"], batch["audio_lens"])
        speech = self.speech_embedding(audio, audio_lens)
        phones, hard = self._phone_batch(batch)
        loss = self.loss(speech, phones, extra_negatives_b=hard)
        self.log_dict(
            {"train/loss": loss, "train/logit_scale": self.loss.logit_scale.exp(), "train/logit_bias": self.loss.logit_bias},
            prog_bar=True, batch_size=len(batch["ipa"]),
        )
        return loss

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        speech = self.speech_embedding(batch["audio"], batch["audio_lens"])
        phones = self.phone_embedding(batch["phone_ids"], batch["phone_lens"])
        hit = (speech @ phones.T).argmax(dim=0) == torch.arange(len(phones), device=phones.device)
        self.log_dict({"val/loss": self.loss(speech, phones), "val/in_batch_hit1": hit.float().mean()},
                      prog_bar=True, batch_size=len(batch["ipa"]))

    def configure_optimizers(self) -> dict:
        return configure_adamw(self, self.cfg.optim, loss=self.loss)

    # ---- evaluation -------------------------------------------------------------------------
    def evaluate(self, datamodule: Any, out_dir: Path) -> dict[str, Any]:
        from phonclip.eval.clap_suite import evaluate_clap

        return evaluate_clap(self, datamodule, Path(out_dir), self.cfg.eval, logger=self.logger)

"""SCRAPS (Vitale et al. 2023, "Speech Contrastive Representations of Acoustic and Phonetic Spaces"): a
recording and a phone string meet in one space through a CLIP loss, so their cosine scores how well the
audio says those phones: it drops when phones are wrong and holds when the audio is noisy.

Read top to bottom: config → encoders (a Whisper-style acoustic transformer with its conv subsampling
stem, a BERT phonetic transformer over IPA) → the LSTM integrator (shared by the two sides by default)
→ embedding functions → training step (CLIP softmax loss, learnable temperature) → evaluation.
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

from phonclip.augment import AugmentConfig, MelWarp, WaveformAugment
from phonclip.encoders.integrator import build_integrators
from phonclip.encoders.phone import PhoneEncoder, PhoneEncoderConfig
from phonclip.encoders.pooling import masked_mean
from phonclip.encoders.speech import SpeechEncoder, SpeechEncoderConfig
from phonclip.features import LogMel, SpecAugment
from phonclip.losses import ClipLoss
from phonclip.models.base import SpeechPhoneModel
from phonclip.optim import OptimConfig, configure_adamw

INTEGRATORS = ("shared", "separate", "none")


@dataclass
class IntegratorConfig:
    """The LSTM that turns each side's states into its embedding (its final hidden state)."""

    kind: str = "shared"  # "shared" (the paper's), "separate" (one per side), "none" (mean pooling)
    input_size: int = 256  # each side's states are projected to this width first
    num_layers: int = 1


@dataclass
class ScrapsEvalConfig:
    """Evaluation sizes and the conditions of the sensitivity, noise and intelligibility analyses."""

    gallery_size: int = 300  # distinct words per retrieval gallery; the analyses use the gallery's clips
    max_clips: int = 1000  # clips read per test set before drawing the gallery
    seed: int = 0
    substitution_rates: list[float] = field(default_factory=lambda: [0.05, 0.1, 0.2, 0.3, 0.5])
    noise_alphas: list[float] = field(default_factory=lambda: [0.25, 0.5, 0.75, 1.0])
    snrs_db: list[float] = field(default_factory=lambda: [20.0, 10.0, 5.0, 0.0])
    babble_talkers: int = 3
    babble_snrs_db: list[float] = field(default_factory=lambda: [10.0, 0.0])
    intelligibility_pairs: int = 8  # (audio B, phones A) pairs per clip, spread over phone error rates
    plot_set: str = "test_seen"  # the test set whose curves are plotted


@dataclass
class ScrapsConfig:
    name: str = "scraps"
    units: str = "ipa"
    n_mels: int = 80
    hop_length: int = 320  # mel hop in samples (20 ms), as the default CLAP-IPA
    embed_dim: int = 256  # the integrator's hidden size (or the pooled projection's, without one)
    clip_init_temperature: float = 0.07  # CLIP's τ; learned at optim.loss_lr
    speech: SpeechEncoderConfig = field(default_factory=SpeechEncoderConfig)
    phone: PhoneEncoderConfig = field(default_factory=PhoneEncoderConfig)
    integrator: IntegratorConfig = field(default_factory=IntegratorConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(loss_lr=1e-3))
    eval: ScrapsEvalConfig = field(default_factory=ScrapsEvalConfig)


def as_config(cfg: Any) -> DictConfig:
    """Validate a dict / DictConfig (e.g. from a checkpoint's hyper-parameters) against ScrapsConfig."""
    cfg = OmegaConf.merge(OmegaConf.structured(ScrapsConfig), cfg)
    if cfg.integrator.kind not in INTEGRATORS:
        raise ValueError(f"model.integrator.kind={cfg.integrator.kind!r}; use one of {INTEGRATORS}")
    if cfg.units != "ipa":
        raise ValueError(f"model.units={cfg.units!r}: SCRAPS reads IPA")
    return cfg


class Scraps(SpeechPhoneModel):
    """Acoustic and phonetic transformers, each summarised by an LSTM integrator; CLIP loss between them."""

    Config = ScrapsConfig

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
        features = tokenizer.feature_matrix() if cfg.phone.articulatory_features else None
        self.phone_encoder = PhoneEncoder(cfg.phone, vocab_size=tokenizer.vocab_size, feature_matrix=features)
        integrated = cfg.integrator.kind != "none"
        width = cfg.integrator.input_size if integrated else cfg.embed_dim
        self.speech_proj = nn.Linear(self.speech_encoder.hidden_size, width)
        self.phone_proj = nn.Linear(self.phone_encoder.hidden_size, width)
        self.integrators = build_integrators(cfg.integrator.kind, width, cfg.embed_dim, cfg.integrator.num_layers)
        self.loss = ClipLoss(init_logit_scale=math.log(1 / cfg.clip_init_temperature))

    # ---- embeddings -------------------------------------------------------------------------
    def _summarise(self, side: str, states: Tensor, mask: Tensor) -> Tensor:
        """One L2-normalised vector per sequence: the integrator's final state, or the masked mean."""
        if side in self.integrators:
            return F.normalize(self.integrators[side](states, mask), dim=-1)
        return F.normalize(masked_mean(states, mask), dim=-1)

    def speech_embedding(self, audio: Tensor, audio_lens: Tensor) -> Tensor:
        """L2-normalised embeddings of 16 kHz waveforms [B, T]."""
        feats, frame_lens = self.logmel(audio, audio_lens)
        if self.training:
            feats = self.specaugment(self.mel_warp(feats), frame_lens)
        hidden, mask = self.speech_encoder(feats, frame_lens)
        return self._summarise("speech", self.speech_proj(hidden), mask)

    def phone_embedding(self, ids: Tensor, lens: Tensor) -> Tensor:
        """L2-normalised embeddings of token id rows [B, L]."""
        hidden, mask = self.phone_encoder(ids, lens)
        return self._summarise("phone", self.phone_proj(hidden), mask)

    # ---- training ---------------------------------------------------------------------------
    def training_step(self, batch: dict, batch_idx: int) -> Tensor:
        self.phone_encoder.mark_trained(batch["phone_ids"], batch["phone_lens"])
        audio, audio_lens = self.wave_augment(batch["audio"], batch["audio_lens"])
        speech = self.speech_embedding(audio, audio_lens)
        phones = self.phone_embedding(batch["phone_ids"], batch["phone_lens"])
        loss = self.loss(speech, phones)
        self.log_dict({"train/loss": loss, "train/temperature": 1 / self.loss.logit_scale.exp()},
                      prog_bar=True, batch_size=len(batch["ipa"]))
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
        from phonclip.eval.scraps_suite import evaluate_scraps

        return evaluate_scraps(self, datamodule, Path(out_dir), self.cfg.eval, logger=self.logger)

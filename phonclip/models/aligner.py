"""IPA-ALIGNER (Zhu et al. 2024, "The taste of IPA"): CLAP-IPA fine-tuned with a Forward-Sum loss, so
its frame and phone embeddings line up monotonically and decode into phone and word boundaries.

Read top to bottom: config → the CLAP-IPA model it starts from → frame × phone scores → training step
(Forward-Sum, optionally plus SigLIP) → decoding (batched Viterbi, or the uniform baseline) → ``align``
for users → evaluation.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from omegaconf import DictConfig, OmegaConf
from torch import Tensor, nn

from phonclip.alignment import (
    Alignment,
    AlignmentTargets,
    frame_labels,
    intervals,
    monotonic_viterbi,
    uniform_times,
)
from phonclip.audio import resample
from phonclip.encoders.pooling import masked_mean
from phonclip.losses import ForwardSumLoss
from phonclip.models import clap_ipa
from phonclip.models.base import PhonclipModel
from phonclip.optim import OptimConfig, configure_adamw

DECODERS = ("viterbi", "uniform")


@dataclass
class AlignEvalConfig:
    """Evaluation sizes and tolerances."""

    max_clips: int = 300  # per test set, in the loader's fixed order
    tolerances_ms: list[float] = field(default_factory=lambda: [10.0, 20.0, 50.0])
    plot_examples: int = 3  # similarity-matrix plots of the first clips of the first test set


@dataclass
class AlignerConfig:
    name: str = "aligner"
    units: str = "ipa"
    # The CLAP-IPA run (directory or .ckpt) to start from. Its architecture is copied into ``clap`` when
    # the aligner is built, and checkpoints of the aligner carry it, so they load without this run.
    init_from: str | None = "runs/clap_ipa/main"
    clap: Any = None  # filled from init_from; not for users to set
    # 1: the speech encoder's conv stem keeps the mel frame rate (20 ms steps at CLAP-IPA's 20 ms hop);
    # 2: CLAP-IPA's own 40 ms steps (what the zero-shot arm reads).
    frame_stride: int = 1
    hop_length: int | None = None  # mel hop in samples; None keeps the CLAP-IPA run's
    attention_window: int | None = None  # the speech encoder's local attention, frames each side
    temperature: float = 0.1  # frame·phone cosine / temperature are the alignment logits
    specaugment: bool = False  # CLAP-IPA's SpecAugment while fine-tuning (its time masks blur boundaries)
    blank_logit: float = -1.0  # initial silence logit (RAD-TTS's constant blank); learned per frame
    forward_sum_weight: float = 1.0
    siglip_weight: float = 0.0  # > 0 keeps CLAP-IPA's retrieval space while aligning
    # > 0 adds frame classification against the training clips' gold timings (the synthetic corpus's
    # espeak phone events; clips without timings add nothing): where the boundaries sit, not only their order.
    gold_weight: float = 0.0
    decoder: str = "viterbi"  # "viterbi", or "uniform": the baseline, durations ∝ phone count
    min_pause_s: float = 0.0  # a silence the decoder puts between words lasts this long at least, or is absent
    min_phone_s: float = 0.0  # every phone the decoder places lasts this long at least (one frame at 0)
    # > 0: a duration head on the phone encoder's states learns each phone's log-normal duration from the
    # training clips' gold timings, and the Viterbi adds this weight × its log-density per phone.
    duration_prior: float = 0.0
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(lr=5e-4, warmup_steps=100))
    eval: AlignEvalConfig = field(default_factory=AlignEvalConfig)


class MissingClapRun(FileNotFoundError):
    """The aligner has no CLAP-IPA run to start from: said once, with the command that makes one."""


def as_config(cfg: Any) -> DictConfig:
    """Validate against AlignerConfig and fill ``clap`` from ``init_from`` when it is not there yet."""
    cfg = OmegaConf.merge(OmegaConf.structured(AlignerConfig), cfg)
    if cfg.decoder not in DECODERS:
        raise ValueError(f"model.decoder={cfg.decoder!r}; use one of {DECODERS}")
    if cfg.clap is None:
        cfg.clap = OmegaConf.to_container(clap_ipa.as_config(_clap_checkpoint(cfg.init_from)["hyper_parameters"]["cfg"]))
    clap = clap_ipa.as_config(cfg.clap)
    if clap.units != "ipa":
        raise ValueError(f"model.init_from={cfg.init_from} reads {clap.units!r} units; the aligner needs an IPA model")
    clap.speech.stem_stride = cfg.frame_stride
    clap.hop_length = cfg.hop_length or clap.hop_length
    clap.speech.attention_window = cfg.attention_window
    cfg.clap = OmegaConf.to_container(clap)
    return cfg


def _clap_checkpoint(path: str | None) -> dict:
    from phonclip.api import resolve_checkpoint

    if path is None:
        raise MissingClapRun("model.init_from is empty: the aligner fine-tunes a CLAP-IPA run")
    try:
        return torch.load(resolve_checkpoint(path), map_location="cpu", weights_only=False)
    except FileNotFoundError:
        raise MissingClapRun(
            f"no CLAP-IPA run at {path} to fine-tune: train one first with `make train EXP=clap_ipa` "
            "(or point model.init_from at a run directory or .ckpt)"
        ) from None


class Aligner(PhonclipModel):
    """CLAP-IPA's encoders + a per-frame silence score; ``align`` serves users, ``evaluate`` the suite."""

    Config = AlignerConfig

    def __init__(self, cfg: Any, tokenizer: Any, seed: int = 0) -> None:
        super().__init__(seed=seed)
        starting = cfg.get("clap") is None if isinstance(cfg, (dict, DictConfig)) else cfg.clap is None
        cfg = as_config(cfg)
        self.save_hyperparameters({"cfg": OmegaConf.to_container(cfg), "seed": seed})
        self.cfg = cfg
        self.tokenizer = tokenizer
        self.clap = clap_ipa.ClapIpa(cfg.clap, tokenizer, seed=seed)
        if starting:  # a fresh aligner: CLAP-IPA's weights; a reloaded one gets its own from its checkpoint
            self.clap.load_state_dict(_clap_checkpoint(cfg.init_from)["state_dict"])
        self.clap.loss.requires_grad_(cfg.siglip_weight > 0)  # unused parameters would stall DDP
        # Silence scores like a phone, (frame · s) / temperature, plus a bias: at init (s = 0) the constant
        # blank of RAD-TTS; the 1/temperature scale lets s learn as fast as the phone embeddings move.
        self.silence = nn.Parameter(torch.zeros(cfg.clap.embed_dim))
        self.silence_bias = nn.Parameter(torch.tensor(float(cfg.blank_logit)))
        self.forward_sum = ForwardSumLoss()
        # Mean and log-std of a phone's log duration in frames, read from detached states: it learns from
        # the alignment space without moving it.
        hidden = self.clap.phone_encoder.hidden_size
        self.duration = (nn.Sequential(nn.Linear(hidden, 128), nn.GELU(), nn.Linear(128, 2))
                         if cfg.duration_prior > 0 else None)

    @property
    def frame_seconds(self) -> float:
        """Seconds per output frame: the mel hop times the conv stem's stride."""
        return self.cfg.clap.hop_length * self.cfg.frame_stride / 16_000

    @property
    def min_phone_frames(self) -> int:
        """Frames every decoded phone lasts at least."""
        return max(1, round(self.cfg.min_phone_s / self.frame_seconds))

    # ---- frame × phone scores ---------------------------------------------------------------
    def frames(self, audio: Tensor, audio_lens: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Encoder states [B, T, H], their mask [B, T] and L2-normalised frame embeddings [B, T, D]."""
        clap = self.clap
        feats, frame_lens = clap.logmel(audio, audio_lens)
        if self.training and self.cfg.specaugment:
            feats = clap.specaugment(feats, frame_lens)
        hidden, mask = clap.speech_encoder(feats, frame_lens)
        return hidden, mask, F.normalize(clap.speech_proj(hidden), dim=-1)

    def phones(self, ids: Tensor, lens: Tensor, targets: list[AlignmentTargets]) -> tuple[Tensor, Tensor, Tensor]:
        """Encoder states [B, N, H] and L2-normalised embeddings [B, N, D] of each transcription's phones
        (word breaks and stress marks inform the context but are not aligned), and phone counts [B]."""
        hidden, _ = self.clap.phone_encoder(ids, lens)
        phone_lens = torch.tensor([len(t.positions) for t in targets], device=ids.device)
        index = torch.zeros(len(targets), int(phone_lens.max()), dtype=torch.long, device=ids.device)
        for row, t in zip(index, targets):
            row[: len(t.positions)] = torch.tensor(t.positions, device=ids.device)
        hidden = hidden.gather(1, index[..., None].expand(-1, -1, hidden.shape[-1]))
        return hidden, F.normalize(self.clap.phone_proj(hidden), dim=-1), phone_lens

    def scores(self, batch: dict) -> dict[str, Any]:
        """Alignment logits [B, T, N], silence logits [B, T], their lengths, the targets, and with a
        duration head each phone's predicted log-duration mean and std in frames [B, N]."""
        targets = [AlignmentTargets.from_ipa(self.tokenizer, ipa) for ipa in batch["ipa"]]
        hidden, mask, frames = self.frames(batch["audio"], batch["audio_lens"])
        phone_states, phones, phone_lens = self.phones(batch["phone_ids"], batch["phone_lens"], targets)
        logits = torch.einsum("btd,bnd->btn", frames, phones) / self.cfg.temperature
        blank = frames @ self.silence / self.cfg.temperature + self.silence_bias
        out = {"logits": logits, "blank": blank, "hidden": hidden, "mask": mask,
               "frame_lens": mask.sum(dim=1), "phone_lens": phone_lens, "targets": targets}
        if self.duration is not None:
            mean, log_std = self.duration(phone_states.detach()).unbind(-1)
            out["duration"] = (mean, log_std.exp())
        return out

    # ---- training ---------------------------------------------------------------------------
    def training_step(self, batch: dict, batch_idx: int) -> Tensor:
        self.clap.phone_encoder.mark_trained(batch["phone_ids"], batch["phone_lens"])
        out = self.scores(batch)
        loss = self.cfg.forward_sum_weight * self.forward_sum(out["logits"], out["frame_lens"], out["phone_lens"],
                                                              out["blank"])
        logs = {"train/forward_sum": loss}
        labels = self.gold_labels(out, batch["meta"]) if self.cfg.gold_weight > 0 or self.duration is not None else None
        if self.cfg.gold_weight > 0:
            logs["train/gold_frames"] = self.gold_frame_loss(out, labels)
            loss = loss + self.cfg.gold_weight * logs["train/gold_frames"]
        if self.duration is not None:
            logs["train/duration"] = self.duration_loss(out, labels)
            loss = loss + logs["train/duration"]
        if self.cfg.siglip_weight > 0:
            speech = F.normalize(self.clap.speech_proj(masked_mean(out["hidden"], out["mask"])), dim=-1)
            phones = self.clap.phone_embedding(batch["phone_ids"], batch["phone_lens"])
            logs["train/siglip"] = self.clap.loss(speech, phones)
            loss = loss + self.cfg.siglip_weight * logs["train/siglip"]
        self.log_dict({**logs, "train/loss": loss}, prog_bar=True, batch_size=len(batch["ipa"]))
        return loss

    def gold_labels(self, out: dict[str, Any], metas: list[dict]) -> Tensor:
        """Each frame's class [B, T] under the gold timings in the clips' metadata (0 silence, n + 1 phone n),
        -100 where a clip has none."""
        from phonclip.eval.align_suite import gold_phones

        labels = torch.full(out["logits"].shape[:2], -100, dtype=torch.long)
        for row, meta, t, n in zip(labels, metas, out["targets"], out["frame_lens"].tolist()):
            gold = frame_labels(self.tokenizer, t, gold_phones(meta), n, self.frame_seconds)
            if gold is not None:
                row[:n] = torch.tensor(gold)
        return labels.to(out["logits"].device)

    def gold_frame_loss(self, out: dict[str, Any], labels: Tensor) -> Tensor:
        """Cross-entropy of each frame's [silence, phones] distribution against its gold class; zero when
        no clip of the batch has gold timings."""
        if bool((labels < 0).all()):
            return out["logits"].sum() * 0.0
        log_probs = self.forward_sum.log_probs(out["logits"], out["phone_lens"], out["blank"])
        return F.nll_loss(log_probs.flatten(0, 1), labels.flatten(), ignore_index=-100)

    def duration_loss(self, out: dict[str, Any], labels: Tensor) -> Tensor:
        """Gaussian negative log-likelihood of each gold phone's log frame count under the duration head."""
        mean, std = out["duration"]
        counts = torch.stack([torch.bincount(row[row > 0] - 1, minlength=mean.shape[1])[: mean.shape[1]]
                              for row in labels])
        scored = counts > 0  # phones of clips with gold timings, at least a frame long
        if not bool(scored.any()):
            return mean.sum() * 0.0
        return F.gaussian_nll_loss(mean[scored], counts[scored].float().log(), std[scored] ** 2, full=True)

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        out = self.scores(batch)
        loss = self.forward_sum(out["logits"], out["frame_lens"], out["phone_lens"], out["blank"])
        self.log("val/forward_sum", loss, prog_bar=True, batch_size=len(batch["ipa"]))

    def configure_optimizers(self) -> dict:
        return configure_adamw(self, self.cfg.optim, loss=self.clap.loss)

    # ---- decoding ---------------------------------------------------------------------------
    @torch.no_grad()
    def decode(self, batch: dict) -> list[Alignment | None]:
        """Alignments of a batch (audio, its IPA) with this model's decoder; None for a clip with fewer
        frames than phones (no path gives every phone a frame)."""
        durations = (batch["audio_lens"].float() / 16_000).tolist()
        if self.cfg.decoder == "uniform":
            targets = [AlignmentTargets.from_ipa(self.tokenizer, ipa) for ipa in batch["ipa"]]
            return [intervals(t, *uniform_times(d, len(t.labels)), d) for t, d in zip(targets, durations)]
        was_training = self.training
        self.eval()
        out = self.scores({k: v.to(self.device) if isinstance(v, Tensor) else v for k, v in batch.items()})
        self.train(was_training)
        log_probs = self.forward_sum.log_probs(out["logits"], out["phone_lens"], out["blank"])
        blank_before = torch.zeros(len(durations), out["logits"].shape[-1] + 1, dtype=torch.bool)
        for row, t in zip(blank_before, out["targets"]):
            row[: len(t.labels) + 1] = torch.tensor(t.blank_before)
        prior = None
        if self.duration is not None:  # the prior's weight w scales its log-density: std / √w
            mean, std = out["duration"]
            prior = (mean, std / self.cfg.duration_prior ** 0.5)
        starts, ends, total = monotonic_viterbi(
            log_probs[..., 1:], out["frame_lens"], out["phone_lens"], log_probs[..., 0], blank_before.to(self.device),
            min_pause=max(1, round(self.cfg.min_pause_s / self.frame_seconds)), min_frames=self.min_phone_frames,
            durations=prior,
        )
        starts, ends, total = starts.cpu(), ends.cpu(), total.cpu()
        alignments: list[Alignment | None] = []
        step = self.frame_seconds
        for i, (t, d) in enumerate(zip(out["targets"], durations)):
            n, frames = len(t.labels), int(out["frame_lens"][i])
            if not torch.isfinite(total[i]):
                alignments.append(None)
                continue
            s = [min(v * step, d) for v in starts[i, :n].tolist()]
            e = [min(v * step, d) for v in ends[i, :n].tolist()]
            alignments.append(intervals(t, s, e, d, float(total[i]) / frames))
        return alignments

    # ---- users ------------------------------------------------------------------------------
    def align(self, waveform: Any, sample_rate: int = 16_000, ipa: str | None = None,
              text: str | None = None, lang: str | None = None) -> Alignment:
        """Phone and word intervals of one recording given its IPA (or text + espeak language code)."""
        from phonclip.ipa import normalize_ipa, phonemize

        if (ipa is None) == (text is None):
            raise ValueError("give the transcription as ipa=... or as text=... with lang=...")
        if ipa is None:
            if not lang:
                raise ValueError("text=... needs lang=... (an espeak language code such as es, de, en-us)")
            ipa = phonemize(text, lang)
        ipa = normalize_ipa(ipa).strip()
        targets = AlignmentTargets.from_ipa(self.tokenizer, ipa)
        if not targets.labels:
            raise ValueError(f"the transcription {ipa!r} has no phones")
        audio = torch.as_tensor(resample(torch.as_tensor(waveform, dtype=torch.float32), sample_rate, 16_000))
        if audio.ndim != 1 or len(audio) == 0:
            raise ValueError(f"expected one mono waveform with samples, got shape {tuple(audio.shape)}")
        ids, lens = self.clap.tokenize([ipa])
        batch = {"audio": audio[None].to(self.device), "audio_lens": torch.tensor([len(audio)], device=self.device),
                 "phone_ids": ids, "phone_lens": lens, "ipa": [ipa]}
        alignment = self.decode(batch)[0]
        if alignment is None:
            shortest = self.min_phone_frames * self.frame_seconds * 1000
            raise ValueError(f"the recording ({len(audio) / 16_000:.2f} s) is too short for its {len(targets.labels)} "
                             f"phones of {shortest:.0f} ms at least")
        return alignment

    # ---- evaluation -------------------------------------------------------------------------
    def evaluate(self, datamodule: Any, out_dir: Path) -> dict[str, Any]:
        from phonclip.eval.align_suite import evaluate_aligner

        return evaluate_aligner(self, datamodule, Path(out_dir), self.cfg.eval, logger=self.logger)


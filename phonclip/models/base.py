"""What every phonclip LightningModule offers the runner: a config schema, self-evaluation, and resume-exact
randomness; and, for models that embed speech and IPA in one space, the batching users embed and score with."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightning as L
import torch
from omegaconf import OmegaConf
from torch import Tensor, nn

from phonclip.audio import resample


def pad_token_ids(tokenizer: Any, strings: list[str], max_positions: int, device: torch.device) -> tuple[Tensor, Tensor]:
    """Tokenizer ids of ``strings`` (cut at ``max_positions``; an empty string is one pad token) padded into
    [B, L], with their lengths [B], on ``device``."""
    rows = [tokenizer.encode(s)[:max_positions] or [tokenizer.pad_id] for s in strings]
    lens = torch.tensor([len(r) for r in rows], device=device)
    ids = torch.full((len(rows), int(lens.max())), tokenizer.pad_id, dtype=torch.long, device=device)
    for i, row in enumerate(rows):
        ids[i, : len(row)] = torch.tensor(row, device=device)
    return ids, lens


def pad_waveforms(clips: list[Any], device: torch.device) -> tuple[Tensor, Tensor]:
    """Waveforms (arrays or tensors) zero-padded into [B, T] float32 on ``device``, with their lengths [B]."""
    lens = torch.tensor([len(c) for c in clips], device=device)
    audio = torch.zeros(len(clips), int(lens.max()), device=device)
    for i, clip in enumerate(clips):
        audio[i, : len(clip)] = torch.as_tensor(clip, dtype=torch.float32).to(device)
    return audio, lens


@torch.no_grad()
def embed_strings(model: Any, embed: Callable[[Tensor, Tensor], Tensor], strings: list[str], batch_size: int,
                  dim: int) -> Tensor:
    """``embed(ids, lens)`` of ``strings`` tokenised by ``model.tokenize``, in eval mode and batches, without
    gradients; [N, dim] on the CPU (the model's train / eval mode is restored)."""
    was_training = model.training
    model.eval()
    out = [embed(*model.tokenize(strings[i : i + batch_size])).float().cpu() for i in range(0, len(strings), batch_size)]
    model.train(was_training)
    return torch.cat(out) if out else torch.empty(0, dim)


class PhonclipModel(L.LightningModule):
    """Base class: subclasses set ``Config`` (a dataclass) and implement ``training_step`` and ``evaluate``."""

    Config: type

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        self.seed = seed

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        """Reseed from (seed, step) so augmentation and dropout replay exactly after a resume."""
        torch.manual_seed(self.seed * 1_000_003 + self.global_step)

    def evaluate(self, datamodule: L.LightningDataModule, out_dir: Path) -> dict[str, Any]:
        """Run this model's evaluation suite; return nested ``{section: {metric: value}}`` and write plots to out_dir."""
        raise NotImplementedError(f"{type(self).__name__} must implement evaluate()")

    @property
    def eval_device(self) -> torch.device:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")


class SpeechPhoneModel(PhonclipModel):
    """A speech tower and a phone tower meeting in one space of L2-normalised vectors.

    Subclasses implement ``speech_embedding(audio, audio_lens)`` and ``phone_embedding(ids, lens)`` and
    hold ``self.tokenizer`` and ``self.cfg`` (with ``embed_dim`` and ``phone.max_positions``); this class
    batches users' waveforms and strings through them, without gradients.
    """

    def speech_embedding(self, audio: Tensor, audio_lens: Tensor) -> Tensor:
        raise NotImplementedError

    def phone_embedding(self, ids: Tensor, lens: Tensor) -> Tensor:
        raise NotImplementedError

    def tokenize(self, strings: list[str]) -> tuple[Tensor, Tensor]:
        """Pad tokenizer ids of ``strings`` into [B, L] on this module's device."""
        return pad_token_ids(self.tokenizer, strings, self.cfg.phone.max_positions, self.device)

    def embed_phones(self, strings: list[str], batch_size: int = 256) -> Tensor:
        """Embeddings of IPA strings (or text, for a text-units model), batched, no grad; [N, D] on CPU."""
        return embed_strings(self, self.phone_embedding, strings, batch_size, self.cfg.embed_dim)

    @torch.no_grad()
    def embed_speech(self, waveforms: list[Any], sample_rate: int = 16_000, batch_size: int = 32) -> Tensor:
        """Embeddings of waveforms at any sample rate (resampled to 16 kHz), batched, no grad; [N, D] on CPU."""
        was_training = self.training
        self.eval()
        clips = [torch.as_tensor(resample(torch.as_tensor(w, dtype=torch.float32), sample_rate, 16_000))
                 for w in waveforms]
        out = []
        for i in range(0, len(clips), batch_size):
            out.append(self.speech_embedding(*pad_waveforms(clips[i : i + batch_size], self.device)).float().cpu())
        self.train(was_training)
        return torch.cat(out) if out else torch.empty(0, self.cfg.embed_dim)

    @torch.no_grad()
    def score(self, waveforms: list[Any], sample_rate: int = 16_000, ipa: str | list[str] = "") -> Tensor:
        """How well each recording matches its IPA: the cosine of their embeddings, in [-1, 1] (higher =
        closer). ``ipa`` is one string for every waveform, or one per waveform; returns [N] on CPU."""
        strings = [ipa] * len(waveforms) if isinstance(ipa, str) else list(ipa)
        if len(strings) != len(waveforms):
            raise ValueError(f"{len(waveforms)} waveforms but {len(strings)} transcriptions")
        if any(not s.strip() for s in strings):
            raise ValueError("a transcription is empty")
        speech = self.embed_speech(waveforms, sample_rate)
        return (speech * self.embed_phones(strings)).sum(-1).clamp(-1.0, 1.0)


class FrozenEncoderProbe(PhonclipModel):
    """A probe of a frozen speech encoder (``cfg.speech``: a ``SourceSpeechConfig``): the Trainer has nothing to
    fit (run with ``trainer.max_steps=0``); ``evaluate`` does the work."""

    def __init__(self, cfg: Any, tokenizer: Any = None, seed: int = 0) -> None:
        from phonclip.encoders.frozen import load_frozen_speech

        super().__init__(seed=seed)
        cfg = OmegaConf.merge(OmegaConf.structured(self.Config), cfg)
        self.save_hyperparameters({"cfg": OmegaConf.to_container(cfg), "seed": seed})
        self.cfg = cfg
        self.speech = load_frozen_speech(cfg.speech)
        self.unused = nn.Parameter(torch.zeros(0))  # Lightning wants a parameter; the encoder stays frozen

    def training_step(self, batch: Any, batch_idx: int) -> Tensor:
        raise RuntimeError(f"{type(self).__name__} trains nothing in fit(): run it with trainer.max_steps=0")

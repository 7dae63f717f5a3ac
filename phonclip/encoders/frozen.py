"""Any speech encoder the project can load, frozen, with its own log-mel front end: the object layer-wise
probes read, whether it comes from a trained phonclip run or from a Whisper checkpoint (hub name or dir)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn
from transformers import WhisperConfig

from phonclip.encoders.pooling import masked_mean
from phonclip.encoders.speech import SpeechEncoder, SpeechEncoderConfig
from phonclip.features import LogMel


@dataclass
class SourceSpeechConfig:
    """Where the speech encoder comes from, and where it exits."""

    # A phonclip run directory, .ckpt or export whose model has a Whisper-style speech encoder (clap_ipa, aligner),
    # or a Whisper model: a hub name (openai/whisper-base) or a local directory saved by save_pretrained.
    source: str = "runs/clap_ipa/main"
    exit_layer: int | None = None  # keep only the first k layers (None: all)


class MissingEncoder(FileNotFoundError):
    """The configured encoder is not there: said once, with the command or setting that fixes it."""


class FrozenSpeech(nn.Module):
    """A log-mel front end and a speech encoder in eval mode, without gradients."""

    def __init__(self, logmel: LogMel, encoder: SpeechEncoder, source: str) -> None:
        super().__init__()
        self.logmel = logmel
        self.encoder = encoder
        self.source = source
        self.requires_grad_(False)
        self.eval()

    @property
    def num_layers(self) -> int:
        return self.encoder.num_layers

    @property
    def hidden_size(self) -> int:
        return self.encoder.hidden_size

    @property
    def max_samples(self) -> int:
        """Longest waveform (16 kHz samples) the encoder reads in one piece."""
        return self.encoder.max_frames * self.logmel.hop_length

    @torch.no_grad()
    def frames(self, audio: Tensor, audio_lens: Tensor) -> tuple[Tensor, Tensor]:
        """Last (exit) layer's frame states [B, T, D] and their mask [B, T]."""
        feats, frame_lens = self.logmel(audio, audio_lens)
        return self.encoder(feats, frame_lens)

    @torch.no_grad()
    def pooled_layers(self, audio: Tensor, audio_lens: Tensor) -> Tensor:
        """Mean-pooled states of the embeddings and of every layer: [num_layers + 1, B, D]."""
        feats, frame_lens = self.logmel(audio, audio_lens)
        _, mask, states = self.encoder(feats, frame_lens, output_all_layers=True)
        return torch.stack([masked_mean(s, mask) for s in states])


def _from_run(path: Path) -> tuple[LogMel, SpeechEncoder]:
    from phonclip.api import load

    try:
        model = load(path)
    except FileNotFoundError as err:
        raise MissingEncoder(str(err)) from None
    model = getattr(model, "clap", model)  # an aligner run carries its CLAP-IPA model
    if not isinstance(getattr(model, "speech_encoder", None), SpeechEncoder):
        raise TypeError(f"the run at {path} ({type(model).__name__}) has no Whisper-style speech encoder to probe")
    return model.logmel, model.speech_encoder


def _from_whisper(name_or_path: str) -> tuple[LogMel, SpeechEncoder]:
    try:
        config = WhisperConfig.from_pretrained(name_or_path)
    except (OSError, ValueError) as err:
        raise MissingEncoder(
            f"no phonclip run or Whisper model at {name_or_path!r} (a hub name needs the network; offline, train "
            f"one with `make train EXP=clap_ipa` or point model.speech.source at a run or a saved model): {err}"
        ) from None
    encoder = SpeechEncoder(SpeechEncoderConfig(
        pretrained=name_or_path, n_mels=config.num_mel_bins, max_frames=2 * config.max_source_positions))
    return LogMel(n_mels=config.num_mel_bins, hop_length=encoder.mel_hop_length), encoder


def load_frozen_speech(cfg: SourceSpeechConfig) -> FrozenSpeech:
    """The encoder ``cfg.source`` names, cut at ``cfg.exit_layer``; runs load through ``phonclip.load``."""
    path = Path(cfg.source)
    if path.suffix == ".ckpt" or (path / "checkpoints").is_dir() or (path / "phonclip.json").is_file():
        logmel, encoder = _from_run(path)
    else:
        logmel, encoder = _from_whisper(cfg.source)
    if cfg.exit_layer is not None:
        encoder.exit_at(cfg.exit_layer)
    return FrozenSpeech(logmel, encoder, cfg.source)

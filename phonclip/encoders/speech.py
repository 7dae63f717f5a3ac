"""Whisper's encoder on variable-length, padded log-mel batches: short clips need no 30 s padding.

The stock ``WhisperEncoder.forward`` only accepts exactly ``2 * max_source_positions`` frames.
``SpeechEncoder`` reuses its modules (conv stem, positional table, layers, final layer norm) and
runs them itself with a key-padding attention mask, so a clip embeds the same alone or padded
in a batch, and a 3000-frame clip gives exactly the stock output.

Notes:
- Mel frames past ``frame_lens`` are zeroed before the conv stem (and between its two convs),
  so the stem sees the same zero padding a lone clip gets from the convs' own padding.
- ``exit_layer=k`` keeps only the first ``k`` layers (the rest are dropped from the module, so
  DDP sees no unused parameters) and still applies the final ``layer_norm``: the output then
  has the same scale as the full encoder's, which is what a projection head expects.
- ``output_all_layers=True`` also returns num_layers + 1 states, as transformers'
  ``output_hidden_states`` does: the embeddings, each layer's output, and the last layer's
  output after the final layer norm (so the last equals ``hidden``).
- Clips longer than ``max_frames`` raise ``ValueError``: split them upstream (the positional
  table has no entries past ``max_frames // 2``; with ``stem_stride=1`` one entry per mel frame).
- A pretrained Whisper was trained on 30 s inputs padded with silence; fine-tuning on unpadded
  clips (as here) is what CLAP-IPA does.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn
from transformers import WhisperConfig, WhisperModel
from transformers.modeling_attn_mask_utils import (
    _prepare_4d_attention_mask,
    _prepare_4d_attention_mask_for_sdpa,
)
from transformers.models.whisper.modeling_whisper import WhisperEncoder

from phonclip.encoders.pooling import lengths_to_mask, masked_mean

# (d_model, layers, heads, ffn) of openai's Whisper encoders, plus a size that trains on 2 CPUs.
SIZES: dict[str, tuple[int, int, int, int]] = {
    "cpu": (192, 4, 4, 768),
    "tiny": (384, 4, 6, 1536),
    "base": (512, 6, 8, 2048),
    "small": (768, 12, 12, 3072),
}
ATTN_IMPLEMENTATIONS = ("sdpa", "eager")


@dataclass
class SpeechEncoderConfig:
    """How to build the speech tower: a named random-init size or a Whisper checkpoint's encoder."""

    pretrained: str | None = None  # hub name (openai/whisper-base) or local dir of a Whisper model
    size: str = "cpu"  # used when pretrained is None: one of SIZES
    n_mels: int = 80
    max_frames: int = 3000  # input mel frames (10 ms each); 2 * max_source_positions
    exit_layer: int | None = None  # keep only the first k layers
    # Stride of the conv stem's second conv: 2 (Whisper's) halves the mel frame rate; 1 keeps it, for
    # frame-level tasks that need finer steps (the aligner: 20 ms outputs from 20 ms mel frames).
    stem_stride: int = 2
    # Frames each side a frame may attend to (None: the whole clip). A local window keeps each frame's
    # state about its own stretch of audio, which frame-level alignment needs.
    attention_window: int | None = None
    dropout: float = 0.0
    gradient_checkpointing: bool = False
    attn_implementation: str = "sdpa"  # "sdpa" or "eager"


def _build_whisper_encoder(cfg: SpeechEncoderConfig) -> WhisperEncoder:
    """Make the library's encoder, so public Whisper checkpoints load without key renaming."""
    if cfg.attn_implementation not in ATTN_IMPLEMENTATIONS:
        raise ValueError(
            f"attn_implementation={cfg.attn_implementation!r}; use one of {ATTN_IMPLEMENTATIONS}"
        )
    if cfg.max_frames <= 0 or cfg.max_frames % 2:
        raise ValueError(f"max_frames must be a positive even number, got {cfg.max_frames}")
    if cfg.pretrained is not None:
        kwargs = {"dropout": cfg.dropout, "attn_implementation": cfg.attn_implementation}
        if WhisperConfig.from_pretrained(cfg.pretrained).architectures == ["WhisperEncoder"]:
            encoder = WhisperEncoder.from_pretrained(cfg.pretrained, **kwargs)  # an encoder alone (phonclip export)
        else:
            # WhisperEncoder.from_pretrained misses the "encoder." key prefix of a full Whisper
            # checkpoint and silently re-initialises; loading the full model and keeping its encoder
            # is the way that loads the weights (tests/test_encoders.py checks it).
            encoder = WhisperModel.from_pretrained(cfg.pretrained, **kwargs).encoder
        if encoder.config.num_mel_bins != cfg.n_mels:
            raise ValueError(
                f"{cfg.pretrained} expects {encoder.config.num_mel_bins} mel bins, "
                f"but n_mels={cfg.n_mels}"
            )
        if cfg.max_frames > 2 * encoder.config.max_source_positions:
            raise ValueError(
                f"max_frames={cfg.max_frames} exceeds {cfg.pretrained}'s "
                f"{2 * encoder.config.max_source_positions} positions"
            )
        return encoder
    if cfg.size not in SIZES:
        raise ValueError(f"unknown speech encoder size {cfg.size!r}; choose one of {sorted(SIZES)}")
    d_model, layers, heads, ffn = SIZES[cfg.size]
    config = WhisperConfig(
        num_mel_bins=cfg.n_mels,
        d_model=d_model,
        encoder_layers=layers,
        encoder_attention_heads=heads,
        encoder_ffn_dim=ffn,
        decoder_layers=layers,
        decoder_attention_heads=heads,
        decoder_ffn_dim=ffn,
        max_source_positions=cfg.max_frames // 2,
        dropout=cfg.dropout,
        attn_implementation=cfg.attn_implementation,
    )
    return WhisperEncoder(config)


class SpeechEncoder(nn.Module):
    """Encode padded log-mel batches into frame states (one per ``stem_stride`` mel frames), with a mask."""

    def __init__(self, cfg: SpeechEncoderConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.encoder = _build_whisper_encoder(cfg)
        if cfg.exit_layer is not None:
            self.exit_at(cfg.exit_layer)
        if cfg.stem_stride not in (1, 2):
            raise ValueError(f"stem_stride={cfg.stem_stride} must be 1 or 2")
        self.encoder.conv2.stride = (cfg.stem_stride,)
        if cfg.gradient_checkpointing:
            self.encoder.gradient_checkpointing_enable({"use_reentrant": False})

    def exit_at(self, layer: int) -> None:
        """Keep only the first ``layer`` layers (early exit), also on an encoder loaded from a trained run."""
        n_layers = len(self.encoder.layers)
        if not 1 <= layer <= n_layers:
            raise ValueError(f"exit_layer={layer} must be in [1, {n_layers}]")
        self.encoder.layers = self.encoder.layers[:layer]
        self.encoder.config.encoder_layers = layer
        self.cfg.exit_layer = layer

    @property
    def mel_hop_length(self) -> int:
        """Mel hop (samples) the weights were trained on: Whisper's 160, or what ``phonclip export`` recorded."""
        return getattr(self.encoder.config, "mel_hop_length", 160)

    @property
    def hidden_size(self) -> int:
        """Width of the frame states, for sizing projection heads."""
        return self.encoder.config.d_model

    @property
    def num_layers(self) -> int:
        """Transformer layers actually run (after early exit), for layer-wise probes."""
        return len(self.encoder.layers)

    @property
    def max_frames(self) -> int:
        """Longest input in mel frames; longer clips must be split upstream."""
        return self.cfg.max_frames

    def output_lengths(self, frame_lens: Tensor) -> Tensor:
        """Map mel-frame counts to encoder-frame counts (ceil(F / stem_stride))."""
        return torch.div(frame_lens - 1, self.cfg.stem_stride, rounding_mode="floor") + 1

    def _attention_mask(self, mask: Tensor, dtype: torch.dtype) -> Tensor | None:
        """Build the additive 4D key-padding (and, with ``attention_window``, band) mask in the dtype the
        attention scores will have."""
        if torch.is_autocast_enabled(mask.device.type):
            dtype = torch.get_autocast_dtype(mask.device.type)
        if self.cfg.attention_window is not None:
            steps = torch.arange(mask.shape[1], device=mask.device)
            band = (steps[:, None] - steps[None, :]).abs() <= self.cfg.attention_window
            keep = band[None, None] & mask[:, None, None, :]
            return torch.zeros(keep.shape, dtype=dtype, device=mask.device).masked_fill(~keep, torch.finfo(dtype).min)
        if self.encoder.config._attn_implementation == "sdpa":
            return _prepare_4d_attention_mask_for_sdpa(mask, dtype)
        return _prepare_4d_attention_mask(mask, dtype)

    def forward(
        self, feats: Tensor, frame_lens: Tensor, output_all_layers: bool = False
    ) -> tuple[Tensor, Tensor] | tuple[Tensor, Tensor, tuple[Tensor, ...]]:
        """Encode to (hidden [B, ceil(F/2), D], mask), plus every layer's states if asked."""
        enc = self.encoder
        if feats.ndim != 3 or feats.shape[1] != enc.config.num_mel_bins:
            raise ValueError(
                f"feats must be [B, {enc.config.num_mel_bins}, F], got {tuple(feats.shape)}"
            )
        if frame_lens.shape != feats.shape[:1]:
            raise ValueError(
                f"frame_lens must be [B={feats.shape[0]}], got {tuple(frame_lens.shape)}"
            )
        n_frames = feats.shape[-1]
        positions = enc.embed_positions.weight.shape[0] * self.cfg.stem_stride
        if n_frames > min(self.max_frames, positions):
            raise ValueError(
                f"feats has {n_frames} mel frames, more than the {min(self.max_frames, positions)} "
                f"this encoder reads (max_frames={self.max_frames}, stem_stride={self.cfg.stem_stride}); "
                "split long clips before encoding"
            )
        pad = ~lengths_to_mask(frame_lens, n_frames)[:, None, :]
        x = nn.functional.gelu(enc.conv1(feats.masked_fill(pad, 0.0))).masked_fill(pad, 0.0)
        x = nn.functional.gelu(enc.conv2(x)).transpose(1, 2)
        mask = lengths_to_mask(self.output_lengths(frame_lens), x.shape[1])
        x = x + enc.embed_positions.weight[: x.shape[1]]
        x = nn.functional.dropout(x, p=enc.dropout, training=self.training)
        attn_mask = self._attention_mask(mask, x.dtype)
        states = [x]
        for layer in enc.layers:
            x = layer(x, attn_mask, layer_head_mask=None)[0]
            states.append(x)
        x = enc.layer_norm(x)
        if not output_all_layers:
            return x, mask
        states[-1] = x
        return x, mask, tuple(states)

    def pooled(self, feats: Tensor, frame_lens: Tensor) -> Tensor:
        """One vector per clip (masked mean over real frames), for retrieval and the loss."""
        hidden, mask = self(feats, frame_lens)
        return masked_mean(hidden, mask)

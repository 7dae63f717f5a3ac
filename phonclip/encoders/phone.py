"""BERT over IPA segment tokens, plus articulatory-feature embeddings so unseen segments embed.

Each token's input embedding is its learned row plus ``Linear(panphon features)``: a segment
never seen in training (a new language's phone) still lands near the segments it shares
features with, which is how CLAP-IPA-style models generalise to unseen languages. The sum is
fed to ``BertModel`` as ``inputs_embeds``, so BERT's own position embeddings and layer norm
apply unchanged and public BERT checkpoints load as usual.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import Tensor, nn
from transformers import BertConfig, BertModel

from phonclip.encoders.packing import Packing
from phonclip.encoders.pooling import lengths_to_mask, masked_mean

logger = logging.getLogger(__name__)


@dataclass
class PhoneEncoderConfig:
    """How to build the phone tower: a random-init BERT of this shape or a BERT checkpoint."""

    pretrained: str | None = None  # BertModel.from_pretrained name or local dir
    hidden_size: int = 192
    num_layers: int = 4
    num_heads: int = 4
    intermediate_size: int = 768
    max_positions: int = 128
    dropout: float = 0.1
    articulatory_features: bool = True
    # Training only: drop a token's identity embedding with this probability, keeping its
    # articulatory features, so the encoder learns to read segments it never saw from features.
    token_dropout: float = 0.0
    # Inference only: a token no training transcription used has an identity embedding that was never
    # trained, so it is read from its articulatory features alone, as token dropout taught; one with
    # no feature training ever saw is left out (masked) as unreadable. No effect until a training
    # step has recorded the tokens it used (``trained_tokens``).
    untrained_tokens_as_features: bool = True


def _build_bert(cfg: PhoneEncoderConfig, vocab_size: int, pad_id: int) -> BertModel:
    """Make the library's BERT (no pooler: it would be an unused parameter under DDP)."""
    if cfg.pretrained is None:
        config = BertConfig(
            vocab_size=vocab_size,
            hidden_size=cfg.hidden_size,
            num_hidden_layers=cfg.num_layers,
            num_attention_heads=cfg.num_heads,
            intermediate_size=cfg.intermediate_size,
            max_position_embeddings=cfg.max_positions,
            hidden_dropout_prob=cfg.dropout,
            attention_probs_dropout_prob=cfg.dropout,
            pad_token_id=pad_id,
        )
        return BertModel(config, add_pooling_layer=False)
    bert = BertModel.from_pretrained(
        cfg.pretrained,
        add_pooling_layer=False,
        hidden_dropout_prob=cfg.dropout,
        attention_probs_dropout_prob=cfg.dropout,
    )
    if bert.config.vocab_size != vocab_size:
        logger.warning(
            "%s has a vocabulary of %d but the IPA tokenizer has %d: resizing token embeddings "
            "(new rows are freshly initialised)",
            cfg.pretrained,
            bert.config.vocab_size,
            vocab_size,
        )
        bert.resize_token_embeddings(vocab_size)
    return bert


class PhoneEncoder(nn.Module):
    """Encode padded IPA token ids into contextual segment states, with a real-token mask (the rows are
    packed for BERT, several transcriptions to a row: ``phonclip.encoders.packing``)."""

    def __init__(
        self,
        cfg: PhoneEncoderConfig,
        vocab_size: int,
        feature_matrix: Tensor | None = None,
        pad_id: int = 0,
    ) -> None:
        super().__init__()
        self.cfg = cfg
        self.bert = _build_bert(cfg, vocab_size, pad_id)
        self.feature_proj: nn.Linear | None = None
        if cfg.articulatory_features and feature_matrix is None:
            logger.warning(
                "articulatory_features=True but no feature matrix was given: using token "
                "embeddings only"
            )
        if cfg.articulatory_features and feature_matrix is not None:
            if feature_matrix.ndim != 2 or feature_matrix.shape[0] != vocab_size:
                raise ValueError(
                    f"feature_matrix must be [vocab_size={vocab_size}, n_features], "
                    f"got {tuple(feature_matrix.shape)}"
                )
            self.register_buffer("feature_matrix", feature_matrix.float())
            # No bias: a constant offset would duplicate the position embeddings. BERT's init std
            # keeps the feature term on the scale of the token rows.
            self.feature_proj = nn.Linear(feature_matrix.shape[1], self.hidden_size, bias=False)
            nn.init.normal_(self.feature_proj.weight, std=self.bert.config.initializer_range)
            self.register_buffer("trained_tokens", torch.zeros(vocab_size, dtype=torch.bool))

    @property
    def hidden_size(self) -> int:
        """Width of the segment states, for sizing projection heads."""
        return self.bert.config.hidden_size

    def mark_trained(self, ids: Tensor, lens: Tensor) -> None:
        """Record the tokens of training transcriptions (every rank's under DDP, so ranks agree)."""
        if self.feature_proj is None:
            return
        used = torch.zeros(self.trained_tokens.shape, dtype=torch.int32, device=ids.device)
        used[ids[lengths_to_mask(lens, ids.shape[1])]] = 1
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(used, op=dist.ReduceOp.MAX)
        self.trained_tokens |= used.bool()

    def readable_tokens(self) -> Tensor:
        """Tokens training taught the encoder to read: used in training, or carrying a feature some
        training token had (tone letters, when no training language has tones, are neither)."""
        trained_features = (self.feature_matrix[self.trained_tokens] != 0).any(dim=0)
        return self.trained_tokens | (self.feature_matrix[:, trained_features] != 0).any(dim=1)

    def forward(self, ids: Tensor, lens: Tensor) -> tuple[Tensor, Tensor]:
        """Return (hidden [B, L, D], mask [B, L] bool) for token ids padded past ``lens``."""
        if ids.ndim != 2 or lens.shape != ids.shape[:1]:
            raise ValueError(
                f"phone encoder needs ids [B, L] and lens [B]; got ids {tuple(ids.shape)} "
                f"and lens {tuple(lens.shape)}"
            )
        max_positions = self.bert.config.max_position_embeddings
        if ids.shape[1] > max_positions:
            raise ValueError(
                f"phone sequence of {ids.shape[1]} tokens exceeds max_positions={max_positions}"
            )
        mask = lengths_to_mask(lens, ids.shape[1])
        embeds = self.bert.embeddings.word_embeddings(ids)
        if self.feature_proj is not None:
            if self.training and self.cfg.token_dropout > 0:
                keep = torch.rand(ids.shape, device=ids.device) >= self.cfg.token_dropout
                embeds = embeds * keep.unsqueeze(-1).to(embeds.dtype)
            elif not self.training and self.cfg.untrained_tokens_as_features and self.trained_tokens.any():
                embeds = embeds * self.trained_tokens[ids].unsqueeze(-1).to(embeds.dtype)
                mask = _keep_one(mask & self.readable_tokens()[ids], mask)
            embeds = embeds + self.feature_proj(self.feature_matrix[ids])
        packing = Packing.plan(lens, ids.shape[1], max_width=max_positions)
        hidden = self.bert(
            inputs_embeds=packing.pack(embeds),
            attention_mask=packing.attention_mask(mask).long(),
            position_ids=packing.position,
        ).last_hidden_state
        return packing.unpack(hidden, *ids.shape), mask

    def pooled(self, ids: Tensor, lens: Tensor) -> Tensor:
        """One vector per transcription (masked mean over real tokens), for the contrastive loss."""
        hidden, mask = self(ids, lens)
        return masked_mean(hidden, mask)


def _keep_one(mask: Tensor, fallback: Tensor) -> Tensor:
    """``mask``, except rows it would leave empty keep ``fallback``'s tokens (a mean needs one)."""
    return torch.where(mask.any(dim=1, keepdim=True), mask, fallback)

"""P5: one CLAP-IPA training step of this project against the reference implementation's model code
(lingjzhu/clap-ipa), re-created at the same sizes, on the same batches, side by side in one run.

What is compared: the model step (forward + backward + gradient clipping + AdamW) inside the same Lightning
loop, batches fetched beforehand, same threads, same number of hard negatives.
- This project: the ``clap_ipa`` experiment's model as it trains: log-mel computed inside the step at its mel hop
  (20 ms), padded frames masked in the conv stem, SDPA attention, mean pooling then projection, SigLIP with the
  minimal-pair negatives (made inside the step) as extra columns of one loss, fused AdamW.
- The reference, re-created from its code's description (none of it copied): Whisper's 10 ms log-mel made
  beforehand by transformers' ``WhisperFeatureExtractor`` (its DataLoader workers do that; untimed here, in its
  favour) and cut to the batch's longest clip; a Whisper encoder of the same width, depth, heads and FFN
  (transformers' ``WhisperEncoderLayer``, SDPA) with the key-padding mask of every second frame; a projection of
  every frame, then the masked mean; BERT of the same shape over the same phone ids, every token projected, then
  the masked mean; the sigmoid loss from a dense ±1 label matrix; hard negatives (made beforehand) as a second
  phone forward with an only-negatives loss, the two losses averaged; torch's default AdamW and transformers'
  cosine schedule.
A second row runs this project's model at the reference's 10 ms hop, separating the implementation from the
recipe's frame rate.
"""

from __future__ import annotations

import random
import statistics
from typing import Any

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from omegaconf import DictConfig
from torch import Tensor, nn
from transformers import (
    BertConfig,
    BertModel,
    WhisperConfig,
    WhisperFeatureExtractor,
    get_cosine_schedule_with_warmup,
)
from transformers.models.whisper.modeling_whisper import WhisperEncoderLayer

from data_modules.schema import SAMPLE_RATE
from phonclip import config, runner
from phonclip.benchmarks.training import Replay, default_step, time_training
from phonclip.encoders.pooling import lengths_to_mask, masked_mean
from phonclip.encoders.speech import SIZES
from phonclip.minimal_pairs import MinimalPairSampler
from phonclip.models.base import pad_token_ids
from phonclip.trainer import resolve_precision

EXPERIMENT = "clap_ipa"
WARMUP_STEPS = 2
TIMED_STEPS = 12
REFERENCE_HOP = 160  # Whisper's 10 ms hop, which the reference trains at


def reference_sigmoid_loss(speech: Tensor, phones: Tensor, t_prime: Tensor, bias: Tensor,
                           only_negatives: bool = False) -> Tensor:
    """The reference's loss: −Σ log σ(z · (e^t' · cos + b)) / n with z = +1 on the diagonal (unless
    ``only_negatives``) and −1 elsewhere, from a dense label matrix."""
    n, m = speech.shape[0], phones.shape[0]
    logits = F.normalize(speech, dim=-1) @ F.normalize(phones, dim=-1).T * t_prime.exp() + bias
    labels = -torch.ones(n, m, device=logits.device)
    if not only_negatives:
        labels = labels + 2 * torch.eye(n, m, device=logits.device)
    return -F.logsigmoid(labels * logits).sum() / n


class ReferenceSpeech(nn.Module):
    """The reference's speech tower: Whisper conv stem + encoder layers on unmasked features, key-padding mask
    from every second frame, every frame projected, then the masked mean."""

    def __init__(self, size: str, n_mels: int, proj_size: int) -> None:
        super().__init__()
        d_model, layers, heads, ffn = SIZES[size]
        config = WhisperConfig(num_mel_bins=n_mels, d_model=d_model, encoder_layers=layers,
                               encoder_attention_heads=heads, encoder_ffn_dim=ffn, dropout=0.0,
                               attn_implementation="sdpa")
        self.conv1 = nn.Conv1d(n_mels, d_model, kernel_size=3, padding=1)
        self.conv2 = nn.Conv1d(d_model, d_model, kernel_size=3, stride=2, padding=1)
        self.positions = nn.Embedding(config.max_source_positions, d_model)
        self.layers = nn.ModuleList(WhisperEncoderLayer(config) for _ in range(layers))
        self.norm = nn.LayerNorm(d_model)
        self.projector = nn.Linear(d_model, proj_size)

    def forward(self, feats: Tensor, frame_mask: Tensor) -> Tensor:
        x = F.gelu(self.conv2(F.gelu(self.conv1(feats)))).transpose(1, 2)
        x = x + self.positions.weight[: x.shape[1]]
        mask = frame_mask[:, ::2]
        additive = torch.zeros(mask.shape[0], 1, mask.shape[1], mask.shape[1], dtype=x.dtype, device=x.device)
        additive = additive.masked_fill(~mask[:, None, None, :], torch.finfo(x.dtype).min)
        for layer in self.layers:
            x = layer(x, additive, layer_head_mask=None)[0]
        return masked_mean(self.projector(self.norm(x)), mask)


class ReferencePhone(nn.Module):
    """The reference's phone tower: BERT, every token projected, then the masked mean; it holds the loss's
    temperature and bias."""

    def __init__(self, vocab_size: int, cfg: DictConfig, proj_size: int) -> None:
        super().__init__()
        self.bert = BertModel(BertConfig(vocab_size=vocab_size, hidden_size=cfg.hidden_size,
                                         num_hidden_layers=cfg.num_layers, num_attention_heads=cfg.num_heads,
                                         intermediate_size=cfg.intermediate_size,
                                         max_position_embeddings=cfg.max_positions, hidden_dropout_prob=0.0,
                                         attention_probs_dropout_prob=0.0), add_pooling_layer=False)
        self.projector = nn.Linear(cfg.hidden_size, proj_size)
        self.t_prime = nn.Parameter(torch.tensor(float(np.log(10.0))))
        self.b = nn.Parameter(torch.tensor(-10.0))

    def forward(self, ids: Tensor, lens: Tensor) -> Tensor:
        mask = lengths_to_mask(lens, ids.shape[1])
        hidden = self.bert(input_ids=ids, attention_mask=mask.long()).last_hidden_state
        return masked_mean(self.projector(hidden), mask)


class ReferenceStep(L.LightningModule):
    """The reference's training step, optimiser and schedule around the two towers."""

    def __init__(self, cfg: DictConfig, vocab_size: int, max_steps: int) -> None:
        super().__init__()
        self.speech = ReferenceSpeech(cfg.model.speech.size, cfg.model.n_mels, cfg.model.embed_dim)
        self.phone = ReferencePhone(vocab_size, cfg.model.phone, cfg.model.embed_dim)
        self.lr, self.warmup, self.max_steps = cfg.model.optim.lr, cfg.model.optim.warmup_steps, max_steps

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        speech = self.speech(batch["feats"], batch["frame_mask"])
        t, b = self.phone.t_prime, self.phone.b
        loss = reference_sigmoid_loss(speech, self.phone(batch["phone_ids"], batch["phone_lens"]), t, b)
        negatives = self.phone(batch["negative_ids"], batch["negative_lens"])
        return (loss + reference_sigmoid_loss(speech, negatives, t, b, only_negatives=True)) / 2

    def configure_optimizers(self) -> dict:
        optimizer = torch.optim.AdamW(self.parameters(), lr=self.lr, weight_decay=1e-4)
        scheduler = get_cosine_schedule_with_warmup(optimizer, self.warmup, self.max_steps)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


def reference_batch(batch: dict[str, Any], extractor: WhisperFeatureExtractor, tokenizer: Any, n_negatives: int,
                    max_positions: int, seed: int) -> dict[str, Tensor]:
    """The reference's inputs for one of this project's batches: 10 ms Whisper features cut to the longest clip,
    the same phone ids, and ``n_negatives`` minimal-pair negatives."""
    clips = [batch["audio"][i, : int(n)].numpy() for i, n in enumerate(batch["audio_lens"])]
    features = extractor(clips, sampling_rate=SAMPLE_RATE, return_attention_mask=True, return_tensors="pt")
    length = int(features["attention_mask"].sum(-1).max())
    length += length % 2  # the stride-2 conv and the mask's every-second frame stay aligned
    rng = random.Random(seed)
    sampler = MinimalPairSampler()
    negatives = [sampler(rng.choice(batch["ipa"]), rng) for _ in range(n_negatives)]
    negative_ids, negative_lens = pad_token_ids(tokenizer, negatives, max_positions, torch.device("cpu"))
    return {"feats": features["input_features"][:, :, :length], "frame_mask": features["attention_mask"][:, :length].bool(),
            "phone_ids": batch["phone_ids"], "phone_lens": batch["phone_lens"], "negative_ids": negative_ids,
            "negative_lens": negative_lens}


def _clips_per_second(model: L.LightningModule, batches: list[dict[str, Any]], cfg: DictConfig,
                      precision: str) -> tuple[float, float]:
    seconds = time_training(model, Replay(batches), WARMUP_STEPS + TIMED_STEPS, cfg, precision)[WARMUP_STEPS:]
    clips = sum(len(b["phone_lens"]) for b in batches[WARMUP_STEPS:])
    return clips / sum(seconds), statistics.median(seconds)


def run() -> list[dict]:
    """Samples/s of this project's step and the reference's on the same batches; the ratio is the P5 target."""
    n_steps = WARMUP_STEPS + TIMED_STEPS
    cfg, model, batches, source = default_step(n_steps)
    precision = resolve_precision(cfg.trainer.precision)
    extractor = WhisperFeatureExtractor(feature_size=cfg.model.n_mels)
    n_negatives = [max(1, round(cfg.model.hard_negatives.rate * len(b["ipa"]))) for b in batches]
    reference_batches = [reference_batch(b, extractor, model.tokenizer, n, cfg.model.phone.max_positions, i)
                         for i, (b, n) in enumerate(zip(batches, n_negatives, strict=True))]
    ours, ours_step = _clips_per_second(model, batches, cfg, precision)
    L.seed_everything(cfg.seed, verbose=False)
    reference = ReferenceStep(cfg, model.tokenizer.vocab_size, n_steps)
    theirs, theirs_step = _clips_per_second(reference, reference_batches, cfg, precision)
    hop_10ms = config.load(EXPERIMENT, [f"model.hop_length={REFERENCE_HOP}"])[0][1]
    L.seed_everything(cfg.seed, verbose=False)
    ours_10ms, ours_10ms_step = _clips_per_second(runner.build(hop_10ms)[0], batches, hop_10ms, precision)
    clips = statistics.mean(len(b["ipa"]) for b in batches)
    setup = (f"{EXPERIMENT} sizes (speech {cfg.model.speech.size}, phone {cfg.model.phone.hidden_size}×"
             f"{cfg.model.phone.num_layers}), {clips:.0f} clips/batch, {torch.get_num_threads()} threads, "
             f"{TIMED_STEPS} steps after {WARMUP_STEPS} warm-up, {source}")
    return [
        {"benchmark": "this project: samples/s", "value": ours, "unit": "clips/s", "target": "—",
         "note": f"median {ours_step:.3f} s/step; {setup}"},
        {"benchmark": "reference re-created: samples/s", "value": theirs, "unit": "clips/s", "target": "—",
         "note": f"median {theirs_step:.3f} s/step; 10 ms features made beforehand (untimed)"},
        {"benchmark": "P5: this project ÷ reference", "value": ours / theirs, "unit": "x", "target": "≥ 1.5",
         "note": "samples/s ratio at each recipe's own mel hop (20 ms here, 10 ms the reference)"},
        {"benchmark": "this project at the reference's 10 ms hop ÷ reference", "value": ours_10ms / theirs,
         "unit": "x", "target": "—",
         "note": f"median {ours_10ms_step:.3f} s/step; the implementation alone, same frame rate"},
    ]


if __name__ == "__main__":
    for row in run():
        print(row)

"""CLAP-IPA's parts tested without a Trainer, so a failure points at the model, not the loop."""

from __future__ import annotations

import inspect
import math

import lightning as L
import numpy as np
import pytest
import torch
from tiny import write_tiny_whisper

from data_modules.collate import collate
from data_modules.schema import Sample
from phonclip.ipa import IpaTokenizer, normalize_ipa, segment
from phonclip.losses import SigLipLoss
from phonclip.minimal_pairs import segment_edit_distance
from phonclip.models.clap_ipa import ClapIpa
from phonclip.text_units import CharTokenizer

WORDS = [
    ("ˈɡato", "gato"),
    ("pero", "perro"),
    ("kasa", "casa"),
    ("ˈmundo", "mundo"),
    ("lus", "luz"),
    ("ˈaɡwa", "agua"),
]


def _config(rate: float = 0.0, units: str = "ipa", **optim: float) -> dict:
    """A small CLAP-IPA whose training step is deterministic (no dropout, no augmentation)."""
    return {
        "units": units,
        "embed_dim": 32,
        "speech": {"size": "cpu", "exit_layer": 2, "dropout": 0.0},
        "phone": {
            "hidden_size": 32,
            "num_layers": 1,
            "num_heads": 2,
            "intermediate_size": 64,
            "dropout": 0.0,
            "token_dropout": 0.0,
        },
        "hard_negatives": {"rate": rate},
        "augment": {
            "noise_prob": 0.0,
            "speed_prob": 0.0,
            "gain_db": [0.0, 0.0],
            "specaugment": {"freq_masks": 0, "time_masks": 0},
        },
        "optim": {"warmup_steps": 1, **optim},
    }


@pytest.fixture(scope="module")
def ipa_tokenizer() -> IpaTokenizer:
    return IpaTokenizer()


def _model(tokenizer: IpaTokenizer | CharTokenizer, **cfg: float | str) -> ClapIpa:
    torch.manual_seed(0)
    return ClapIpa(_config(**cfg), tokenizer, seed=0)


def _clip(seconds: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(16_000 * seconds)) / 16_000
    tone = np.sin(2 * np.pi * (150 + 60 * seed) * t)
    return (0.3 * tone + 0.05 * rng.standard_normal(len(t))).astype(np.float32)


def _batch(tokenizer: IpaTokenizer | CharTokenizer, n: int, units: str = "ipa") -> dict:
    samples = [
        Sample(key=f"c{i}", audio=_clip(0.25 + 0.05 * i, seed=i), ipa=ipa, text=text, lang="es")
        for i, (ipa, text) in enumerate(WORDS[:n])
    ]
    return collate(samples, tokenizer, units, {})


def _spy_tokenize(model: ClapIpa, monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """Record ``model.tokenize`` calls: in a training step only the hard negatives are tokenised."""
    calls: list[list[str]] = []
    tokenize = model.tokenize

    def spy(strings: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        calls.append(list(strings))
        return tokenize(strings)

    monkeypatch.setattr(model, "tokenize", spy)
    return calls


def _configure_optimizers(model: ClapIpa, max_steps: int) -> dict:
    """configure_optimizers reads the step budget from a Trainer; one is attached for the call only."""
    model.trainer = L.Trainer(
        max_steps=max_steps, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, accelerator="cpu",
    )  # fmt: skip
    try:
        return model.configure_optimizers()
    finally:
        model.trainer = None


@pytest.mark.parametrize(
    ("rate", "batch_size", "n_hard"), [(0.5, 6, 3), (0.34, 6, 2), (1.0, 4, 4), (0.0, 4, 0)]
)
def test_hard_negatives_are_minimal_pairs_that_enlarge_the_phone_batch(
    ipa_tokenizer, monkeypatch, rate, batch_size, n_hard
) -> None:
    model = _model(ipa_tokenizer, rate=rate)
    batch = _batch(ipa_tokenizer, batch_size)
    calls = _spy_tokenize(model, monkeypatch)
    seen = {}

    def record(loss: SigLipLoss, args: tuple, kwargs: dict) -> None:
        seen.update(inspect.signature(loss.forward).bind(*args, **kwargs).arguments)

    model.loss.register_forward_pre_hook(record, with_kwargs=True)
    model.training_step(batch, 0)

    extra = seen.get("extra_negatives_b")
    if n_hard == 0:
        assert extra is None and calls == []
        return
    (negatives,) = calls
    assert extra.shape == (n_hard, 32) and len(negatives) == n_hard
    positives = [normalize_ipa(ipa) for ipa in batch["ipa"]]
    for negative in negatives:
        assert negative not in positives
        assert min(segment_edit_distance(segment(negative), segment(p)) for p in positives) == 1, (
            negative
        )
    torch.testing.assert_close(extra, model.phone_embedding(*model.tokenize(negatives)))


def test_hard_negatives_replay_per_step(ipa_tokenizer, monkeypatch) -> None:
    model = _model(ipa_tokenizer, rate=1.0)
    batch = _batch(ipa_tokenizer, 6)
    drawn = _spy_tokenize(model, monkeypatch)
    monkeypatch.setattr(ClapIpa, "global_step", property(lambda self: self.test_step_number))
    for step in (0, 0, 1):
        model.test_step_number = step
        model.training_step(batch, 0)
    assert drawn[0] == drawn[1] != drawn[2]


def test_embed_phones_is_batch_size_invariant(ipa_tokenizer) -> None:
    model = _model(ipa_tokenizer)
    strings = ["a", "ˈɡato", "ˈmundo ˈaɡwa", "lus", "tʃ", "kasa pero lus"]
    full = model.embed_phones(strings)
    assert full.shape == (len(strings), 32)
    torch.testing.assert_close(full.norm(dim=-1), torch.ones(len(strings)))
    for batch_size in (1, 4):
        torch.testing.assert_close(
            model.embed_phones(strings, batch_size=batch_size), full, rtol=0, atol=1e-6
        )
    assert model.embed_phones([]).shape == (0, 32)


def test_speech_embedding_is_padding_invariant(ipa_tokenizer) -> None:
    model = _model(ipa_tokenizer).train()
    short, long = _clip(0.3, seed=1), _clip(1.1, seed=2)
    alone = model.embed_speech([short])
    padded = model.embed_speech([long, short])
    assert model.training  # embed_* evaluate in eval mode and restore the caller's mode
    assert alone.shape == (1, 32) and padded.shape == (2, 32)
    torch.testing.assert_close(padded[1], alone[0], rtol=0, atol=1e-5)
    assert (padded[0] - alone[0]).abs().max() > 1e-2  # a different clip embeds differently


def test_optimizer_gives_the_loss_its_own_group(ipa_tokenizer) -> None:
    model = _model(ipa_tokenizer, lr=1e-3, loss_lr=5e-2, weight_decay=0.1)
    optimizer = _configure_optimizers(model, max_steps=10)["optimizer"]
    decay, no_decay, loss = optimizer.param_groups
    assert {id(p) for p in loss["params"]} == {
        id(model.loss.logit_scale),
        id(model.loss.logit_bias),
    }
    assert (loss["initial_lr"], loss["weight_decay"]) == (5e-2, 0.0)
    assert (decay["initial_lr"], decay["weight_decay"]) == (1e-3, 0.1)
    assert (no_decay["initial_lr"], no_decay["weight_decay"]) == (1e-3, 0.0)
    grouped = [id(p) for g in optimizer.param_groups for p in g["params"]]
    assert sorted(grouped) == sorted(id(p) for p in model.parameters() if p.requires_grad)
    assert optimizer.defaults["fused"]  # no fp16 grad scaler in fp32 / bf16: the fused kernel
    assert all(p.ndim >= 2 for p in decay["params"]) and any(
        p.ndim == 1 for p in no_decay["params"]
    )


def test_schedule_warms_up_linearly_then_decays_to_the_floor(ipa_tokenizer) -> None:
    model = _model(ipa_tokenizer, lr=1e-3)
    model.cfg.optim.warmup_steps, model.cfg.optim.min_lr_ratio = 10, 0.05
    schedule = _configure_optimizers(model, max_steps=110)
    optimizer, scheduler = schedule["optimizer"], schedule["lr_scheduler"]["scheduler"]
    lrs = []
    for _ in range(111):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert lrs[5] == pytest.approx(0.5e-3) and lrs[10] == pytest.approx(1e-3)
    assert lrs[60] == pytest.approx(1e-3 * (0.05 + 0.95 * 0.5))  # half-way down the cosine
    assert lrs[110] == pytest.approx(0.05e-3) and min(lrs[10:]) == pytest.approx(0.05e-3)


def test_a_few_steps_overfit_a_fixed_batch(ipa_tokenizer) -> None:
    """The loss falls below what any collapsed solution reaches, so the towers tell the pairs apart.

    If every clip embeds alike and every IPA string alike, all logits share one value x and the loss
    is softplus(-x) + (B - 1) · softplus(x) >= log B + (B - 1) · log(B / (B - 1)), whatever the
    scale and bias. Scale and bias stay fixed (loss_lr = 0) so the towers alone do the work.
    """
    model = _model(ipa_tokenizer, lr=1e-3, loss_lr=0.0).train()
    # a long schedule: the LR stays near its peak for these 30 steps
    schedule = _configure_optimizers(model, max_steps=1000)
    optimizer, scheduler = schedule["optimizer"], schedule["lr_scheduler"]["scheduler"]
    batch = _batch(ipa_tokenizer, 4)
    losses = []
    for _ in range(30):
        loss = model.training_step(batch, 0)
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)  # as base.yaml's gradient_clip_val
        optimizer.step()
        scheduler.step()
        losses.append(loss.item())
    b = len(batch["ipa"])
    collapsed = math.log(b) + (b - 1) * math.log(b / (b - 1))
    assert losses[-1] < collapsed - 0.3 and losses[-1] < 0.5 * losses[0], losses
    trained = model.phone_encoder.trained_tokens
    assert set(trained.nonzero().flatten().tolist()) == set(batch["phone_ids"].unique().tolist()) - {0}


def test_text_units_model_builds_and_trains() -> None:
    tokenizer = CharTokenizer()
    model = _model(tokenizer, rate=0.5, units="text")
    assert model.minimal_pairs is None  # minimal pairs are IPA edits; text units train without them
    batch = _batch(tokenizer, 4, units="text")
    assert batch["phone_ids"][0, :4].tolist() == tokenizer.encode("gato")
    loss = model.training_step(batch, 0)
    loss.backward()
    assert torch.isfinite(loss)
    assert model.phone_encoder.bert.embeddings.word_embeddings.weight.grad.abs().sum() > 0
    embedding = model.embed_phones(["gato"])
    assert embedding.shape == (1, 32)
    torch.testing.assert_close(embedding.norm(dim=-1), torch.ones(1))
    assert (embedding - model.embed_phones(["gata"])).abs().max() > 1e-3


def test_hard_negatives_repeat_per_rank_and_differ_across_ranks(ipa_tokenizer) -> None:
    model = _model(ipa_tokenizer, rate=1.0)
    ipa = _batch(ipa_tokenizer, 6)["ipa"]
    assert model.hard_negatives(ipa, rank=0) == model.hard_negatives(ipa, rank=0)
    assert model.hard_negatives(ipa, rank=0) != model.hard_negatives(ipa, rank=1)


def test_hop_length_halves_the_frames_the_speech_encoder_reads(ipa_tokenizer) -> None:
    torch.manual_seed(0)
    model = ClapIpa({**_config(), "hop_length": 320}, ipa_tokenizer, seed=0)
    lens = torch.tensor([16_000, 8_000])
    assert model.logmel.frame_lengths(lens).tolist() == [50, 25]
    assert model.embed_speech([_clip(0.5, seed=1)]).shape == (1, 32)


def test_pretrained_speech_encoder_refuses_a_non_whisper_hop(ipa_tokenizer, tmp_path) -> None:
    cfg = _config()
    cfg["speech"] = {"pretrained": str(write_tiny_whisper(tmp_path / "whisper", encoder_layers=1))}
    with pytest.raises(ValueError, match="hop_length=320, but the pretrained encoder .* reads 160-sample"):
        ClapIpa({**cfg, "hop_length": 320}, ipa_tokenizer, seed=0)


def test_siglip_init_comes_from_the_config(ipa_tokenizer) -> None:
    model = ClapIpa({**_config(), "siglip_init_temperature": 20.0, "siglip_init_bias": -5.0}, ipa_tokenizer, seed=0)
    assert model.loss.logit_scale.exp().item() == pytest.approx(20.0)
    assert model.loss.logit_bias.item() == -5.0

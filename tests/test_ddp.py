"""Two DDP ranks on CPU train CLAP-IPA exactly like one process on their concatenated batch.

SigLipLoss all-gathers the phone side (and the hard negatives) across ranks, and DDP averages
gradients; together they must reproduce the single-process loss and gradients. The reference is
computed in the pytest process, which never joins the process group (inside it the loss would see
world > 1 and issue collectives).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

from data_modules.collate import collate
from data_modules.schema import Sample
from phonclip.ipa import IpaTokenizer
from phonclip.models.clap_ipa import ClapIpa

WORLD = 2
HARD_NEGATIVE_RATE = {"plain": 0.0, "hard_negatives": 0.5}
IPAS = ["ˈɡato", "pero", "kasa", "ˈmundo", "tjempo", "ˈnoʃe", "lus", "ˈaɡwa"]


def _config(case: str) -> dict:
    """A small CLAP-IPA with every source of randomness in a training step switched off."""
    return {
        "embed_dim": 32,
        "speech": {"size": "cpu", "exit_layer": 1, "dropout": 0.0},
        "phone": {
            "hidden_size": 32, "num_layers": 1, "num_heads": 2, "intermediate_size": 64,
            "dropout": 0.0, "token_dropout": 0.0,
        },
        "hard_negatives": {"rate": HARD_NEGATIVE_RATE[case]},
        "augment": {
            "noise_prob": 0.0,
            "speed_prob": 0.0,
            "gain_db": [0.0, 0.0],
            "specaugment": {"freq_masks": 0, "time_masks": 0},
        },
    }  # fmt: skip


def _model(case: str) -> ClapIpa:
    torch.manual_seed(0)
    return ClapIpa(_config(case), IpaTokenizer(), seed=0).train()


def _samples() -> list[Sample]:
    """The global batch: noise clips of different lengths, so each rank pads differently."""
    rng = np.random.default_rng(0)
    return [
        Sample(
            key=f"clip{i}",
            audio=(0.1 * rng.standard_normal(int(16_000 * (0.25 + 0.05 * i)))).astype(np.float32),
            ipa=ipa,
            lang="es",
        )
        for i, ipa in enumerate(IPAS)
    ]


def _batch(model: ClapIpa, samples: list[Sample]) -> dict:
    return collate(samples, model.tokenizer, "ipa", {})


class _TrainingStep(nn.Module):
    """The model's training step as a forward, so DDP can wrap it and reduce the gradients."""

    def __init__(self, model: ClapIpa) -> None:
        super().__init__()
        self.model = model

    def forward(self, batch: dict) -> Tensor:
        return self.model.training_step(batch, 0)


def _grads(model: nn.Module) -> dict[str, Tensor]:
    return {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}


def _rank(rank: int, init_file: str, out_dir: str) -> None:
    """One DDP rank: load the shared weights, train one step on rows ``rank::WORLD``, save loss and grads."""
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD)
    try:
        for case in HARD_NEGATIVE_RATE:
            model = _model(case)
            model.load_state_dict(torch.load(Path(out_dir) / f"{case}-init.pt"))
            ddp = DistributedDataParallel(_TrainingStep(model))
            loss = ddp(_batch(model, _samples()[rank::WORLD]))
            loss.backward()
            torch.save(
                {"loss": loss.item(), "grads": _grads(model)}, Path(out_dir) / f"{case}-{rank}.pt"
            )
    finally:
        dist.destroy_process_group()


def _reference(model: ClapIpa) -> Tensor:
    """The single-process loss on the whole batch, with the hard negatives each rank draws from its rows.

    A rank samples round(rate × its batch) minimal pairs of its own rows with its own RNG, and the loss gathers them
    from every rank; one process does the same with the concatenation of those negatives.
    """
    samples = _samples()
    batch = _batch(model, samples)
    speech = model.speech_embedding(batch["audio"], batch["audio_lens"])
    phones, _ = model._phone_batch(batch)
    if model.minimal_pairs is None:
        return model.loss(speech, phones)
    hard = model.phone_embedding(*model.tokenize(
        [ipa for r in range(WORLD) for ipa in model.hard_negatives([s.ipa for s in samples[r::WORLD]], rank=r)]
    ))
    return model.loss(speech, phones, extra_negatives_b=hard)


@pytest.fixture(scope="module")
def ddp_results(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("ddp")
    for case in HARD_NEGATIVE_RATE:
        torch.save(_model(case).state_dict(), out / f"{case}-init.pt")
    mp.spawn(_rank, args=(str(out / "pg-init"), str(out)), nprocs=WORLD, join=True)
    return out


@pytest.mark.parametrize("case", list(HARD_NEGATIVE_RATE))
def test_two_ranks_match_one_process(ddp_results: Path, case: str) -> None:
    assert not dist.is_initialized()
    model = _model(case)
    model.load_state_dict(torch.load(ddp_results / f"{case}-init.pt"))
    loss = _reference(model)
    loss.backward()
    expected = _grads(model)
    ranks = [torch.load(ddp_results / f"{case}-{r}.pt") for r in range(WORLD)]

    assert np.mean([r["loss"] for r in ranks]) == pytest.approx(loss.item(), abs=1e-5)
    # the ranks saw different rows, and every part of the model got a gradient
    assert ranks[0]["loss"] != pytest.approx(ranks[1]["loss"], abs=1e-3)
    assert {"loss.logit_bias", "phone_proj.weight", "speech_proj.weight"} <= set(expected)
    for r in ranks:
        assert r["grads"].keys() == expected.keys()
        for name, grad in expected.items():
            torch.testing.assert_close(r["grads"][name], grad, rtol=1e-4, atol=1e-5, msg=name)

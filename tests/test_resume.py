"""A run killed mid-epoch and resumed from its checkpoint ends exactly where an uninterrupted run ends."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections import Counter
from itertools import islice
from pathlib import Path

import pytest
import torch
from lightning.pytorch.callbacks import Callback
from omegaconf import OmegaConf
from shards import good_samples, tone, write_shards
from torch import nn
from torch.nn import functional as F

from data_modules.bucketing import DurationBucketer
from data_modules.ipapack import Batches, BatchLoader, IpapackDataModule, SampleFilter, ShardDataset
from data_modules.schema import Sample
from phonclip.config import ExperimentConfig
from phonclip.ipa import IpaTokenizer
from phonclip.models.base import PhonclipModel
from phonclip.trainer import DropTotals, build_trainer, latest_checkpoint

TOTAL_STEPS = 12
REPO = Path(__file__).resolve().parent.parent


def corpus() -> list[Sample]:
    """16 clips, 2 of them too short: resuming must also keep the drop counts exact."""
    samples = good_samples(16)
    samples[4] = Sample("short0004", tone(0.05), "pa", lang="xx")
    samples[11] = Sample("short0011", tone(0.05), "ta", lang="xx")
    return samples


def write_corpus(directory: Path) -> Path:
    """The corpus as 4 shards of 4 clips (so 2 workers get 2 shards each)."""
    write_shards(directory, corpus(), 4)
    return directory


def loader(shards: Path, num_workers: int, epoch_batches: int | None = None) -> BatchLoader:
    """A shuffling loader of 3-clip batches, 5 a pass, built as the DataModule builds one."""
    samples = ShardDataset(
        sorted(str(p) for p in shards.glob("*.tar")),
        SampleFilter(min_duration=0.1),
        shuffle=True,
        shuffle_buffer=4,
        seed=3,
        rank=0,
        world_size=1,
    )
    bucketer = DurationBucketer(batch_size=3, num_buckets=1, buffer_size=1)  # no read-ahead
    batches = Batches(samples, bucketer, IpaTokenizer(), "ipa")
    return BatchLoader(batches, num_workers=num_workers, epoch_batches=epoch_batches)


def summary(batches) -> list[tuple[list[str], dict[str, int]]]:
    """(keys, dropped) of each batch: what must continue unchanged across a resume."""
    return [(list(b["key"]), dict(b["dropped"])) for b in batches]


@pytest.mark.parametrize(
    ("num_workers", "epoch_batches", "taken"),
    [(0, None, 2), (2, None, 3), (0, 7, 6), (0, 7, 0), (2, 7, 5)],  # 5 a pass: 7 takes 2 passes
)
def test_loader_state_resumes_at_the_next_batch(tmp_path, num_workers, epoch_batches, taken):
    shards = write_corpus(tmp_path)
    reference = loader(shards, num_workers, epoch_batches)
    epochs = [summary(reference) for _ in range(3)]
    assert epochs[0] != epochs[1]  # a new shuffle per epoch, so the epoch must be restored too
    if epoch_batches:  # and per cycle within an epoch
        assert [keys for keys, _ in epochs[0][5:]] != [keys for keys, _ in epochs[0][:2]]

    interrupted = loader(shards, num_workers, epoch_batches)
    assert summary(interrupted) == epochs[0]
    assert summary(islice(iter(interrupted), taken)) == epochs[1][:taken]
    state = interrupted.state_dict()
    assert state["epoch"] == 1 and state["batches"] == taken

    resumed = loader(shards, num_workers, epoch_batches)
    resumed.load_state_dict(state)
    assert summary(resumed) == epochs[1][taken:]
    assert summary(resumed) == epochs[2]
    delivered = epochs[1][taken:] + epochs[2]  # drops of the skipped batches were reported before
    assert resumed.drop_totals == sum((Counter(dropped) for _, dropped in delivered), Counter())


class TinyModel(PhonclipModel):
    """A linear probe on mean audio magnitudes, with dropout and noise, predicting the phone count."""

    def __init__(self, seed: int = 0, sleep: float = 0.0, report: bool = False) -> None:
        super().__init__(seed)
        self.net = nn.Sequential(nn.Linear(16, 8), nn.Tanh(), nn.Dropout(0.5), nn.Linear(8, 1))
        self.sleep, self.report = sleep, report
        self.keys: list[list[str]] = []

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        self.keys.append(list(batch["key"]))
        chunks = batch["audio"].tensor_split(16, dim=-1)
        x = torch.stack([c.abs().mean(-1) for c in chunks], dim=-1)
        x = x + 0.01 * torch.randn_like(x)  # augmentation, replayed through the base-class reseed
        loss = F.mse_loss(self.net(x).squeeze(-1), batch["phone_lens"].float())
        time.sleep(self.sleep)
        return loss

    def on_train_batch_end(self, outputs, batch, batch_idx) -> None:
        if self.report:  # checkpoint callbacks ran first: this step's last.ckpt is on disk
            print(f"step {self.global_step}", flush=True)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=1e-2)


def fit_tiny(
    run_dir: Path,
    shards: Path,
    steps: int,
    num_workers: int = 0,
    epoch_batches: int | None = None,
    resume: bool = False,
    sleep: float = 0.0,
    report: bool = False,
    every_n: int = 1,
    ema_decay: float = 0.0,
) -> tuple[TinyModel, DropTotals]:
    """``TinyModel`` trained by the shared Trainer, checkpointing every ``every_n`` steps (resuming if asked)."""
    cfg = OmegaConf.merge(
        OmegaConf.structured(ExperimentConfig),
        {
            "trainer": {
                "accelerator": "cpu",
                "devices": 1,
                "max_steps": steps,
                "log_every_n_steps": 1,
                "enable_progress_bar": False,
                "deterministic": True,
            },
            "checkpoint": {"every_n_train_steps": every_n},
            "averaging": {"ema_decay": ema_decay},
        },
    )
    data = {
        "train": [str(shards)],
        "batch_size": 3,
        "num_buckets": 1,
        "shuffle_buffer": 4,
        "min_duration": 0.1,
        "num_workers": num_workers,
        "epoch_batches": epoch_batches,
        "seed": 3,
    }
    datamodule = IpapackDataModule(data, IpaTokenizer())
    torch.manual_seed(0)
    model = TinyModel(sleep=sleep, report=report)
    drops = DropTotals()
    trainer = build_trainer(cfg, run_dir, drops)
    ckpt = latest_checkpoint(run_dir) if resume else None
    assert ckpt is not None or not resume, f"no checkpoint to resume from in {run_dir}"
    trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt)
    assert trainer.global_step == steps
    return model, drops


def assert_same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    """Bitwise equality of two state dicts, naming the first tensor that differs."""
    assert a.keys() == b.keys()
    for name, tensor in a.items():
        assert torch.equal(tensor, b[name]), name


@pytest.mark.parametrize(
    ("num_workers", "epoch_batches", "split", "position"),
    # 5 batches a pass; an epoch of 7 cycles into a 2nd pass; also resume right at an epoch's end
    [(0, None, 7, (1, 2)), (2, 7, 6, (0, 6)), (0, None, 5, (1, 0)), (2, 7, 7, (1, 0))],
)
def test_resumed_fit_matches_an_uninterrupted_one(
    tmp_path, num_workers, epoch_batches, split, position
):
    shards = write_corpus(tmp_path / "shards")
    whole, whole_drops = fit_tiny(
        tmp_path / "whole", shards, TOTAL_STEPS, num_workers, epoch_batches
    )
    first, _ = fit_tiny(tmp_path / "split", shards, split, num_workers, epoch_batches)
    ckpt = torch.load(tmp_path / "split" / "checkpoints" / "last.ckpt", weights_only=False)
    (state,) = ckpt["loops"]["fit_loop"]["state_dict"]["combined_loader"]
    assert (state["epoch"], state["batches"]) == position
    second, second_drops = fit_tiny(
        tmp_path / "split", shards, TOTAL_STEPS, num_workers, epoch_batches, resume=True
    )
    assert first.keys + second.keys == whole.keys and len(whole.keys) == TOTAL_STEPS
    assert second_drops.totals == whole_drops.totals and whole_drops.totals
    assert_same_weights(second.state_dict(), whole.state_dict())
    assert not torch.equal(whole.net[0].weight, first.net[0].weight)


def test_last_checkpoint_holds_the_final_weights_between_intervals(tmp_path):
    shards = write_corpus(tmp_path / "shards")
    model, _ = fit_tiny(tmp_path / "run", shards, 5, every_n=3)
    ckpt = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=False)
    assert ckpt["global_step"] == 5
    assert_same_weights(ckpt["state_dict"], model.state_dict())
    longer, _ = fit_tiny(tmp_path / "run", shards, TOTAL_STEPS, resume=True, every_n=3)
    whole, _ = fit_tiny(tmp_path / "whole", shards, TOTAL_STEPS, every_n=3)
    assert model.keys + longer.keys == whole.keys  # the data position in it resumes exactly
    assert_same_weights(longer.state_dict(), whole.state_dict())


SCRIPT = """
import sys
from pathlib import Path

import torch
from test_resume import fit_tiny

run_dir, shards, out = (Path(a) for a in sys.argv[1:4])
resume = sys.argv[4] == "resume"
model, _ = fit_tiny(run_dir, shards, {steps}, resume=resume, sleep={sleep}, report=True)
torch.save(model.state_dict(), out)
"""


def train_in_subprocess(
    script: Path, run_dir: Path, shards: Path, out: Path, mode: str
) -> subprocess.Popen:
    """``script`` training into ``run_dir`` in its own process, printing each finished step."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO / "tests"), str(REPO)]),
        "TMPDIR": str(run_dir.parent),  # where Lightning stages checkpoints before moving them
    }
    log = (run_dir.parent / f"{run_dir.name}-{mode}.log").open("w")
    return subprocess.Popen(
        [sys.executable, str(script), str(run_dir), str(shards), str(out), mode],
        stdout=subprocess.PIPE,
        stderr=log,
        text=True,
        env=env,
    )


def log_of(run_dir: Path, mode: str) -> str:
    return (run_dir.parent / f"{run_dir.name}-{mode}.log").read_text()[-3000:]


@pytest.mark.slow
def test_kill_9_then_resume_matches_an_uninterrupted_run(tmp_path):
    shards = write_corpus(tmp_path / "shards")
    script = tmp_path / "train.py"
    script.write_text(textwrap.dedent(SCRIPT.format(steps=TOTAL_STEPS, sleep=0.2)))
    whole = train_in_subprocess(script, tmp_path / "whole", shards, tmp_path / "whole.pt", "fresh")
    killed = train_in_subprocess(script, tmp_path / "run", shards, tmp_path / "run.pt", "fresh")
    for line in killed.stdout:
        if line.strip() == "step 7":  # mid-epoch: 5 batches an epoch
            os.kill(killed.pid, signal.SIGKILL)
            break
    assert killed.wait(timeout=120) == -signal.SIGKILL, log_of(tmp_path / "run", "fresh")
    assert not (tmp_path / "run.pt").exists()
    assert (tmp_path / "run" / "checkpoints" / "last.ckpt").exists()
    resumed = train_in_subprocess(script, tmp_path / "run", shards, tmp_path / "run.pt", "resume")
    steps = [line.strip() for line in resumed.stdout]
    assert resumed.wait(timeout=120) == 0, log_of(tmp_path / "run", "resume")
    assert whole.wait(timeout=120) == 0, log_of(tmp_path / "whole", "fresh")
    assert steps[0] in ("step 8", "step 9") and steps[-1] == f"step {TOTAL_STEPS}"
    assert_same_weights(torch.load(tmp_path / "run.pt"), torch.load(tmp_path / "whole.pt"))


def test_latest_checkpoint_passes_over_a_truncated_last_ckpt(tmp_path):
    checkpoints = tmp_path / "checkpoints"
    checkpoints.mkdir()
    assert latest_checkpoint(tmp_path) is None
    for step in (3, 5):
        torch.save({"global_step": step}, checkpoints / f"step={step}.ckpt")
    torch.save({"global_step": 6}, checkpoints / "last.ckpt")
    assert latest_checkpoint(tmp_path) == checkpoints / "last.ckpt"
    whole = (checkpoints / "last.ckpt").read_bytes()
    (checkpoints / "last.ckpt").write_bytes(whole[: len(whole) // 2])  # killed mid-copy
    assert latest_checkpoint(tmp_path) == checkpoints / "step=5.ckpt"
    (checkpoints / "step=5.ckpt").write_bytes(b"")
    assert latest_checkpoint(tmp_path) == checkpoints / "step=3.ckpt"


class WeightLog(Callback):
    """The weights after every optimizer step, as training (not the average) left them."""

    def __init__(self) -> None:
        self.steps: list[dict[str, torch.Tensor]] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.steps.append({k: v.detach().clone() for k, v in pl_module.state_dict().items()})


def test_ema_is_what_training_ends_with_and_checkpoints_hold(tmp_path, monkeypatch):
    shards = write_corpus(tmp_path / "shards")
    log = WeightLog()
    original = build_trainer

    def with_log(cfg, run_dir, drops):
        trainer = original(cfg, run_dir, drops)
        trainer.callbacks.insert(0, log)
        return trainer

    monkeypatch.setattr(sys.modules[__name__], "build_trainer", with_log)
    raw, _ = fit_tiny(tmp_path / "raw", shards, 7)
    monkeypatch.setattr(sys.modules[__name__], "build_trainer", original)
    decay = 0.6
    expected = log.steps[0]
    for weights in log.steps[1:]:
        expected = {k: decay * expected[k] + (1 - decay) * w for k, w in weights.items()}
    averaged, _ = fit_tiny(tmp_path / "ema", shards, 7, ema_decay=decay, every_n=3)
    for name, tensor in expected.items():
        torch.testing.assert_close(averaged.state_dict()[name], tensor, rtol=1e-6, atol=1e-7)
        assert not torch.allclose(raw.state_dict()[name], tensor)  # averaging changed the result
    ckpt = torch.load(tmp_path / "ema" / "checkpoints" / "last.ckpt", weights_only=False)
    assert_same_weights(ckpt["state_dict"], averaged.state_dict())
    assert_same_weights(ckpt["current_model_state"], raw.state_dict())  # training itself is unchanged


def test_ema_survives_a_resume_and_a_rerun_of_a_finished_fit(tmp_path):
    shards = write_corpus(tmp_path / "shards")
    whole, _ = fit_tiny(tmp_path / "whole", shards, TOTAL_STEPS, ema_decay=0.6, every_n=4)
    fit_tiny(tmp_path / "split", shards, 5, ema_decay=0.6, every_n=4)
    resumed, _ = fit_tiny(tmp_path / "split", shards, TOTAL_STEPS, ema_decay=0.6, every_n=4, resume=True)
    assert_same_weights(resumed.state_dict(), whole.state_dict())
    rerun, _ = fit_tiny(tmp_path / "whole", shards, TOTAL_STEPS, ema_decay=0.6, every_n=4, resume=True)
    assert_same_weights(rerun.state_dict(), whole.state_dict())

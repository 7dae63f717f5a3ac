"""The one shared Trainer: every experiment trains through ``build_trainer`` with machine-dependent ``auto`` values."""

from __future__ import annotations

import pickle
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import (
    Callback,
    EMAWeightAveraging,
    LearningRateMonitor,
    ModelCheckpoint,
)
from lightning.pytorch.loggers import TensorBoardLogger
from omegaconf import DictConfig, OmegaConf


class DropTotals(Callback):
    """Sums the per-batch ``dropped`` counts so bad samples appear in the run's results."""

    def __init__(self) -> None:
        self.totals: dict[str, int] = {}

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        for kind, n in (batch.get("dropped") or {}).items():
            self.totals[kind] = self.totals.get(kind, 0) + int(n)

    def state_dict(self) -> dict:
        return {"totals": dict(self.totals)}

    def load_state_dict(self, state_dict: dict) -> None:
        self.totals = dict(state_dict.get("totals", {}))


class FinalCheckpoint(Callback):
    """Writes ``last.ckpt`` after the ``max_steps``-th step when that falls between checkpoint
    intervals, so evaluation, ``load`` and a rerun see the weights training finished with. Saved
    at batch end, as the interval checkpoints are, so the data position in it resumes exactly."""

    def __init__(self, checkpoint: ModelCheckpoint, every_n_train_steps: int) -> None:
        self.checkpoint = checkpoint
        self.every_n_train_steps = every_n_train_steps

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        step = trainer.global_step
        on_interval = bool(self.every_n_train_steps) and step % self.every_n_train_steps == 0
        if step == trainer.max_steps and not on_interval:
            last = Path(self.checkpoint.dirpath) / f"{ModelCheckpoint.CHECKPOINT_NAME_LAST}.ckpt"
            trainer.save_checkpoint(last)


class AveragedWeights(EMAWeightAveraging):
    """Lightning's EMA, also in the weights a fit resumed after its last step ends with: Lightning swaps
    the average in at ``on_train_end``, which such a fit never reaches, so the raw weights would be
    evaluated."""

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._average_model is not None:
            self._copy_average_to_current(pl_module)


def resolve_precision(precision: str) -> str:
    """``auto`` → bf16 mixed precision on CUDA (when supported), full fp32 on CPU."""
    if precision != "auto":
        return precision
    if torch.cuda.is_available() and torch.cuda.is_bf16_supported():
        return "bf16-mixed"
    return "16-mixed" if torch.cuda.is_available() else "32-true"


def resolve_strategy(strategy: str, devices: object, num_nodes: int) -> str:
    """``auto`` → DDP when training spans more than one device or node."""
    if strategy != "auto":
        return strategy
    n_devices = torch.cuda.device_count() if devices in ("auto", -1, "-1") else _count(devices)
    return "ddp" if n_devices > 1 or num_nodes > 1 else "auto"


def _count(devices: object) -> int:
    if isinstance(devices, int):
        return devices
    if isinstance(devices, str) and devices.isdigit():
        return int(devices)
    return len(devices) if isinstance(devices, (list, tuple)) else 1


def build_trainer(cfg: DictConfig, run_dir: Path, drop_totals: DropTotals) -> L.Trainer:
    """A Lightning Trainer for ``cfg`` writing checkpoints and TensorBoard events under ``run_dir``."""
    t = OmegaConf.to_container(cfg.trainer, resolve=True)
    t["precision"] = resolve_precision(t["precision"])
    t["strategy"] = resolve_strategy(t["strategy"], t["devices"], t["num_nodes"])
    checkpoint = ModelCheckpoint(
        dirpath=run_dir / "checkpoints",
        save_last=True,
        save_top_k=cfg.checkpoint.save_top_k,
        every_n_train_steps=cfg.checkpoint.every_n_train_steps,
    )
    logger = TensorBoardLogger(save_dir=str(run_dir), name="tensorboard", version="")
    decay = cfg.averaging.ema_decay
    averaging = [AveragedWeights(decay=decay)] if decay else []
    return L.Trainer(
        **t,
        default_root_dir=str(run_dir),
        logger=logger,
        callbacks=[
            *averaging,  # before FinalCheckpoint, so the last step's average is in last.ckpt
            checkpoint,
            FinalCheckpoint(checkpoint, cfg.checkpoint.every_n_train_steps),
            LearningRateMonitor(logging_interval="step"),
            drop_totals,
        ],
    )


def latest_checkpoint(run_dir: Path) -> Path | None:
    """The checkpoint under ``run_dir/checkpoints`` furthest into training that still loads.

    Lightning writes a checkpoint to the system temp dir and moves it into place: an atomic rename
    only when both are on one filesystem. Across filesystems (a local /tmp, runs on a network disk)
    the move is a copy, and a kill during it leaves a truncated ``last.ckpt``. Such files fail to
    load and are passed over here, so a killed run resumes from the newest intact checkpoint.
    """
    found = []
    for path in Path(run_dir, "checkpoints").glob("*.ckpt"):
        try:  # mmap: tensors stay on disk, only the archive index and metadata are read
            ckpt = torch.load(path, map_location="cpu", mmap=True, weights_only=False)
        except (RuntimeError, OSError, EOFError, ValueError, pickle.UnpicklingError):
            continue
        step = int(ckpt.get("global_step", -1))
        found.append((step, path.stat().st_mtime, path.name == "last.ckpt", path))
    return max(found)[3] if found else None

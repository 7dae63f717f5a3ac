"""What every phonclip LightningModule offers the runner: a config schema, self-evaluation, and resume-exact randomness."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
import torch


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

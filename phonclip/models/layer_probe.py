"""Layer-wise cross-lingual probe (Shim et al. 2025, "Languages in Whisper-style speech encoders align both
phonetically and semantically"): does spoken translation retrieval between languages survive when the
pronunciation overlap of translations is controlled, layer by layer?

Nothing is trained: the probe reads a frozen encoder (a phonclip run, or a Whisper checkpoint by name or
path), mean-pools every layer's states per utterance of the parallel set, and scores retrieval per
language pair (``phonclip.eval.layer_probe``). Read top to bottom: config → encoder → embedding → evaluation.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from data_modules.synthetic import UNSEEN_LANGUAGES
from phonclip.encoders.frozen import SourceSpeechConfig
from phonclip.eval.layer_probe import (
    ControlConfig,
    distance_histogram,
    layer_curves,
    pair_tasks,
    probe,
)
from phonclip.eval.plots import save_figure
from phonclip.models.base import FrozenEncoderProbe, pad_waveforms


@dataclass
class LayerProbeConfig:
    name: str = "layer_probe"
    units: str = "ipa"  # unused: nothing is tokenised
    speech: SourceSpeechConfig = field(default_factory=SourceSpeechConfig)
    control: ControlConfig = field(default_factory=ControlConfig)
    # Languages the encoder never trained on, averaged separately (the ``*_unseen`` rows): the corpus's.
    unseen_languages: list[str] = field(default_factory=lambda: list(UNSEEN_LANGUAGES))
    batch_seconds: float = 60.0  # audio per encoder batch


def length_batches(lengths: list[int], budget: int) -> list[list[int]]:
    """Indices grouped by similar length, each group at most ``budget`` padded samples (at least one clip)."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    batches: list[list[int]] = [[]]
    for i in order:
        if batches[-1] and (len(batches[-1]) + 1) * lengths[i] > budget:
            batches.append([])
        batches[-1].append(i)
    return [b for b in batches if b]


class LayerProbe(FrozenEncoderProbe):
    """A frozen encoder whose every layer is scored by cross-lingual spoken translation retrieval."""

    Config = LayerProbeConfig

    @torch.no_grad()
    def pooled_layers(self, audio: list[np.ndarray]) -> Tensor:
        """Mean-pooled states of every layer for each waveform (16 kHz): [layers + 1, N, D] on the CPU."""
        speech = self.speech.to(self.eval_device)
        too_long = [i for i, a in enumerate(audio) if len(a) > speech.max_samples]
        if too_long:
            raise ValueError(f"{len(too_long)} utterances are longer than the encoder's "
                             f"{speech.max_samples / 16_000:.0f} s (first: row {too_long[0]}); split them first")
        out = torch.zeros(speech.num_layers + 1, len(audio), speech.hidden_size)
        for rows in length_batches([len(a) for a in audio], int(self.cfg.batch_seconds * 16_000)):
            out[:, rows] = speech.pooled_layers(*pad_waveforms([audio[i] for i in rows], self.eval_device)).float().cpu()
        return out

    def evaluate(self, datamodule: Any, out_dir: Path) -> dict[str, Any]:
        parallel = datamodule.parallel
        embeddings = self.pooled_layers(parallel.audio)
        tasks = pair_tasks(parallel.items, parallel.langs, parallel.ipa, parallel.durations())
        results = probe(embeddings, tasks, set(self.cfg.unseen_languages), self.cfg.control)
        title = f"{self.cfg.speech.source}: {len(parallel.languages())} languages, {len(set(parallel.items))} items"
        save_figure(layer_curves(results, title), "layer_probe", Path(out_dir), self.logger)
        if tasks and tasks[0].dist is not None:
            save_figure(distance_histogram(tasks, self.cfg.control), "translation_distances", Path(out_dir),
                        self.logger)
        self._log_curves(results)
        return results

    def _log_curves(self, results: dict[str, Any]) -> None:
        """Hit@1 by layer as TensorBoard scalars (step = layer), beside the PNG."""
        writer = getattr(getattr(self, "logger", None), "experiment", None)
        if writer is None or not hasattr(writer, "add_scalar"):
            return
        for row, kinds in results.items():
            if row.startswith("layer_"):
                for kind, metrics in kinds.items():
                    writer.add_scalar(f"probe/{kind}/hit@1", metrics["hit@1"], int(row.split("_")[1]))

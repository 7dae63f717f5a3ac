"""Early exit (Shim et al. 2025): does a downstream task of a language the encoder never saw do better from
the first k layers than from all of them?

The encoder (a phonclip run or a Whisper checkpoint) is cut after ``speech.exit_layer`` layers and frozen;
a small CTC head per unseen language learns phone recognition from a few of that language's words and is
scored by phone error rate on the others, over several seeds (``phonclip.eval.ctc_probe``). One arm per
exit layer makes the curve; ``make report`` names the best layer per language. Read top to bottom:
config → frozen frames → evaluation.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from phonclip.encoders.frozen import SourceSpeechConfig
from phonclip.eval.ctc_probe import CtcProbeConfig, probe_language
from phonclip.ipa import segment
from phonclip.models.base import FrozenEncoderProbe


@dataclass
class EarlyExitConfig:
    name: str = "early_exit"
    units: str = "ipa"
    speech: SourceSpeechConfig = field(default_factory=SourceSpeechConfig)
    probe: CtcProbeConfig = field(default_factory=CtcProbeConfig)
    test_set: str = "test_unseen"  # the data module's test set holding the unseen languages' word clips
    max_clips_per_language: int = 600


class EarlyExit(FrozenEncoderProbe):
    """A frozen, early-exited encoder; ``evaluate`` trains and scores one CTC probe per language and seed."""

    Config = EarlyExitConfig

    @torch.no_grad()
    def clips_by_language(self, loader: Any) -> dict[str, dict[str, list]]:
        """Exit-layer frame states [T, D] (CPU), phone segments and word of every clip, per language."""
        speech = self.speech.to(self.eval_device)
        out: dict[str, dict[str, list]] = {}
        for batch in loader:
            hidden, mask = speech.frames(batch["audio"].to(self.eval_device), batch["audio_lens"].to(self.eval_device))
            for i, lang in enumerate(batch["lang"]):
                clips = out.setdefault(lang, {"feats": [], "phones": [], "words": []})
                if len(clips["feats"]) < self.cfg.max_clips_per_language:
                    clips["feats"].append(hidden[i, : int(mask[i].sum())].float().cpu())
                    clips["phones"].append(segment(batch["ipa"][i]))
                    clips["words"].append(batch["text"][i])
        return out

    def evaluate(self, datamodule: Any, out_dir: Path) -> dict[str, Any]:
        loaders = datamodule.test_sets()
        if self.cfg.test_set not in loaders:
            raise ValueError(f"model.test_set={self.cfg.test_set!r} is not among the data's test sets {sorted(loaders)}")
        per_language = {lang: probe_language(c["feats"], c["phones"], c["words"], self.cfg.probe)
                        for lang, c in sorted(self.clips_by_language(loaders[self.cfg.test_set]).items())}
        seeds = np.array([r["per_seeds"] for r in per_language.values()]).mean(axis=0)  # mean over languages, per seed
        summary = {"exit_layer": self.speech.num_layers, "per": float(seeds.mean()), "per_std": float(seeds.std()),
                   "chance_per": float(np.mean([r["chance_per"] for r in per_language.values()]))}
        self._log_point(Path(out_dir), summary["exit_layer"], per_language)
        return {self.cfg.test_set: summary | {"per_language": per_language}}

    @staticmethod
    def _log_point(out_dir: Path, layer: int, per_language: dict[str, dict]) -> None:
        """Each arm adds its point to one TensorBoard curve beside the arms (step = exit layer)."""
        from torch.utils.tensorboard import SummaryWriter

        with SummaryWriter(out_dir.parent / "exit_curve") as writer:
            for lang, row in per_language.items():
                writer.add_scalar(f"per/{lang}", row["per"], layer)


def exit_layers(per_arm: dict[str, dict]) -> dict[int, dict[str, Any]]:
    """Each arm's test-set metrics keyed by the number of layers it kept."""
    out = {}
    for results in per_arm.values():
        (metrics,) = results["metrics"].values()
        out[int(metrics["exit_layer"])] = metrics
    return dict(sorted(out.items()))


def best_exit_table(per_arm: dict[str, dict]) -> list[str]:
    """Markdown rows: per language, the exit layer with the lowest mean PER, and its gain over the full encoder
    (the arm keeping the most layers), each ± its standard deviation over seeds."""
    by_layer = exit_layers(per_arm)
    full = max(by_layer)
    lines = ["| language | best exit layer | PER there | PER, all layers | gain (PER points) |", "|---|---|---|---|---|"]
    for lang in by_layer[full]["per_language"]:
        rows = {k: m["per_language"][lang] for k, m in by_layer.items()}
        best = min(rows, key=lambda k: rows[k]["per"])
        gain = 100 * (rows[full]["per"] - rows[best]["per"])
        lines.append(f"| {lang} | {best} of {full} | {rows[best]['per']:.3f} ± {rows[best]['per_std']:.3f} | "
                     f"{rows[full]['per']:.3f} ± {rows[full]['per_std']:.3f} | {gain:+.1f} |")
    return lines


def exit_curve(per_arm: dict[str, dict]) -> Any:
    """PER by exit layer per language (mean ± std over seeds), the chance floor dotted."""
    import matplotlib.pyplot as plt

    by_layer = exit_layers(per_arm)
    layers = list(by_layer)
    fig, ax = plt.subplots(figsize=(6, 4))
    for lang in by_layer[layers[-1]]["per_language"]:
        rows = [by_layer[k]["per_language"][lang] for k in layers]
        ax.errorbar(layers, [r["per"] for r in rows], yerr=[r["per_std"] for r in rows], marker="o", capsize=3,
                    label=lang)
    ax.set_xticks(layers)
    ax.set_xlabel("exit layer (layers kept)")
    ax.set_ylabel("phone error rate (CTC probe)")
    ax.legend(fontsize=7, ncol=2)
    return fig

"""Figures people would rather look at than read: a speech×phone similarity matrix, per-language Hit@1."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.figure import Figure


def similarity_matrix(model: Any, s: Any, size: int) -> Figure:
    """Cosine similarity of the first ``size`` distinct clips' speech vs their IPA; a good model is diagonal."""
    seen: dict[str, int] = {}
    for i, ipa in enumerate(s.ipa):
        seen.setdefault(ipa, i)
        if len(seen) == size:
            break
    idx = list(seen.values())
    labels = [s.ipa[i] for i in idx]
    sims = (s.speech[idx] @ model.embed_phones(labels).T).numpy()
    fig, ax = plt.subplots(figsize=(0.35 * len(idx) + 2, 0.35 * len(idx) + 1.5))
    image = ax.imshow(sims, cmap="viridis")
    ax.set_xticks(range(len(idx)), labels, rotation=90, fontsize=7)
    ax.set_yticks(range(len(idx)), labels, fontsize=7)
    ax.set_xlabel("phone encoder (IPA)")
    ax.set_ylabel("speech encoder (clip)")
    fig.colorbar(image, ax=ax, fraction=0.04)
    return fig


def per_language_bars(hits: dict[str, float]) -> Figure:
    """Hit@1 (phone→speech, within-language gallery) per language, sorted."""
    items = sorted(hits.items(), key=lambda kv: kv[1])
    fig, ax = plt.subplots(figsize=(6, 0.25 * len(items) + 1))
    ax.barh([k for k, _ in items], [v for _, v in items], color="tab:blue")
    ax.set_xlim(0, 1)
    ax.set_xlabel("phone→speech Hit@1")
    ax.tick_params(axis="y", labelsize=7)
    return fig


def save_figure(figure: Figure, name: str, out_dir: Path, logger: Any = None) -> None:
    """Write ``plots/<name>.png`` under ``out_dir`` and, with a TensorBoard logger, add it there too."""
    (out_dir / "plots").mkdir(parents=True, exist_ok=True)
    figure.savefig(out_dir / "plots" / f"{name}.png", dpi=120, bbox_inches="tight")
    if logger is not None and hasattr(logger, "experiment") and hasattr(logger.experiment, "add_figure"):
        logger.experiment.add_figure(f"eval/{name}", figure)
    plt.close(figure)

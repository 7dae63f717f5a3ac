"""Boundary metrics of alignments against gold timings, as the segmentation and forced-alignment
literature reports them.

- Label-blind precision / recall / F1 / R-value at a tolerance (Kreuk et al. 2020, the reference's
  ``get_all_stats_boundary_only``): a predicted boundary is a hit when some gold boundary lies within
  the tolerance, and a gold boundary is recalled when some predicted one does; counts pool over clips.
- Label-aware (the reference's ``get_all_stats``): boundaries are phone onsets carrying the phone's
  label; a hit also needs the nearest boundary on the other side to carry the same label.
- Boundary error (how MFA reports): each gold boundary against the predicted boundary of the same
  phone edge; mean absolute error in ms and the share within 10 / 20 / 50 ms.

The boundaries are the transitions inside the sequence: every start and end except the first start
and the last end (the reference's ``[1:-1]``), on both sides, so both always have the same ones and
contiguous intervals share one. Where speech begins and ends (the first start, the last end) is
reported on its own, as ``edge_mae_ms``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

Interval = tuple[str, float, float]


def distinct(times: Sequence[float]) -> np.ndarray:
    """Sorted distinct boundary times (to the microsecond)."""
    return np.unique(np.round(np.asarray(times, dtype=np.float64), 6))


def edges(intervals: Sequence[Interval]) -> list[float]:
    """Every start and end of a list of intervals (contiguous intervals share one boundary)."""
    return [t for _, s, e in intervals for t in (s, e)]


def _hits(a: np.ndarray, b: np.ndarray, tolerance: float) -> int:
    """How many of ``a`` have some element of ``b`` (sorted) within ``tolerance``."""
    if len(a) == 0 or len(b) == 0:
        return 0
    padded = np.concatenate([[-np.inf], b, [np.inf]])
    pos = np.searchsorted(b, a)  # b[pos - 1] < a <= b[pos]: padded[pos] and padded[pos + 1]
    nearest = np.minimum(a - padded[pos], padded[pos + 1] - a)
    return int((nearest <= tolerance + 1e-9).sum())


def _labelled_hits(a: Sequence[tuple[float, str]], b: Sequence[tuple[float, str]], tolerance: float) -> int:
    """How many of ``a`` (time, label) have their nearest ``b`` within ``tolerance`` and with their label."""
    if not a or not b:
        return 0
    times = np.array([t for t, _ in b])
    hits = 0
    for t, label in a:
        nearest = int(np.argmin(np.abs(times - t)))
        hits += int(abs(times[nearest] - t) <= tolerance + 1e-9 and b[nearest][1] == label)
    return hits


@dataclass
class Counts:
    """Pooled boundary counts at one tolerance."""

    precision_hits: int = 0
    recall_hits: int = 0
    predicted: int = 0
    gold: int = 0

    def scores(self) -> dict[str, float]:
        """Precision, recall, F1 and R-value (Räsänen et al. 2009) of the pooled counts."""
        p = self.precision_hits / self.predicted if self.predicted else 0.0
        r = self.recall_hits / self.gold if self.gold else 0.0
        f1 = 2 * p * r / (p + r) if p + r else 0.0
        over = r / p - 1 if p else math.inf
        r1 = math.sqrt((1 - r) ** 2 + over**2)
        r2 = (-over + r - 1) / math.sqrt(2)
        rval = 1 - (abs(r1) + abs(r2)) / 2 if math.isfinite(over) else 0.0
        return {"precision": p, "recall": r, "f1": f1, "rval": rval}


@dataclass
class BoundaryScorer:
    """Accumulates clips, then reports every boundary metric of one tier (phones or words)."""

    tolerances_ms: Sequence[float] = (10.0, 20.0, 50.0)
    headline_ms: float = 20.0
    blind: dict[float, Counts] = field(default_factory=dict)
    labelled: dict[float, Counts] = field(default_factory=dict)
    errors_ms: list[float] = field(default_factory=list)
    edge_errors_ms: list[float] = field(default_factory=list)
    clips: int = 0

    def add(self, predicted: Sequence[Interval], gold: Sequence[Interval]) -> None:
        """One clip's predicted and gold intervals (same units, in order: same count and labels)."""
        if len(predicted) != len(gold):
            raise ValueError(f"{len(predicted)} predicted intervals for {len(gold)} gold ones")
        self.clips += 1
        p, g = distinct(edges(predicted)[1:-1]), distinct(edges(gold)[1:-1])
        p_on = [(s, lab) for lab, s, _ in predicted[1:]]
        g_on = [(s, lab) for lab, s, _ in gold[1:]]
        for ms in {*self.tolerances_ms, self.headline_ms}:
            tol = ms / 1000
            c = self.blind.setdefault(ms, Counts())
            c.precision_hits += _hits(p, g, tol)
            c.recall_hits += _hits(g, p, tol)
            c.predicted, c.gold = c.predicted + len(p), c.gold + len(g)
            lc = self.labelled.setdefault(ms, Counts())
            lc.precision_hits += _labelled_hits(p_on, g_on, tol)
            lc.recall_hits += _labelled_hits(g_on, p_on, tol)
            lc.predicted, lc.gold = lc.predicted + len(p_on), lc.gold + len(g_on)
        errors = [1000 * abs(pt - gt) for pt, gt in zip(edges(predicted), edges(gold))]
        self.errors_ms += errors[1:-1]
        self.edge_errors_ms += [errors[0], errors[-1]]

    def metrics(self) -> dict[str, float]:
        """Headline P/R/F1/R-value (label-blind), F1 at every tolerance, label-aware F1, boundary errors."""
        h = self.headline_ms
        out = {f"{k}@{h:g}": v for k, v in self.blind.get(h, Counts()).scores().items()}
        out |= {f"f1@{ms:g}": self.blind[ms].scores()["f1"] for ms in self.tolerances_ms if ms != h}
        labelled = self.labelled.get(h, Counts()).scores()
        out |= {f"labelled_precision@{h:g}": labelled["precision"], f"labelled_recall@{h:g}": labelled["recall"],
                f"labelled_f1@{h:g}": labelled["f1"]}
        errors = np.asarray(self.errors_ms)
        out["boundaries"] = len(errors)
        out["mae_ms"] = float(errors.mean()) if len(errors) else float("nan")
        out |= {f"within_{ms:g}ms": float((errors <= ms + 1e-6).mean()) if len(errors) else float("nan")
                for ms in self.tolerances_ms}
        out["edge_mae_ms"] = float(np.mean(self.edge_errors_ms)) if self.edge_errors_ms else float("nan")
        return out

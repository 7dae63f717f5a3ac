"""Threshold-free detection scores (ROC AUC, equal error rate) for keyword spotting."""

from __future__ import annotations

import torch
from torch import Tensor


def _roc(scores: Tensor, labels: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """FPR, TPR and threshold at each distinct score, strictest first (+inf: nothing detected)."""
    order = torch.argsort(scores, descending=True, stable=True)
    ranked, hits = scores[order].double(), labels[order].double()
    last_of_tie = torch.cat(
        [
            torch.nonzero(ranked[1:] != ranked[:-1]).squeeze(1),
            ranked.new_tensor([len(ranked) - 1]).long(),
        ]
    )
    true_pos, false_pos = hits.cumsum(0)[last_of_tie], (1 - hits).cumsum(0)[last_of_tie]
    zero, inf = ranked.new_zeros(1), ranked.new_full((1,), float("inf"))
    tpr = torch.cat([zero, true_pos / true_pos[-1]])
    fpr = torch.cat([zero, false_pos / false_pos[-1]])
    return fpr, tpr, torch.cat([inf, ranked[last_of_tie]])


def auc_eer(scores: Tensor, labels: Tensor) -> dict[str, float]:
    """ROC AUC and equal error rate of scoring positives above negatives, the usual KWS summary.

    ``scores`` [N] (higher = more likely positive), bool ``labels`` [N]; a trial is detected
    when its score is ≥ the threshold. AUC is the trapezoidal area under the ROC over all
    distinct thresholds (tied scores count one half, as in torchmetrics ``BinaryAUROC``).
    EER is where the miss rate FNR = 1 − TPR equals the false alarm rate FPR, linearly
    interpolated between the two ROC points that bracket the crossing; ``eer_threshold`` is the
    score threshold of the first ROC point with FNR ≤ FPR (the strictest one with at least as
    many false alarms as misses).
    """
    if scores.ndim != 1 or scores.shape != labels.shape:
        raise ValueError(
            f"scores and labels must be [N] each, got {tuple(scores.shape)}, {tuple(labels.shape)}"
        )
    if labels.dtype != torch.bool:
        raise ValueError(f"labels must be a bool tensor, got {labels.dtype}")
    if not torch.isfinite(scores).all():
        raise ValueError("scores contain NaN or infinite values")
    if labels.all() or not labels.any():
        raise ValueError("labels need both positive and negative trials for AUC and EER")
    fpr, tpr, thresholds = _roc(scores, labels)
    gap = (1 - tpr) - fpr  # falls from 1 (nothing detected) to −1 (everything detected)
    after = int(torch.nonzero(gap <= 0)[0])
    before = after - 1
    weight = gap[before] / (gap[before] - gap[after])
    eer = fpr[before] + weight * (fpr[after] - fpr[before])
    return {
        "auc": float(torch.trapezoid(tpr, fpr)),
        "eer": float(eer),
        "eer_threshold": float(thresholds[after]),
    }

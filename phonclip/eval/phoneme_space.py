"""Is the learned phoneme space phonetically organised? IPA-CLIP (Matsuhira et al. 2023) Table 2 metrics.

Every metric uses cosine geometry of the rows of ``emb`` [N, D]; the caller supplies the labels.

* ``silhouettes`` → (s_Cc, s_Cv). Two clusters, consonants and vowels. With a(i) the mean cosine
  distance from sample i to the other members of its own cluster and b(i) the mean cosine distance
  to the members of the other cluster, s(i) = (b(i) - a(i)) / max(a(i), b(i)) (sklearn
  ``silhouette_samples``, ``metric="cosine"``). s_Cc is the mean of s(i) over consonants, s_Cv
  over vowels; 1 = tight, well-separated classes, 0 = overlapping, negative = closer to the other
  class.
* ``label_map`` → mean average precision. Each item in turn is the query; the other N-1 items are
  ranked by cosine similarity, descending, ties broken by ascending index; an item is relevant when
  its label equals the query's. AP = (1/R) Σ_k P@k · rel(k), R the number of relevant items and
  P@k the fraction of relevant items among the top k. Queries with R = 0 are skipped; the mean is
  over the remaining queries (NaN if none). Used for consonant voicing / place / manner.
* ``rank_correlation`` → Spearman ρ, over all pairs i < j, between the cosine distance
  1 - cos(e_i, e_j) and |v_i - v_j|: positive when items far apart on the attribute are far apart
  in the space. NaN when fewer than 3 items or the values are constant. Used for vowel height /
  backness / roundedness.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Hashable, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from matplotlib.figure import Figure
from scipy.stats import spearmanr
from sklearn.decomposition import PCA
from sklearn.metrics import silhouette_samples
from torch import Tensor

from phonclip.eval.plots import plt  # the Agg backend is chosen there, once, for every figure


def _check_rows(emb: Tensor, n: int, what: str) -> None:
    """Fail early on a shape mismatch, which would otherwise give a silently wrong score."""
    if emb.ndim != 2:
        raise ValueError(f"emb must be [N, D], got {tuple(emb.shape)}")
    if emb.shape[0] != n:
        raise ValueError(f"emb has {emb.shape[0]} rows but {what} has {n} entries")


def _numpy(emb: Tensor) -> np.ndarray:
    """float64 on the CPU so sklearn/scipy see the same numbers whatever the training dtype was."""
    return emb.detach().to("cpu", torch.float64).numpy()


def silhouettes(emb: Tensor, is_vowel: Sequence[bool]) -> tuple[float, float]:
    """(s_Cc, s_Cv): how cleanly the space separates consonants from vowels, per class."""
    vowel = np.asarray([bool(v) for v in is_vowel])
    _check_rows(emb, len(vowel), "is_vowel")
    n_vowels = int(vowel.sum())
    n_consonants = len(vowel) - n_vowels
    if n_consonants < 2 or n_vowels < 2:
        raise ValueError(
            f"each cluster needs at least 2 members, got {n_consonants} consonants, {n_vowels} vowels"
        )
    s = silhouette_samples(_numpy(emb), vowel.astype(int), metric="cosine")
    return float(s[~vowel].mean()), float(s[vowel].mean())


def label_map(emb: Tensor, labels: Sequence[Hashable]) -> float:
    """Mean AP of leave-one-out same-label retrieval: are items sharing a feature value neighbours?"""
    _check_rows(emb, len(labels), "labels")
    n = len(labels)
    ids: dict[Hashable, int] = {}
    lab = torch.tensor([ids.setdefault(x, len(ids)) for x in labels], dtype=torch.long)
    x = F.normalize(emb.detach().to("cpu", torch.float64), dim=-1)
    sims = x @ x.T
    eye = torch.eye(n, dtype=torch.bool)
    sims = sims.masked_fill(eye, -math.inf)  # the query itself ranks last and is never relevant
    relevant = (lab[:, None] == lab[None, :]) & ~eye
    order = torch.sort(sims, dim=1, descending=True, stable=True).indices  # ties: lower index first
    rel = torch.gather(relevant, 1, order).to(torch.float64)
    n_rel = rel.sum(dim=1)
    keep = n_rel > 0
    if not bool(keep.any()):
        return math.nan
    ranks = torch.arange(1, n + 1, dtype=torch.float64)
    precision = rel.cumsum(dim=1) / ranks
    ap = (precision * rel).sum(dim=1)[keep] / n_rel[keep]
    return float(ap.mean())


def rank_correlation(emb: Tensor, values: Sequence[float]) -> float:
    """Spearman ρ of pairwise cosine distance vs attribute difference: is the attribute's order kept?"""
    v = np.asarray(values, dtype=np.float64)
    _check_rows(emb, len(v), "values")
    if len(v) < 3 or np.all(v == v[0]):
        return math.nan
    x = F.normalize(emb.detach().to("cpu", torch.float64), dim=-1)
    dist = (1.0 - x @ x.T).numpy()
    i, j = np.triu_indices(len(v), k=1)
    # constant distances: scipy warns and returns NaN, which we keep
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rho = spearmanr(dist[i, j], np.abs(v[i] - v[j])).statistic
    return float(rho)


def phoneme_space_figure(emb: Tensor, segments: Sequence[str], is_vowel: Sequence[bool], title: str) -> Figure:
    """2-D PCA of the space, consonants vs vowels, labelled: to see the organisation at a glance."""
    _check_rows(emb, len(segments), "segments")
    _check_rows(emb, len(is_vowel), "is_vowel")
    x = _numpy(emb)
    n_comp = min(2, x.shape[0], x.shape[1])
    xy = np.zeros((x.shape[0], 2))
    if n_comp > 0:
        xy[:, :n_comp] = PCA(n_components=n_comp, svd_solver="full").fit_transform(x)
    vowel = np.asarray([bool(v) for v in is_vowel], dtype=bool)
    fig, ax = plt.subplots(figsize=(7, 6))
    for mask, name, colour in ((~vowel, "consonant", "tab:blue"), (vowel, "vowel", "tab:red")):
        if mask.any():
            ax.scatter(xy[mask, 0], xy[mask, 1], c=colour, label=name, s=18)
    for (px, py), seg in zip(xy, segments, strict=True):
        ax.annotate(seg, (px, py), fontsize=8, xytext=(2, 2), textcoords="offset points")
    ax.set_xlabel("PC 1")
    ax.set_ylabel("PC 2")
    ax.set_title(title)
    ax.legend()
    return fig


def shared_attributes_figure(accuracy: Mapping[str, Mapping[int, float]], title: str) -> Figure:
    """Accuracy vs attributes shared with the original consonant, one line per arm, for comparison."""
    for arm, by_shared in accuracy.items():
        bad = {k: a for k, a in by_shared.items() if not (math.isnan(a) or 0.0 <= a <= 1.0)}
        if bad:
            raise ValueError(f"accuracy must lie in [0, 1]; arm {arm!r} has {bad}")
    fig, ax = plt.subplots(figsize=(5, 4))
    shared = sorted({k for by_shared in accuracy.values() for k in by_shared})
    for arm, by_shared in accuracy.items():
        ks = sorted(by_shared)
        ax.plot(ks, [by_shared[k] for k in ks], marker="o", label=arm)
    ax.set_xticks(shared or [0, 1, 2])
    ax.set_xlabel("attributes shared with the original consonant")
    ax.set_ylabel("accuracy")
    ax.set_ylim(0, 1)
    ax.set_title(title)
    if accuracy:
        ax.legend()
    return fig

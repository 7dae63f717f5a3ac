"""Cross-modal retrieval metrics (speech ↔ IPA, word ↔ word), fast enough for full galleries."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

_CHUNK_ELEMENTS = 1 << 22  # query rows per chunk are sized so a chunk holds about this many scores


def cosine_scores(a: Tensor, b: Tensor) -> Tensor:
    """Cosine similarity [Q, G] of rows of ``a`` [Q, D] and ``b`` [G, D]: the ranking score."""
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(
            f"a and b must be [Q, D] and [G, D], got {tuple(a.shape)} and {tuple(b.shape)}"
        )
    return F.normalize(a, dim=-1) @ F.normalize(b, dim=-1).T


def labels_to_relevance(query_labels: Sequence[str], gallery_labels: Sequence[str]) -> Tensor:
    """Bool [Q, G]: a gallery item answers a query when their labels (IPA, word) are equal."""
    ids: dict[str, int] = {}
    q, g = (
        torch.tensor([ids.setdefault(x, len(ids)) for x in labels], dtype=torch.long)
        for labels in (query_labels, gallery_labels)
    )
    return q[:, None] == g[None, :]


def _answerable(relevant: Tensor, ks: Sequence[int]) -> Tensor:
    """Check relevance and ranks; return the mask of queries with a relevant item (those scored)."""
    if relevant.ndim != 2 or relevant.dtype != torch.bool:
        raise ValueError(
            f"relevant must be a bool [Q, G] tensor, got {relevant.dtype} {tuple(relevant.shape)}"
        )
    if any(k < 1 for k in ks):
        raise ValueError(f"ks must be positive ranks, got {list(ks)}")
    answerable = relevant.any(dim=1)
    if not answerable.any():
        raise ValueError("no query has a relevant gallery item: retrieval metrics are undefined")
    return answerable


def _nonrelevant_above(scores: Tensor, relevant: Tensor) -> tuple[Tensor, Tensor]:
    """Per query: relevant count R, and non-relevant items ranked above its m-th lowest relevant.

    A non-relevant item ranks above a relevant one when its score is greater or equal (ties
    count against the query). Rather than sorting the G scores, each one is located among the
    query's R relevant scores with a binary search and counted in a histogram.
    """
    n_relevant = relevant.sum(dim=1)
    ascending = (
        scores.masked_fill(~relevant, float("inf"))
        .topk(int(n_relevant.max()), dim=1, largest=False)
        .values
    )
    position = torch.searchsorted(ascending, scores, right=True)  # relevant scores ≤ each score
    histogram = torch.zeros(
        ascending.shape[0], ascending.shape[1] + 1, dtype=torch.long, device=scores.device
    )
    histogram.scatter_add_(1, position, (~relevant).long())
    above = histogram.flip(1).cumsum(1).flip(1)[:, 1:]  # [q, R_max]: position ≥ m
    return n_relevant, above


def retrieval_metrics(
    scores: Tensor, relevant: Tensor, ks: Sequence[int] = (1, 10)
) -> dict[str, float]:
    """mAP and Hit@k of ranking the gallery by score, the standard cross-modal retrieval report.

    ``scores`` [Q, G] (higher = closer) and bool ``relevant`` [Q, G]. Queries without a relevant
    item are left out of every mean. AP = mean over the query's relevant items of precision at
    their rank; Hit@k = 1 when a relevant item ranks in the top k. Ties are broken against the
    query: a non-relevant item scoring equal to a relevant one ranks above it, so a constant
    scorer never looks good (on tie-free scores this equals torchmetrics ``RetrievalMAP`` and
    ``RetrievalHitRate`` with ``empty_target_action="skip"``). Returns keys ``mAP`` and ``hit@k``.
    """
    answerable = _answerable(relevant, ks)
    if scores.shape != relevant.shape:
        raise ValueError(
            f"scores {tuple(scores.shape)} and relevant {tuple(relevant.shape)} must match in shape"
        )
    low, high = torch.aminmax(scores)  # one pass; a NaN propagates to both
    if not (torch.isfinite(low) and torch.isfinite(high)):
        raise ValueError("scores contain NaN or infinite values")
    ap_sum, hit_sums = 0.0, {k: 0 for k in ks}
    step = max(1, _CHUNK_ELEMENTS // scores.shape[1])
    for start in range(0, len(scores), step):
        rows = slice(start, start + step)
        keep = answerable[rows]
        if not keep.any():
            continue
        chunk_scores, chunk_relevant = scores[rows], relevant[rows]
        if not keep.all():
            chunk_scores, chunk_relevant = chunk_scores[keep], chunk_relevant[keep]
        n_relevant, above = _nonrelevant_above(chunk_scores, chunk_relevant)
        rank_among_relevant = (
            n_relevant[:, None] - torch.arange(above.shape[1], device=above.device)[None, :]
        )
        precision = rank_among_relevant / (rank_among_relevant + above).double()
        ap_sum += float((precision.where(rank_among_relevant > 0, 0.0).sum(1) / n_relevant).sum())
        best_rank = 1 + above.gather(1, (n_relevant - 1)[:, None]).squeeze(1)
        for k in ks:
            hit_sums[k] += int((best_rank <= k).sum())
    n = int(answerable.sum())
    return {"mAP": ap_sum / n, **{f"hit@{k}": hit_sums[k] / n for k in ks}}


def chance_levels(relevant: Tensor, ks: Sequence[int] = (1, 10)) -> dict[str, float]:
    """Expected mAP and Hit@k of a random ranking: the floor a retrieval result is read against.

    Exact, over the queries with a relevant item, with G gallery items and R relevant ones:
    Hit@k = 1 − C(G−R, k) / C(G, k), and E[AP] = H_G / G + (R − 1)(G − H_G) / (G (G − 1))
    (H_G the G-th harmonic number; from E[1/rank] = H_G / G for the item itself and
    E[1{other relevant above} / rank] = (G − H_G) / (G (G − 1)) for each of the R − 1 others).
    """
    g = relevant.shape[1]
    r = relevant[_answerable(relevant, ks)].sum(dim=1).double()
    harmonic = float(torch.reciprocal(torch.arange(1, g + 1, dtype=torch.float64)).sum())
    pair_term = (g - harmonic) / (g * (g - 1)) if g > 1 else 0.0
    levels = {"mAP": float((harmonic / g + (r - 1) * pair_term).mean())}
    log_factorial = torch.lgamma(torch.arange(1, g + 2, dtype=torch.float64))  # [n] = log n!
    misses = (g - r).long()  # non-relevant items: a query is missed when all top k come from them
    for k in ks:
        depth = min(k, g)
        drawable = misses >= depth
        log_miss = (
            log_factorial[misses]
            + log_factorial[g - depth]
            - log_factorial[(misses - depth).clamp(min=0)]
            - log_factorial[g]
        )
        levels[f"hit@{k}"] = float((1 - torch.where(drawable, log_miss.exp(), 0.0)).mean())
    return levels

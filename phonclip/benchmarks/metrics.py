"""Shows our retrieval metrics give torchmetrics' numbers fast enough for every validation."""

from __future__ import annotations

import time

import torch
from torchmetrics.retrieval import RetrievalHitRate, RetrievalMAP

from phonclip.eval.retrieval import retrieval_metrics

QUERIES = GALLERY = 5000
WORDS = 1000  # labels drawn from this many words: about 5 relevant gallery items per query
TORCHMETRICS_BUDGET_S = (
    120.0  # above this (estimated), torchmetrics is timed on a subset and extrapolated
)
PILOT_QUERIES = 250


def _task(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Float32 scores, tie-free by construction and positive (torchmetrics' AP drops scores ≤ 0).

    Each row ranks the gallery by a random permutation (integers 1..G) and lifts relevant items
    by G/2 + 0.5, so they lead on average and no relevant item ever ties a non-relevant one.
    """
    g = torch.Generator().manual_seed(seed)
    query_words = torch.randint(0, WORDS, (QUERIES,), generator=g)
    gallery_words = torch.randint(0, WORDS, (GALLERY,), generator=g)
    relevant = query_words[:, None] == gallery_words[None, :]
    permutation = torch.rand(QUERIES, GALLERY, generator=g).argsort(dim=1).float() + 1
    return permutation + (GALLERY / 2 + 0.5) * relevant, relevant


def _torchmetrics(scores: torch.Tensor, relevant: torch.Tensor) -> tuple[dict[str, float], float]:
    """torchmetrics' mAP, Hit@1, Hit@10 (queries with no relevant item skipped) and seconds."""
    start = time.perf_counter()
    indexes = torch.arange(len(scores)).repeat_interleave(scores.shape[1])
    metrics = {
        "mAP": RetrievalMAP(empty_target_action="skip"),
        "hit@1": RetrievalHitRate(top_k=1, empty_target_action="skip"),
        "hit@10": RetrievalHitRate(top_k=10, empty_target_action="skip"),
    }
    values = {
        name: m(scores.flatten(), relevant.flatten(), indexes=indexes).item()
        for name, m in metrics.items()
    }
    return values, time.perf_counter() - start


def _ours(
    scores: torch.Tensor, relevant: torch.Tensor, repeats: int = 3
) -> tuple[dict[str, float], float]:
    """Our metrics and their best time over a few runs."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        values = retrieval_metrics(scores, relevant, ks=(1, 10))
        best = min(best, time.perf_counter() - start)
    return values, best


def run() -> list[dict]:
    """Speed-up over torchmetrics and largest metric difference, 5000 × 5000 on CPU."""
    scores, relevant = _task()
    ours, ours_s = _ours(scores, relevant)
    _, pilot_s = _torchmetrics(scores[:PILOT_QUERIES], relevant[:PILOT_QUERIES])
    estimate_s = pilot_s * QUERIES / PILOT_QUERIES
    if estimate_s <= TORCHMETRICS_BUDGET_S:
        theirs, theirs_s = _torchmetrics(scores, relevant)
        timed = f"torchmetrics {theirs_s:.2f} s on all {QUERIES} queries"
        compared = ours
    else:
        queries = max(PILOT_QUERIES, int(QUERIES * TORCHMETRICS_BUDGET_S / estimate_s))
        theirs, subset_s = _torchmetrics(scores[:queries], relevant[:queries])
        theirs_s = subset_s * QUERIES / queries
        timed = (
            f"torchmetrics {subset_s:.2f} s on {queries} queries, "
            f"extrapolated linearly to {theirs_s:.1f} s"
        )
        compared = retrieval_metrics(scores[:queries], relevant[:queries], ks=(1, 10))
    difference = max(abs(compared[name] - theirs[name]) for name in theirs)
    setting = f"{QUERIES}x{GALLERY} float32, CPU, {torch.get_num_threads()} threads"
    return [
        {
            "benchmark": "retrieval metrics (mAP, Hit@1, Hit@10): speed-up over torchmetrics",
            "value": round(theirs_s / ours_s, 1),
            "unit": "x",
            "target": ">= 20",
            "note": f"{setting}; ours {ours_s:.3f} s (best of 3), {timed}",
        },
        {
            "benchmark": "retrieval metrics: max |ours - torchmetrics|",
            "value": difference,
            "unit": "abs",
            "target": "<= 1e-6",
            "note": f"{setting}; ours " + ", ".join(f"{k} {v:.4f}" for k, v in ours.items()),
        },
    ]

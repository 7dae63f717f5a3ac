"""Retrieval and detection metrics agree with torchmetrics and with exact chance levels."""

import itertools

import pytest
import torch
from torchmetrics.classification import BinaryAUROC, BinaryROC
from torchmetrics.retrieval import RetrievalHitRate, RetrievalMAP

from phonclip.eval.detection import auc_eer
from phonclip.eval.retrieval import (
    chance_levels,
    cosine_scores,
    labels_to_relevance,
    retrieval_metrics,
)


def _torchmetrics_retrieval(scores: torch.Tensor, relevant: torch.Tensor) -> dict[str, float]:
    indexes = torch.arange(scores.shape[0]).repeat_interleave(scores.shape[1])
    metrics = {
        "mAP": RetrievalMAP(empty_target_action="skip"),
        "hit@1": RetrievalHitRate(top_k=1, empty_target_action="skip"),
        "hit@10": RetrievalHitRate(top_k=10, empty_target_action="skip"),
    }
    return {
        name: m(scores.flatten(), relevant.flatten(), indexes=indexes).item()
        for name, m in metrics.items()
    }


def _random_task(seed: int, queries: int = 40, gallery: int = 60, ties: bool = False):
    """Positive scores (torchmetrics' AP drops relevant items scored ≤ 0); 0–6 relevant each."""
    g = torch.Generator().manual_seed(seed)
    scores = torch.rand(queries, gallery, generator=g, dtype=torch.float64) + 0.01
    if ties:
        scores = torch.ceil(scores * 8) / 8
    n_relevant = torch.randint(0, 7, (queries,), generator=g)
    ranks = torch.rand(queries, gallery, generator=g).argsort(dim=1).argsort(dim=1)
    relevant = ranks < n_relevant[:, None]
    relevant[:, :3] |= scores[:, :3] > 0.9  # correlate relevance with score a little
    return scores, relevant


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_retrieval_matches_torchmetrics(seed):
    scores, relevant = _random_task(seed)
    assert (~relevant.any(1)).any() and (relevant.sum(1) > 1).any()
    ours, theirs = retrieval_metrics(scores, relevant), _torchmetrics_retrieval(scores, relevant)
    assert ours == pytest.approx(theirs, abs=1e-6)


@pytest.mark.parametrize("seed", [4, 5])
def test_retrieval_ties_rank_nonrelevant_first(seed):
    scores, relevant = _random_task(seed, ties=True)
    assert len(scores[0].unique()) < scores.shape[1]
    pessimistic = (
        scores - 1e-3 * relevant
    )  # the documented tie rule, made explicit for torchmetrics
    assert retrieval_metrics(scores, relevant) == pytest.approx(
        _torchmetrics_retrieval(pessimistic, relevant), abs=1e-6
    )


def test_constant_scorer_never_looks_good():
    relevant = labels_to_relevance(["a", "b", "c"], ["a", "x", "b", "b", "y", "c"])
    got = retrieval_metrics(torch.zeros(3, 6), relevant, ks=(1, 4))
    assert got["hit@1"] == 0.0 and got["mAP"] < chance_levels(relevant)["mAP"]
    perfect = retrieval_metrics(relevant.double(), relevant, ks=(1, 4))
    assert perfect == {"mAP": 1.0, "hit@1": 1.0, "hit@4": 1.0}


def test_labels_to_relevance_and_cosine_scores():
    relevant = labels_to_relevance(["ka", "ta"], ["ta", "ka", "ka"])
    assert relevant.tolist() == [[False, True, True], [True, False, False]]
    a, b = torch.randn(3, 4), torch.randn(5, 4)
    torch.testing.assert_close(
        cosine_scores(a, b), torch.cosine_similarity(a[:, None], b[None], dim=-1)
    )


def test_chance_levels_exact_by_enumeration():
    relevant = torch.tensor([[True, False, True, False, False], [False, False, False, True, False]])
    totals = {"mAP": 0.0, "hit@1": 0.0, "hit@2": 0.0}
    orders = list(itertools.permutations(range(5)))
    for order in orders:
        scores = torch.tensor(order, dtype=torch.float64).expand(2, 5)
        for name, value in retrieval_metrics(scores, relevant, ks=(1, 2)).items():
            totals[name] += value / len(orders)
    assert chance_levels(relevant, ks=(1, 2)) == pytest.approx(totals, abs=1e-12)


def test_chance_levels_match_monte_carlo():
    _, relevant = _random_task(6, queries=30, gallery=40)
    g = torch.Generator().manual_seed(7)
    draws = [
        retrieval_metrics(torch.rand(relevant.shape, generator=g), relevant) for _ in range(300)
    ]
    mean = {name: sum(d[name] for d in draws) / len(draws) for name in draws[0]}
    assert chance_levels(relevant) == pytest.approx(mean, abs=0.01)


def test_retrieval_rejects_bad_inputs():
    with pytest.raises(ValueError, match="no query"):
        retrieval_metrics(torch.rand(2, 3), torch.zeros(2, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match="bool"):
        retrieval_metrics(torch.rand(2, 3), torch.ones(2, 3))
    with pytest.raises(ValueError, match="match in shape"):
        retrieval_metrics(torch.rand(2, 4), torch.ones(2, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match="NaN"):
        retrieval_metrics(torch.full((2, 3), float("nan")), torch.ones(2, 3, dtype=torch.bool))


def _eer_from_curve(fpr, tpr) -> float:
    """EER by walking a ROC curve point by point and interpolating at the FNR = FPR crossing."""
    for i in range(1, len(fpr)):
        prev_gap, gap = (1 - tpr[i - 1]) - fpr[i - 1], (1 - tpr[i]) - fpr[i]
        if gap <= 0:
            w = prev_gap / (prev_gap - gap)
            return float(fpr[i - 1] + w * (fpr[i] - fpr[i - 1]))
    raise AssertionError("ROC never crosses FNR = FPR")


@pytest.mark.parametrize(("seed", "ties"), [(0, False), (1, False), (2, True)])
def test_auc_eer_matches_torchmetrics(seed, ties):
    g = torch.Generator().manual_seed(seed)
    labels = torch.rand(300, generator=g) < 0.3
    scores = (torch.rand(300, generator=g, dtype=torch.float64) + 0.3 * labels).clamp(max=1)
    if ties:
        scores = torch.round(scores * 10) / 10
    fpr, tpr, _ = BinaryROC()(scores, labels.long())
    got = auc_eer(scores, labels)
    assert got["auc"] == pytest.approx(BinaryAUROC()(scores, labels.long()).item(), abs=1e-6)
    assert got["eer"] == pytest.approx(_eer_from_curve(fpr.double(), tpr.double()), abs=1e-6)
    detected = scores >= got["eer_threshold"]
    false_alarms, misses = (
        (detected & ~labels).sum() / (~labels).sum(),
        (~detected & labels).sum() / labels.sum(),
    )
    assert misses <= false_alarms


def test_auc_eer_sanity_cases():
    labels = torch.tensor([False] * 50 + [True] * 50)
    ramp = torch.linspace(0, 1, 100)
    assert auc_eer(ramp, labels) == {
        "auc": 1.0,
        "eer": 0.0,
        "eer_threshold": pytest.approx(ramp[50].item()),
    }
    inverted = auc_eer(-ramp, labels)
    assert (inverted["auc"], inverted["eer"]) == (0.0, 1.0)
    g = torch.Generator().manual_seed(0)
    noise = auc_eer(torch.rand(20_000, generator=g), torch.rand(20_000, generator=g) < 0.5)
    assert noise["auc"] == pytest.approx(0.5, abs=0.02) and noise["eer"] == pytest.approx(
        0.5, abs=0.02
    )
    with pytest.raises(ValueError, match="both positive and negative"):
        auc_eer(ramp, torch.ones(100, dtype=torch.bool))

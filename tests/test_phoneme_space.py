"""Phoneme-space metrics (IPA-CLIP Table 2) give the values derived by hand, and the plots render."""

import math

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from sklearn.metrics import average_precision_score

from phonclip.eval.phoneme_space import (
    label_map,
    phoneme_space_figure,
    rank_correlation,
    shared_attributes_figure,
    silhouettes,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _at_degrees(*degrees: float) -> torch.Tensor:
    """2-D unit vectors at the given angles: cosine similarity falls monotonically with the gap."""
    rad = torch.tensor(degrees, dtype=torch.float64) * math.pi / 180
    return torch.stack([rad.cos(), rad.sin()], dim=1)


# ---------------------------------------------------------------- silhouettes


def test_silhouettes_tight_separated_clusters_are_near_one() -> None:
    g = torch.Generator().manual_seed(0)
    consonants = torch.tensor([1.0, 0, 0, 0]) + 0.01 * torch.randn(6, 4, generator=g)
    vowels = torch.tensor([0, 1.0, 0, 0]) + 0.01 * torch.randn(5, 4, generator=g)
    emb = torch.cat([consonants, vowels])
    s_c, s_v = silhouettes(emb, [False] * 6 + [True] * 5)
    assert s_c > 0.95 and s_v > 0.95


def test_silhouettes_returns_consonant_then_vowel() -> None:
    # consonants tight, vowels spread on the far side: s_Cc must exceed s_Cv
    g = torch.Generator().manual_seed(1)
    consonants = torch.tensor([1.0, 0, 0]) + 0.01 * torch.randn(5, 3, generator=g)
    vowels = torch.tensor([[0, 1.0, 0], [0, 0, 1.0], [0, 1.0, 1.0], [-0.2, 1.0, 0.3]])
    s_c, s_v = silhouettes(torch.cat([vowels, consonants]), [True] * 4 + [False] * 5)
    assert s_c > s_v + 0.2


def test_silhouettes_random_labels_are_near_zero() -> None:
    g = torch.Generator().manual_seed(0)
    emb = torch.randn(300, 16, generator=g)
    is_vowel = (torch.rand(300, generator=g) < 0.5).tolist()
    s_c, s_v = silhouettes(emb, is_vowel)
    assert abs(s_c) < 0.05 and abs(s_v) < 0.05


@pytest.mark.parametrize("is_vowel", [[True, False, False, False], [False, True, True, True]])
def test_silhouettes_one_member_cluster_raises(is_vowel: list[bool]) -> None:
    with pytest.raises(ValueError, match="at least 2"):
        silhouettes(torch.randn(4, 3), is_vowel)


def test_silhouettes_length_mismatch_raises() -> None:
    with pytest.raises(ValueError, match="rows"):
        silhouettes(torch.randn(5, 3), [True, True, False, False])


# ---------------------------------------------------------------- label_map


def test_label_map_identical_within_orthogonal_across_is_one() -> None:
    labels = ["p", "b", "p", "m", "b", "p", "m"]
    basis = {"p": [1.0, 0, 0], "b": [0, 1.0, 0], "m": [0, 0, 1.0]}
    emb = torch.tensor([basis[x] for x in labels])
    assert label_map(emb, labels) == pytest.approx(1.0)


def test_label_map_hand_computed() -> None:
    # Unit vectors at 0°, 40°, 90°, 170°, labels a, b, a, a; similarity falls with the angle gap.
    # q0: others by gap 1(40°,b) 2(90°,a) 3(170°,a) -> relevant at ranks 2, 3: (1/2 + 2/3)/2 = 7/12
    # q1: label b has no other member -> skipped
    # q2: 1(50°,b) 3(80°,a) 0(90°,a)  -> relevant at ranks 2, 3: 7/12
    # q3: 2(80°,a) 1(130°,b) 0(170°,a) -> relevant at ranks 1, 3: (1 + 2/3)/2 = 5/6
    # mAP = (7/12 + 7/12 + 10/12) / 3 = 2/3
    emb = _at_degrees(0, 40, 90, 170)
    assert label_map(emb, ["a", "b", "a", "a"]) == pytest.approx(2 / 3, abs=1e-12)


def test_label_map_ties_rank_by_index() -> None:
    # All embeddings equal, labels a b b: each query ranks the others by ascending index.
    # q0: label a has no other member -> skipped; q1: 0a 2b -> 1/2; q2: 0a 1b -> 1/2; mAP = 1/2
    # (ties broken by descending index would give q1: 2b 0a -> 1, q2: 1b 0a -> 1, mAP = 1)
    emb = torch.ones(3, 4)
    assert label_map(emb, ["a", "b", "b"]) == pytest.approx(1 / 2, abs=1e-12)


def test_label_map_matches_sklearn_per_query() -> None:
    g = torch.Generator().manual_seed(3)
    emb = torch.randn(40, 8, generator=g)
    labels = torch.randint(0, 6, (40,), generator=g).tolist() + ["solo"]
    emb = torch.cat([emb, torch.randn(1, 8, generator=g)])
    x = torch.nn.functional.normalize(emb.double(), dim=-1)
    sims = (x @ x.T).numpy()
    aps = []
    for q in range(len(labels)):
        others = [i for i in range(len(labels)) if i != q]
        y = np.array([labels[i] == labels[q] for i in others])
        if y.any():
            aps.append(average_precision_score(y, sims[q, others]))
    assert len(aps) == 40  # "solo" skipped
    assert label_map(emb, labels) == pytest.approx(float(np.mean(aps)), abs=1e-9)


def test_label_map_unique_labels_are_skipped() -> None:
    # Lift the hand-computed case off the plane (cos becomes (cos Δθ + 9)/10, same rankings) and add
    # a unique-label item below it, least similar to every other item: as a gallery item it ranks
    # last and is never relevant, so the score stays 2/3 only if it is skipped as a query.
    flat = _at_degrees(0, 40, 90, 170)
    lifted = torch.cat([flat, torch.full((4, 1), 3.0, dtype=torch.float64)], dim=1)
    with_unique = torch.cat([lifted, torch.tensor([[0.0, 0.0, -1.0]], dtype=torch.float64)])
    assert label_map(with_unique, ["a", "b", "a", "a", "z"]) == pytest.approx(2 / 3, abs=1e-12)


def test_label_map_all_unique_is_nan() -> None:
    assert math.isnan(label_map(torch.randn(5, 3), ["a", "b", "c", "d", "e"]))


def test_label_map_frozenset_labels() -> None:
    emb = _at_degrees(0, 40, 90, 170)
    bilabial, dental = frozenset({"bilabial"}), frozenset({"dental"})
    labels = [bilabial, dental, frozenset(["bilabial"]), bilabial]
    assert label_map(emb, labels) == pytest.approx(2 / 3, abs=1e-12)


# ---------------------------------------------------------------- rank_correlation


def test_rank_correlation_line_embedding_is_one() -> None:
    values = [0.0, 1.0, 3.0, 7.0, 15.0]  # all pairwise differences distinct
    emb = _at_degrees(*(v * 10 for v in values))  # angle gap ∝ |Δv|, within 150° so monotone
    assert rank_correlation(emb, values) == pytest.approx(1.0, abs=1e-12)


def test_rank_correlation_reversed_and_random_are_lower() -> None:
    values = [0.0, 1.0, 3.0, 7.0, 15.0]
    reversed_emb = _at_degrees(*(v * 10 for v in reversed(values)))
    assert rank_correlation(reversed_emb, values) < 0.5
    g = torch.Generator().manual_seed(0)
    many = torch.linspace(0, 1, 30).tolist()
    assert abs(rank_correlation(torch.randn(30, 16, generator=g), many)) < 0.3


def test_rank_correlation_hand_computed_negative() -> None:
    # values 0, 1, 2; items 0 and 2 coincide, item 1 orthogonal.
    # pairs (0,1) (0,2) (1,2): |Δv| = 1, 2, 1; distance = 1, 0, 1 -> perfectly inverted ranks, ρ = -1
    emb = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    assert rank_correlation(emb, [0.0, 1.0, 2.0]) == pytest.approx(-1.0)


def test_rank_correlation_degenerate_is_nan() -> None:
    assert math.isnan(rank_correlation(torch.randn(5, 3), [2.0] * 5))
    assert math.isnan(rank_correlation(torch.randn(2, 3), [0.0, 1.0]))


# ---------------------------------------------------------------- plots


def test_phoneme_space_figure_draws_every_segment() -> None:
    g = torch.Generator().manual_seed(0)
    segments = ["p", "b", "t", "d", "a", "i", "u"]
    fig = phoneme_space_figure(torch.randn(7, 5, generator=g), segments, [False] * 4 + [True] * 3, "t")
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.texts] == segments
    assert [len(c.get_offsets()) for c in ax.collections] == [4, 3]  # consonants, vowels
    plt.close(fig)


def test_shared_attributes_figure_has_one_line_per_arm() -> None:
    accuracy = {"frozen": {0: 0.1, 1: 0.2, 2: 0.4}, "teacher on spelling": {0: 0.3, 1: 0.5, 2: 0.8}}
    fig = shared_attributes_figure(accuracy, "accuracy by shared attributes")
    lines = fig.axes[0].get_lines()
    assert [list(line.get_ydata()) for line in lines] == [[0.1, 0.2, 0.4], [0.3, 0.5, 0.8]]
    plt.close(fig)


def test_shared_attributes_figure_rejects_percentages() -> None:
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        shared_attributes_figure({"frozen": {0: 10.0, 1: 20.0, 2: 40.0}}, "t")

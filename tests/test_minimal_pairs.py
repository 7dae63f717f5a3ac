"""Minimal pairs: valid, different, few edits, near in feature space, deterministic."""

import random
import unicodedata

import numpy as np
import pytest

from phonclip.ipa import feature_weights, is_known, normalize_ipa, segment, segment_features
from phonclip.minimal_pairs import (
    MinimalPairSampler,
    common_inventory,
    segment_edit_distance,
    weighted_feature_distances,
)

WORDS = [
    "ðə bˈɜːd hˈɜːt t͡ʃˈɜːt͡ʃ",
    "pˈero ɣˈato xamˈon",
    "bˈyːçɐ ɪç t͡sˈaɪtʊŋ",
    "œ̃ bˈɔ̃ vˈɛ̃ blˈɑ̃",
    "ni˨˩˦ xau˨˩˦",
    "prʲɪvʲˈet ɕˈukə",
    "nəmˈʌsteː",
    "ŋɡˈoma ˈm̩bwa",
    "ukut͡ʃʼaza ǀa",
    "kʷɔŋ˧˥ tʊŋ˥",
    "a",
    "ˈo i",
]


@pytest.fixture(scope="module")
def sampler() -> MinimalPairSampler:
    return MinimalPairSampler(seed=0)


@pytest.mark.parametrize(("max_edits", "p_swap"), [(1, 0.0), (1, 0.3), (3, 0.2)])
def test_negatives_are_valid_different_and_close(max_edits: int, p_swap: float) -> None:
    s = MinimalPairSampler(max_edits=max_edits, p_swap=p_swap)
    rng = random.Random(max_edits)
    for word in WORDS:
        for _ in range(40):
            neg = s(word, rng)
            assert neg == normalize_ipa(neg)
            assert neg != normalize_ipa(word)
            assert all(is_known(seg) for seg in segment(neg)), neg
            assert 1 <= segment_edit_distance(segment(neg), segment(word)) <= max_edits
            assert neg.count(" ") == word.count(" ")


def test_deterministic_given_rng(sampler: MinimalPairSampler) -> None:
    for make in (random.Random, np.random.default_rng):
        first = [sampler(w, make(7)) for w in WORDS]
        assert first == [sampler(w, make(7)) for w in WORDS]
    a, b = MinimalPairSampler(seed=3), MinimalPairSampler(seed=3)
    assert [a(w) for w in WORDS] == [b(w) for w in WORDS]


def test_substitutes_are_nearer_than_random_segments() -> None:
    s = MinimalPairSampler(p_substitute=1.0, p_insert=0.0, p_delete=0.0)
    rng = random.Random(0)
    near, far = [], []
    for word in WORDS * 10:
        before, after = segment(word), segment(s(word, rng))
        (i,) = [k for k, (x, y) in enumerate(zip(before, after)) if x != y]
        near.append(_distance(before[i], after[i]))
        far.append(_distance(before[i], rng.choice(s.inventory)))
    assert np.mean(near) < 0.5 * np.mean(far)


def _distance(x: str, y: str) -> float:
    return float(
        weighted_feature_distances(segment_features([x]), segment_features([y]), feature_weights())[
            0, 0
        ]
    )


def test_neighbours_are_the_nearest_distinct_segments(sampler: MinimalPairSampler) -> None:
    for seg in ["p", "a", "t͡ʃ", "ŋ", "kʰ", "tʲː"]:
        seg = unicodedata.normalize("NFD", seg)
        nbrs = sampler.neighbours(seg)
        assert len(nbrs) == sampler.k_neighbours and seg not in nbrs
        dists = [_distance(seg, n) for n in nbrs]
        assert dists == sorted(dists) and dists[0] > 0
        others = [
            _distance(seg, o) for o in sampler.inventory if o not in nbrs and _distance(seg, o) > 0
        ]
        assert max(dists) <= min(others)
    assert set(sampler.neighbours("˥")) <= {"˦", "˧", "˨", "˩"}
    assert "˥" not in sampler.neighbours("a")
    assert sampler.neighbours("5") == []


def test_weighted_distances_match_brute_force() -> None:
    feats = segment_features(list(common_inventory())[:50])
    w = feature_weights()
    brute = (np.abs(feats[:, None, :].astype(float) - feats[None, :, :]) * w).sum(-1)
    np.testing.assert_allclose(weighted_feature_distances(feats, feats, w), brute, atol=1e-9)


def test_segment_edit_distance() -> None:
    assert segment_edit_distance(list("abc"), list("abc")) == 0
    assert segment_edit_distance(list("abc"), list("acb")) == 1
    assert segment_edit_distance(list("abc"), list("ab")) == 1
    assert segment_edit_distance(list("abc"), list("xbcy")) == 2


def test_deletion_never_empties_a_word() -> None:
    s = MinimalPairSampler(p_substitute=0.0, p_insert=0.0, p_delete=1.0)
    rng = random.Random(0)
    assert {s("a bo", rng) for _ in range(30)} == {"a b", "a o"}
    with pytest.raises(ValueError, match="no allowed edit"):
        s("a", rng)


def test_default_inventory_is_common_known_segments() -> None:
    inv = common_inventory()
    assert all(is_known(seg) and segment(seg) == [seg] for seg in inv)
    assert {"p", "a", "aː", "pʰ", "ã", "t͡ʃ", "˥"} <= {unicodedata.normalize("NFC", s) for s in inv}
    assert 100 < len(inv) < 1000


def test_bad_arguments_raise() -> None:
    with pytest.raises(ValueError, match="no phone segments"):
        MinimalPairSampler()("ˈ ", random.Random(0))
    with pytest.raises(ValueError, match="not single panphon segments"):
        MinimalPairSampler(inventory=["p", "ts", "5"])
    with pytest.raises(ValueError, match="probabilities"):
        MinimalPairSampler(p_substitute=0, p_insert=0, p_delete=0)
    with pytest.raises(ValueError, match="k_neighbours"):
        MinimalPairSampler(k_neighbours=0)

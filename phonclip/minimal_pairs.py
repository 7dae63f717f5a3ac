"""Phonetically informed hard negatives (CLAP-IPA): IPA strings a few segment edits from a positive.

A negative substitutes a segment by one of its nearest neighbours in panphon feature space
(weighted feature distance, panphon's substitution cost), inserts a neighbour of an adjacent
segment, deletes a segment, or (optionally) swaps two adjacent segments. Word boundaries and
stress marks are never edited, and no word loses its last segment. Edit counts are segment-level
optimal-string-alignment distances (an adjacent swap is one edit).
"""

from __future__ import annotations

import csv
import functools
import random
import unicodedata
from importlib.resources import files

import numpy as np

from phonclip.ipa import (
    STRESS_MARKS,
    WORD_BOUNDARY,
    feature_names,
    feature_weights,
    is_known,
    normalize_ipa,
    segment,
    segment_features,
)

Rng = random.Random | np.random.Generator

# Modifiers that, alone on a base segment, give the cross-linguistically most frequent phone types.
COMMON_MODIFIERS = ("ː", "ʰ", "\u0303", "ʲ", "ʷ")
_MAJOR_CLASS = ("syl", "son", "cons")
_MAX_TRIES = 20


@functools.cache
def common_inventory() -> tuple[str, ...]:
    """Plausible phones: panphon's base segments, alone or with one common modifier (ː ʰ ̃ ʲ ʷ).

    The bases (panphon's ``ipa_bases.csv``: plain consonants, affricates, vowels, tone letters)
    are what panphon derives its whole table from; a variant is kept where panphon defines it. One
    frequent modifier keeps substitutes real phones; panphon's full table is dominated by stacks of
    rare diacritics.
    """
    with files("panphon").joinpath("data", "ipa_bases.csv").open() as f:
        bases = {unicodedata.normalize("NFD", row["ipa"]) for row in csv.DictReader(f)}
    variants = {base + mod for base in bases for mod in COMMON_MODIFIERS}
    return tuple(sorted(seg for seg in bases | variants if is_known(seg)))


def weighted_feature_distances(a: np.ndarray, b: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Pairwise sum_f w_f |a_f - b_f| [len(a), len(b)] of ternary feature vectors, by matmuls.

    For x, y in {-1, 0, 1}, |x - y| = x² + y² - xy - x²y², so no [len(a), len(b), n_features]
    tensor is built and the full panphon table fits in memory as an inventory.
    """
    a, b = a.astype(np.float64), b.astype(np.float64)
    a2, b2 = a * a, b * b
    return (
        (a2 @ weights)[:, None]
        + (b2 @ weights)[None, :]
        - (a * weights) @ b.T
        - (a2 * weights) @ b2.T
    )


def segment_edit_distance(x: list[str], y: list[str]) -> int:
    """Optimal-string-alignment distance of segment lists: substitution, indel, adjacent swap."""
    d = [[i + j if i * j == 0 else 0 for j in range(len(y) + 1)] for i in range(len(x) + 1)]
    for i in range(1, len(x) + 1):
        for j in range(1, len(y) + 1):
            d[i][j] = min(
                d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + (x[i - 1] != y[j - 1])
            )
            if i > 1 and j > 1 and x[i - 1] == y[j - 2] and x[i - 2] == y[j - 1]:
                d[i][j] = min(d[i][j], d[i - 2][j - 2] + 1)
    return d[len(x)][len(y)]


def _randbelow(rng: Rng, n: int) -> int:
    return rng.randrange(n) if isinstance(rng, random.Random) else int(rng.integers(n))


def _choice(rng: Rng, items: list) -> object:
    return items[_randbelow(rng, len(items))]


def _weighted_index(rng: Rng, weights: list[float]) -> int:
    u = rng.random() * sum(weights)
    for i, w in enumerate(weights):
        u -= w
        if u < 0 and w > 0:
            return i
    return max(i for i, w in enumerate(weights) if w > 0)


class MinimalPairSampler:
    """IPA strings differing minimally from a positive: hard negatives for contrastive training."""

    def __init__(
        self,
        inventory: list[str] | None = None,
        k_neighbours: int = 5,
        p_substitute: float = 0.6,
        p_insert: float = 0.2,
        p_delete: float = 0.2,
        max_edits: int = 1,
        seed: int | None = None,
        p_swap: float = 0.0,
    ) -> None:
        probs = {"substitute": p_substitute, "insert": p_insert, "delete": p_delete, "swap": p_swap}
        if any(p < 0 for p in probs.values()) or sum(probs.values()) <= 0:
            raise ValueError(f"edit probabilities must be >= 0 with a positive sum, got {probs}")
        if k_neighbours < 1 or max_edits < 1:
            raise ValueError(
                f"k_neighbours and max_edits must be >= 1, got {k_neighbours} and {max_edits}"
            )
        inv = sorted({unicodedata.normalize("NFD", s) for s in (inventory or common_inventory())})
        bad = [
            s
            for s in inv
            if s in (WORD_BOUNDARY, *STRESS_MARKS) or not is_known(s) or segment(s) != [s]
        ]
        if bad:
            raise ValueError(f"inventory entries that are not single panphon segments: {bad[:10]}")
        self.inventory = inv
        self.k_neighbours = k_neighbours
        self.max_edits = max_edits
        self.ops = list(probs)
        self.probs = list(probs.values())
        self._rng = random.Random(seed)
        self._features = segment_features(inv)
        self._tonal = self._is_tonal(self._features)
        self._neighbours = dict(zip(inv, self._nearest(self._features)))

    @staticmethod
    def _is_tonal(features: np.ndarray) -> np.ndarray:
        """Tone letters: no major-class features at all (they only substitute for each other)."""
        major = [feature_names().index(name) for name in _MAJOR_CLASS]
        return ~features[:, major].any(axis=1)

    def _nearest(self, features: np.ndarray) -> list[list[str]]:
        """The k nearest inventory segments per row; never feature-identical nor tone for phone."""
        dist = weighted_feature_distances(features, self._features, feature_weights())
        dist[(dist <= 1e-9) | (self._is_tonal(features)[:, None] != self._tonal[None, :])] = np.inf
        order = np.argsort(dist, axis=1, kind="stable")[:, : self.k_neighbours]
        return [
            [self.inventory[j] for j in row if np.isfinite(dist[i, j])]
            for i, row in enumerate(order)
        ]

    def neighbours(self, seg: str) -> list[str]:
        """The k inventory segments nearest ``seg`` in weighted feature distance; [] if unknown."""
        seg = unicodedata.normalize("NFD", seg)
        if seg not in self._neighbours:
            known = is_known(seg) and seg not in (WORD_BOUNDARY, *STRESS_MARKS)
            self._neighbours[seg] = self._nearest(segment_features([seg]))[0] if known else []
        return self._neighbours[seg]

    def __call__(self, ipa: str, rng: Rng | None = None) -> str:
        """A normalised IPA string 1..max_edits segment edits from ``ipa``, never equal to it."""
        rng = self._rng if rng is None else rng
        segs = segment(ipa)
        if not any(self._is_phone(s) for s in segs):
            raise ValueError(f"no phone segments to edit in IPA string {ipa!r}")
        original = "".join(segs)
        n_edits = 1 + _randbelow(rng, self.max_edits)
        for _ in range(_MAX_TRIES):
            edited = segs
            for _ in range(n_edits):
                edited = self._edit(edited, rng)
            out = normalize_ipa("".join(edited))
            if out != original and 1 <= segment_edit_distance(segment(out), segs) <= self.max_edits:
                return out
        raise RuntimeError(f"no minimal pair within {self.max_edits} edits found for {ipa!r}")

    @staticmethod
    def _is_phone(seg: str) -> bool:
        return seg != WORD_BOUNDARY and seg not in STRESS_MARKS

    def _edit(self, segs: list[str], rng: Rng) -> list[str]:
        """One edit of a random feasible kind."""
        phones = [i for i, s in enumerate(segs) if self._is_phone(s)]
        candidates = {
            "substitute": [i for i in phones if self.neighbours(segs[i])],
            "insert": phones,
            "delete": [i for i in phones if self._word_phones(segs, i) > 1],
            "swap": [
                i
                for i in phones
                if i + 1 < len(segs) and self._is_phone(segs[i + 1]) and segs[i] != segs[i + 1]
            ],
        }
        weights = [p if candidates[op] else 0.0 for op, p in zip(self.ops, self.probs)]
        if not any(weights):
            raise ValueError(f"no allowed edit for segments {segs} with probabilities {self.probs}")
        op = self.ops[_weighted_index(rng, weights)]
        i = _choice(rng, candidates[op])
        if op == "substitute":
            return [*segs[:i], _choice(rng, self.neighbours(segs[i])), *segs[i + 1 :]]
        if op == "insert":
            new = _choice(rng, self.neighbours(segs[i]) or self.inventory)
            at = i + _randbelow(rng, 2)
            return [*segs[:at], new, *segs[at:]]
        if op == "delete":
            return [*segs[:i], *segs[i + 1 :]]
        return [*segs[:i], segs[i + 1], segs[i], *segs[i + 2 :]]

    @staticmethod
    def _word_phones(segs: list[str], i: int) -> int:
        """Number of phones in the word holding position ``i``."""
        start = i
        while start > 0 and segs[start - 1] != WORD_BOUNDARY:
            start -= 1
        end = i
        while end < len(segs) and segs[end] != WORD_BOUNDARY:
            end += 1
        return sum(MinimalPairSampler._is_phone(s) for s in segs[start:end])

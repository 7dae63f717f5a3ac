"""Duration bucketing: every clip once, batches within limits, and far less padding than naive batching."""

from __future__ import annotations

import numpy as np
import pytest

from data_modules.bucketing import DurationBucketer, padding_fraction, quantile_boundaries


def corpus_durations(n: int = 3000, seed: int = 0) -> list[float]:
    """Like the default corpus: words 0.3–1.5 s and phrases 1–4 s, shuffled."""
    rng = np.random.default_rng(seed)
    words = rng.uniform(0.3, 1.5, size=n * 2 // 3)
    phrases = rng.uniform(1.0, 4.0, size=n - len(words))
    durations = np.concatenate([words, phrases])
    rng.shuffle(durations)
    return durations.tolist()


def naive_batches(durations: list[float], max_batch_seconds: float) -> list[list[float]]:
    """Sequential batching under the same padded-seconds limit, ignoring duration."""
    batches, current = [], []
    for d in durations:
        if current and max(current + [d]) * (len(current) + 1) > max_batch_seconds:
            batches.append(current)
            current = []
        current.append(d)
    return batches + [current]


def lengths(batches: list[list[float]]) -> list[list[int]]:
    return [[round(d * 16000) for d in batch] for batch in batches]


def test_every_item_emitted_exactly_once_and_within_limit():
    durations = corpus_durations()
    items = list(enumerate(durations))
    batches = list(DurationBucketer(max_batch_seconds=30.0)(items, duration=lambda x: x[1]))
    emitted = sorted(i for batch in batches for i, _ in batch)
    assert emitted == list(range(len(durations)))
    for batch in batches:
        longest = max(d for _, d in batch)
        assert longest * len(batch) <= 30.0 or len(batch) == 1


def test_bucketing_pads_far_less_than_naive_batching():
    durations = corpus_durations()
    bucketed = list(DurationBucketer(max_batch_seconds=60.0)(durations, duration=float))
    naive = naive_batches(durations, 60.0)
    ours, theirs = padding_fraction(lengths(bucketed)), padding_fraction(lengths(naive))
    assert ours <= 0.15, ours
    assert ours < theirs / 2, (ours, theirs)


def test_batch_size_limit_and_fixed_boundaries():
    durations = [0.5] * 10 + [3.0] * 10
    batches = list(DurationBucketer(batch_size=4, boundaries=[1.0])(durations, duration=float))
    assert sorted(len(b) for b in batches) == [2, 2, 4, 4, 4, 4]
    assert all(len(set(b)) == 1 for b in batches)  # short and long clips never share a batch


def test_whichever_limit_is_hit_first_wins():
    durations = [1.0] * 12
    by_seconds = list(
        DurationBucketer(max_batch_seconds=3.0, batch_size=10)(durations, duration=float)
    )
    by_size = list(
        DurationBucketer(max_batch_seconds=100.0, batch_size=2)(durations, duration=float)
    )
    assert [len(b) for b in by_seconds] == [3, 3, 3, 3]
    assert [len(b) for b in by_size] == [2] * 6


def test_clip_longer_than_the_limit_gets_a_batch_of_its_own():
    bucketer = DurationBucketer(max_batch_seconds=2.0, num_buckets=1)
    assert list(bucketer([0.5, 5.0, 0.5], duration=float)) == [[0.5], [5.0], [0.5]]


def test_boundaries_split_into_equal_total_durations():
    durations = np.arange(100) / 10
    edges = quantile_boundaries(list(durations), 4)
    assert len(edges) == 3
    totals = [durations[np.digitize(durations, edges) == b].sum() for b in range(4)]
    assert max(totals) - min(totals) < 0.1 * durations.sum() / 4
    assert quantile_boundaries([], 4) == []
    assert quantile_boundaries([1.0, 2.0], 1) == []


def test_padding_fraction_counts_padded_samples():
    assert padding_fraction([[4, 4], [2]]) == 0.0
    assert padding_fraction([[4, 2]]) == pytest.approx(2 / 8)
    assert padding_fraction([]) == 0.0


@pytest.mark.parametrize(
    "kwargs",
    [{}, {"max_batch_seconds": 0}, {"batch_size": 0}, {"batch_size": 2, "boundaries": [2.0, 1.0]}],
)
def test_bad_settings_are_rejected(kwargs):
    with pytest.raises(ValueError):
        DurationBucketer(**kwargs)


def test_padding_benchmark_on_tiny_shards(tmp_path):
    from shards import tone, write_shards

    from data_modules.schema import Sample
    from phonclip.benchmarks import padding

    clips = [Sample(f"c{i:03d}", tone(d), "pa") for i, d in enumerate(corpus_durations(90))]
    write_shards(tmp_path, clips, 30)
    bucketed, naive = padding.run(tmp_path)
    assert {"benchmark", "value", "unit", "target", "note"} <= set(bucketed)
    assert "90 clips" in bucketed["note"]
    assert bucketed["value"] < naive["value"] / 2

"""Duration-bucketed batching over a stream, so a batch pads little and holds a bounded number of seconds.

Like lhotse's ``DynamicBucketingSampler``, but over an iterable (shards stream; nothing is indexable):
samples go to the bucket of their duration; a bucket is emitted as a batch as soon as adding the next
sample would push its *padded* seconds (longest clip × batch size) over ``max_batch_seconds`` or its
size over ``batch_size`` — whichever limit is reached first wins. Bucket boundaries are given, or
estimated from the first ``buffer_size`` durations of the stream so that every bucket holds about the
same total duration. At the end of the stream every non-empty bucket is flushed, so every sample is
emitted exactly once.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterable, Iterator, Sequence
from itertools import chain, islice
from typing import TypeVar

import numpy as np

from data_modules.schema import Sample

T = TypeVar("T")


def _sample_duration(sample: Sample) -> float:
    return sample.duration


class DurationBucketer:
    """Turns a stream of clips into batches of similar duration, bounded in padded seconds and/or size."""

    def __init__(
        self,
        max_batch_seconds: float | None = None,
        batch_size: int | None = None,
        num_buckets: int = 16,
        buffer_size: int = 500,
        boundaries: Sequence[float] | None = None,
    ) -> None:
        if max_batch_seconds is None and batch_size is None:
            raise ValueError("DurationBucketer needs max_batch_seconds or batch_size (or both)")
        if max_batch_seconds is not None and max_batch_seconds <= 0:
            raise ValueError(f"max_batch_seconds must be > 0, got {max_batch_seconds}")
        if batch_size is not None and batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if num_buckets < 1:
            raise ValueError(f"num_buckets must be >= 1, got {num_buckets}")
        if boundaries is not None and list(boundaries) != sorted(boundaries):
            raise ValueError(f"bucket boundaries must be increasing, got {list(boundaries)}")
        self.max_batch_seconds = max_batch_seconds
        self.batch_size = batch_size
        self.num_buckets = num_buckets
        self.buffer_size = max(buffer_size, 1)
        self.boundaries = None if boundaries is None else list(boundaries)

    def __call__(
        self, items: Iterable[T], duration: Callable[[T], float] = _sample_duration
    ) -> Iterator[list[T]]:
        """Batches of ``items`` (each exactly once), grouped by ``duration(item)`` in seconds."""
        stream = iter(items)
        head = list(islice(stream, self.buffer_size))
        boundaries = self.boundaries
        if boundaries is None:
            boundaries = quantile_boundaries([duration(x) for x in head], self.num_buckets)
        buckets: list[list[T]] = [[] for _ in range(len(boundaries) + 1)]
        longest = [0.0] * len(buckets)
        for item in chain(head, stream):
            d = duration(item)
            b = bisect.bisect_right(boundaries, d)
            if buckets[b] and self._full(len(buckets[b]) + 1, max(longest[b], d)):
                yield buckets[b]
                buckets[b], longest[b] = [], 0.0
            buckets[b].append(item)
            longest[b] = max(longest[b], d)
        for bucket in buckets:
            if bucket:
                yield bucket

    def _full(self, size: int, longest: float) -> bool:
        too_many = self.batch_size is not None and size > self.batch_size
        too_long = self.max_batch_seconds is not None and size * longest > self.max_batch_seconds
        return too_many or too_long


def quantile_boundaries(durations: Sequence[float], num_buckets: int) -> list[float]:
    """Inner bucket edges giving each bucket about the same total duration (as lhotse estimates them),
    so long clips, where padding costs most, get the narrowest buckets."""
    if len(durations) == 0 or num_buckets < 2:
        return []
    ordered = np.sort(np.asarray(durations, dtype=np.float64))
    cumulative = np.cumsum(ordered)
    cuts = np.searchsorted(cumulative, cumulative[-1] * np.arange(1, num_buckets) / num_buckets)
    return sorted({float(ordered[min(i, len(ordered) - 1)]) for i in cuts})


def padding_fraction(batches: Iterable[Sequence[int]]) -> float:
    """Share of the padded audio tensors that is padding; ``batches`` holds each batch's clip lengths."""
    padded = total = 0
    for lengths in batches:
        if len(lengths) == 0:
            continue
        total += max(lengths) * len(lengths)
        padded += max(lengths) * len(lengths) - sum(lengths)
    return padded / total if total else 0.0

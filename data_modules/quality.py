"""Counts of skipped samples by kind, so bad data is reported in the run's results instead of crashing it."""

from __future__ import annotations

from collections import Counter

DROP_KINDS = (
    "corrupt_audio",  # undecodable or unknown audio format
    "empty_audio",  # zero samples
    "nan_audio",  # NaN or inf in the waveform
    "too_short",  # below data.min_duration
    "too_long",  # above data.max_duration
    "empty_ipa",  # no transcription, or nothing left after normalisation
    "unknown_symbols",  # IPA with segments no table knows (when data.drop_unknown is set)
    "missing_ipa",  # audio with no .txt
    "missing_audio",  # .txt with no audio
    "language_filtered",  # excluded by data.languages / data.exclude_languages
    "empty_text",  # no orthography while the model reads text units
    "corrupt_meta",  # a .json member that is not a JSON object
)


class DropCounter:
    """Accumulates drops by kind; ``take()`` hands over the counts since the last call."""

    def __init__(self) -> None:
        self.total: Counter[str] = Counter()
        self._pending: Counter[str] = Counter()

    def add(self, kind: str, n: int = 1) -> None:
        if kind not in DROP_KINDS:
            raise ValueError(f"unknown drop kind {kind!r}; known: {', '.join(DROP_KINDS)}")
        self.total[kind] += n
        self._pending[kind] += n

    def take(self) -> dict[str, int]:
        pending, self._pending = dict(self._pending), Counter()
        return pending

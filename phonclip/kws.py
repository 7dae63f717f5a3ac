"""Open-vocabulary keyword search: slide windows over a recording and score each against the keyword's IPA."""

from __future__ import annotations

from dataclasses import dataclass

import torch

SAMPLE_RATE = 16_000


@dataclass
class Hit:
    """One detection: where in the recording, and how well it matches (cosine similarity)."""

    start: float
    end: float
    score: float


def windows(n_samples: int, window: float, hop: float) -> list[tuple[int, int]]:
    """Start/end sample indices of windows covering the recording (the last one flush with the end)."""
    w, h = int(window * SAMPLE_RATE), max(1, int(hop * SAMPLE_RATE))
    if n_samples <= w:
        return [(0, n_samples)]
    starts = list(range(0, n_samples - w + 1, h))
    if starts[-1] + w < n_samples:
        starts.append(n_samples - w)
    return [(s, s + w) for s in starts]


def search(model: torch.nn.Module, audio: torch.Tensor, keyword: str, window: float, hop: float,
           top: int = 5) -> list[Hit]:
    """Top ``top`` non-overlapping windows by similarity to ``keyword`` (IPA, or text for a text-units model)."""
    if not keyword.strip():
        raise ValueError("the keyword is empty")
    spans = windows(len(audio), window, hop)
    clips = [audio[s:e] for s, e in spans]
    speech = model.embed_speech(clips, sample_rate=SAMPLE_RATE)
    query = model.embed_phones([keyword])[0]
    scores = speech @ query
    hits: list[Hit] = []
    for i in torch.argsort(scores, descending=True).tolist():
        s, e = spans[i]
        if all(e <= round(h.start * SAMPLE_RATE) or s >= round(h.end * SAMPLE_RATE) for h in hits):
            hits.append(Hit(s / SAMPLE_RATE, e / SAMPLE_RATE, float(scores[i])))
        if len(hits) == top:
            break
    return hits


def default_window(n_segments: int) -> float:
    """A window long enough for a keyword of ``n_segments`` phones at a typical speaking rate."""
    return min(3.0, 0.2 + 0.09 * n_segments)

"""Forced alignment: which tokens of an IPA string are phones, batched monotonic Viterbi, intervals.

Decoding works on a frame × phone score matrix (log-probabilities) plus an optional blank score per
frame (silence). Every phone gets at least one frame, in order; a blank run may sit before the first
phone, after the last one, and wherever ``blank_before`` allows it (word boundaries).

``monotonic_viterbi`` runs the dynamic programme one *phone* at a time instead of one frame at a
time: with C the per-phone cumulative scores over frames, the best path with phone n ending at
position k is C[n, k] + max_{a < k} (P[n, a] − C[n, a]), a running maximum (``torch.cummax``) over
all end positions at once. A clip has far fewer phones than frames, so this is N vectorised steps
over [B, T] for the whole batch, on the scores' device.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from phonclip import alignment_kernels
from phonclip.ipa import STRESS_MARKS

TONE_LETTERS = frozenset("˥˦˧˨˩")

NEG_INF = float("-inf")


@dataclass(frozen=True)
class AlignmentTargets:
    """The phones of one transcription: which tokenizer positions they are and which word each is in."""

    positions: list[int]  # index into the token sequence the phone encoder reads
    labels: list[str]
    word_of: list[int]  # word index of each phone
    words: list[str]  # each word's IPA as written (its phones joined)

    @classmethod
    def from_ipa(cls, tokenizer: Any, ipa: str) -> AlignmentTargets:
        """Phones are the tokenizer's segments other than word boundaries, stress marks and tone letters;
        a tone letter joins the label of the phone before it (tone spans a syllable, not a stretch of its own)."""
        stress = {tokenizer.ids[m] for m in STRESS_MARKS}
        positions, labels, word_of = [], [], []
        word = 0
        for pos, (token_id, seg) in enumerate(zip(tokenizer.encode(ipa), tokenizer.segments(ipa), strict=True)):
            if token_id == tokenizer.word_boundary_id:
                word += 1 if word_of and word_of[-1] == word else 0
            elif seg in TONE_LETTERS and word_of and word_of[-1] == word:
                labels[-1] += seg
            elif token_id not in stress and seg not in TONE_LETTERS:
                positions.append(pos)
                labels.append(seg)
                word_of.append(word)
        words = ["".join(lab for lab, w in zip(labels, word_of) if w == k) for k in range(word + 1)]
        return cls(positions, labels, word_of, [w for w in words if w])

    @property
    def blank_before(self) -> list[bool]:
        """Where silence may sit: before the first phone, between words, after the last phone."""
        n = len(self.labels)
        return [True] + [self.word_of[i] != self.word_of[i - 1] for i in range(1, n)] + [True]


@dataclass
class Alignment:
    """Phone and word intervals in seconds: ``(label, start_s, end_s)`` each, in order."""

    phones: list[tuple[str, float, float]]
    words: list[tuple[str, float, float]]
    duration: float
    score: float = field(default=float("nan"))  # mean log-probability per frame of the decoded path

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (seconds rounded to 0.1 ms)."""
        def rows(intervals: list[tuple[str, float, float]]) -> list[dict[str, Any]]:
            return [{"label": lab, "start": round(s, 4), "end": round(e, 4)} for lab, s, e in intervals]

        return {"duration": round(self.duration, 4), "score": self.score,
                "phones": rows(self.phones), "words": rows(self.words)}

    def save(self, path: str | Path) -> None:
        """Write a ``.TextGrid`` (Praat) or ``.json`` file, by the path's suffix."""
        suffix = Path(path).suffix.lower()
        if suffix == ".json":
            Path(path).write_text(json.dumps(self.to_dict(), ensure_ascii=False, indent=1), encoding="utf-8")
        elif suffix == ".textgrid":
            self.save_textgrid(path)
        else:
            raise ValueError(f"cannot write {path}: use a .TextGrid or .json file name")

    def save_textgrid(self, path: str | Path) -> None:
        """A Praat TextGrid with ``words`` and ``phones`` interval tiers (long format)."""
        from praatio import textgrid

        grid = textgrid.Textgrid(0.0, self.duration)
        for name, intervals in (("words", self.words), ("phones", self.phones)):
            entries = [(s, e, lab) for lab, s, e in intervals if e > s]
            grid.addTier(textgrid.IntervalTier(name, entries, 0.0, self.duration))
        grid.save(str(path), format="long_textgrid", includeBlankSpaces=True)


def intervals(
    targets: AlignmentTargets, starts: list[float], ends: list[float], duration: float, score: float = float("nan")
) -> Alignment:
    """Phone intervals from per-phone times, and word intervals from the first and last phone of each word."""
    phones = [(lab, s, e) for lab, s, e in zip(targets.labels, starts, ends, strict=True)]
    words = []
    for k, word in enumerate(targets.words):
        members = [i for i, w in enumerate(targets.word_of) if w == k]
        words.append((word, starts[members[0]], ends[members[-1]]))
    return Alignment(phones, words, duration, score)


def gold_token_counts(tokenizer: Any, gold: list[tuple[str, float, float]]) -> list[int]:
    """How many of the tokenizer's phones each gold phone spells (espeak's /tʃ/ is two: t and ʃ)."""
    return [len(AlignmentTargets.from_ipa(tokenizer, label).labels) for label, _, _ in gold]


def frame_labels(
    tokenizer: Any, targets: AlignmentTargets, gold: list[tuple[str, float, float]], frames: int, step: float
) -> list[int] | None:
    """Each frame's class under gold timings: 0 silence, n + 1 phone n (a gold phone that spells k phones
    has its frames split evenly among them); None when the gold phones spell other phones than ``targets``."""
    counts = gold_token_counts(tokenizer, gold)
    if sum(counts) != len(targets.labels) or 0 in counts:
        return None
    labels = [0] * frames
    phone = 0
    for (_, start, end), k in zip(gold, counts):
        first = min(round(start / step), frames)
        last = max(min(round(end / step), frames), first)
        for f in range(first, last):
            labels[f] = phone + 1 + (f - first) * k // (last - first)
        phone += k
    return labels


def uniform_times(duration: float, n_phones: int) -> tuple[list[float], list[float]]:
    """The baseline: the clip split into ``n_phones`` equal parts (durations proportional to phone count)."""
    step = duration / max(n_phones, 1)
    return [i * step for i in range(n_phones)], [(i + 1) * step for i in range(n_phones)]


@torch.no_grad()
def monotonic_viterbi(
    scores: Tensor,
    frame_lens: Tensor,
    phone_lens: Tensor,
    blank: Tensor | None = None,
    blank_before: Tensor | None = None,
    min_pause: int = 1,
    min_frames: int = 1,
    durations: tuple[Tensor, Tensor] | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """Best monotonic path of every clip: ``(starts, ends, score)``, on the host.

    ``scores`` [B, T, N]: log-probability of frame t belonging to phone n. ``blank`` [B, T]: of frame t
    being silence (None: no silence, every frame belongs to a phone). ``blank_before`` [B, N + 1] bool:
    where a silence run may go (index n: before phone n; index N_b: after the last phone); default
    everywhere. A silence between two phones lasts at least ``min_pause`` frames or is absent (a pause,
    not a frame of doubt between words); at the clip's edges any length goes. Every phone lasts at least
    ``min_frames`` frames. ``durations``: the (mean, std > 0) [B, N] of each phone's log duration in frames,
    a log-normal prior: phone n lasting d frames adds −½((ln d − mean) / std)² to the path's score.
    Returns frame indices ``starts``/``ends`` [B, N] (phone n covers frames ``starts ≤ t < ends``; -1 past
    N_b) and the path's total score [B] (-inf where T_b < N_b × min_frames: no path).
    On the CPU each clip runs as one compiled loop (``alignment_kernels``: torch's per-operation cost
    dominates this programme there); elsewhere the forward pass runs on the scores' device as below
    and the pointer chase back on the host in numpy.
    """
    if scores.device.type == "cpu":
        starts, ends, total = alignment_kernels.viterbi(
            _host_array(scores),
            frame_lens.cpu().numpy(),
            phone_lens.cpu().numpy(),
            None if blank is None else _host_array(blank),
            None if blank_before is None else blank_before.cpu().numpy(),
            min_pause,
            min_frames,
            None if durations is None else tuple(_host_array(x).astype(np.float64) for x in durations),
        )
        return torch.from_numpy(starts), torch.from_numpy(ends), torch.from_numpy(total).to(scores.dtype)
    return _viterbi_torch(scores, frame_lens, phone_lens, blank, blank_before, min_pause, min_frames, durations)


def _host_array(x: Tensor) -> np.ndarray:
    """A float32/float64 view for the compiled kernel (it sums in float64): no copy, no torch operation."""
    x = x.detach()
    return (x if x.dtype in (torch.float32, torch.float64) else x.float()).contiguous().numpy()


def _viterbi_torch(
    scores: Tensor,
    frame_lens: Tensor,
    phone_lens: Tensor,
    blank: Tensor | None,
    blank_before: Tensor | None,
    min_pause: int,
    min_frames: int = 1,
    durations: tuple[Tensor, Tensor] | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """``monotonic_viterbi`` as vectorised torch operations over the batch, on the scores' device."""
    batch, frames, phones = scores.shape
    device = scores.device
    finite = scores.double().clamp(min=alignment_kernels.MASKED)  # padded phones come as −inf: keep their sums finite
    # cum[n, b, k]: phone n's score summed over frames < k, for the T + 1 positions k between frames
    cum = F.pad(finite.permute(2, 0, 1).contiguous().cumsum(-1), (1, 0))
    with_blank = blank is not None
    if with_blank:
        cum_blank = F.pad(blank.double().cumsum(-1), (1, 0))
        if blank_before is None:
            blank_before = torch.ones(batch, phones + 1, dtype=torch.bool, device=device)
        done = torch.where(blank_before[:, :1], cum_blank, NEG_INF)
    else:
        done = torch.full_like(cum[0], NEG_INF)
    done[:, 0] = 0.0
    rows = torch.arange(batch, device=device)
    total = torch.where(phone_lens == 0, done[rows, frame_lens], NEG_INF)
    ending = torch.empty_like(cum)  # ending[n, b, k]: best score with phone n ending exactly at position k
    ending[:, :, 0] = NEG_INF
    finished = torch.empty_like(cum) if with_blank else ending  # ... or followed by silence up to k
    best = torch.empty_like(done)
    starts_at = torch.empty(phones, batch, frames + 1, dtype=torch.long, device=device)
    ends_at = torch.empty_like(starts_at) if with_blank else None
    shift = min(min_frames - 1, frames + 1)
    if durations is not None:  # prior[b, n, end, start]: phone n over frames start … end - 1
        lasting = torch.arange(frames + 1, device=device)
        lasting = lasting[:, None] - lasting[None, :]
        log_frames = lasting.clamp(min=1).double().log()
        mean, std = (x.double()[..., None, None] for x in durations)
        too_short = lasting < min_frames
    for n in range(phones):
        if durations is not None:  # every start for every end: the prior depends on both
            prior = (-0.5 * ((log_frames - mean[:, n]) / std[:, n]) ** 2).masked_fill(too_short, NEG_INF)
            begin, arg = _last_max(prior + (done - cum[n])[:, None, :])
            ending[n, :, 1:] = cum[n, :, 1:] + begin[:, 1:]
            starts_at[n, :, :-1] = arg[:, 1:]
            starts_at[n, :, -1] = 0
        else:
            torch.cummax(done - cum[n], dim=-1, out=(best, starts_at[n]))  # best start of phone n at a position ≤ k
            begin = best
            if shift:  # ... ≤ k + 1 - min_frames, for phone n ending at k + 1
                begin = F.pad(best[:, : frames + 1 - shift], (shift, 0), value=NEG_INF)
                starts_at[n] = F.pad(starts_at[n, :, : frames + 1 - shift], (shift, 0))
            torch.add(cum[n, :, 1:], begin[:, :-1], out=ending[n, :, 1:])
        if with_blank:
            after, after_arg = torch.cummax(ending[n] - cum_blank, dim=-1)
            after, after_arg = _pauses_at_least(after, after_arg, ending[n], cum_blank, min_pause, n + 1 < phone_lens)
            allowed = blank_before[:, n + 1, None]
            finished[n] = torch.where(allowed, after + cum_blank, ending[n])
            ends_at[n] = torch.where(allowed, after_arg, -1)
        done = finished[n]
    last = (phone_lens - 1).clamp(min=0)
    total = torch.where(phone_lens > 0, finished[last, rows, frame_lens], total).cpu()
    starts, ends = _backtrack(
        starts_at.cpu().numpy(),
        ends_at.cpu().numpy() if with_blank else None,
        frame_lens.cpu().numpy(),
        phone_lens.cpu().numpy(),
    )
    return torch.from_numpy(starts), torch.from_numpy(ends), total.to(scores.dtype)


def _last_max(values: Tensor) -> tuple[Tensor, Tensor]:
    """Maximum over the last axis and the last index reaching it (the compiled kernel's tie-breaking)."""
    last = values.shape[-1] - 1
    best, arg = values.flip(-1).max(dim=-1)
    return best, last - arg


def _pauses_at_least(
    after: Tensor, after_arg: Tensor, ending: Tensor, cum_blank: Tensor, min_pause: int, inner: Tensor
) -> tuple[Tensor, Tensor]:
    """The best phone end before a silence reaching each position, where the silence between phones
    (rows ``inner``) is either empty or ``min_pause`` frames long at least."""
    if min_pause <= 1:
        return after, after_arg
    shift = min(min_pause, after.shape[-1])
    earlier = F.pad(after[:, :-shift], (shift, 0), value=NEG_INF)  # best end at least min_pause back
    earlier_arg = F.pad(after_arg[:, :-shift], (shift, 0))
    here = torch.arange(after.shape[-1], device=after.device).expand_as(after_arg)
    pause = earlier > ending - cum_blank  # ties: no pause
    best = torch.where(pause, earlier, ending - cum_blank)
    best_arg = torch.where(pause, earlier_arg, here)
    return torch.where(inner[:, None], best, after), torch.where(inner[:, None], best_arg, after_arg)


def _backtrack(
    starts_at: np.ndarray, ends_at: np.ndarray | None, frame_lens: np.ndarray, phone_lens: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Follow the pointers from each clip's end back to its start: phone n ends at k (after any silence
    up to the current position) and starts at ``starts_at[n, b, k - 1]``."""
    phones, batch = starts_at.shape[:2]
    rows = np.arange(batch)
    starts = np.full((batch, phones), -1, dtype=np.int64)
    ends = starts.copy()
    k = frame_lens.astype(np.int64)
    for n in reversed(range(phones)):
        active = n < phone_lens
        end = k if ends_at is None else np.where(ends_at[n, rows, k] >= 0, ends_at[n, rows, k], k)
        start = starts_at[n, rows, np.maximum(end - 1, 0)]
        ends[:, n] = np.where(active, end, -1)
        starts[:, n] = np.where(active, start, -1)
        k = np.where(active, start, k)
    return starts, ends

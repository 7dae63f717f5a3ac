"""Compiled CPU kernels of the aligner's dynamic programmes: the monotonic Viterbi decode and the
Forward-Sum loss (CTC over the targets 1..N, softmax included).

Both programmes are a few hundred tiny steps per clip (one per phone or per frame). On a CPU, torch's
cost per operation then dominates: the batched torch Viterbi over 32 phrase clips was no faster than
librosa's compiled DTW run clip by clip, and masking, softmax and ATen's CTC over the padded batch took
~9 ms for ~0.3 M cells. Here each clip is one compiled loop (numba) over its own frames and phones,
clip after clip: worker threads beside torch's OpenMP threads were slower on two cores.
``make bench ARGS=alignment`` measures both against the reference's loops (docs/BENCHMARKS.md); on other
devices the torch paths (``phonclip.alignment._viterbi_torch``, ``F.ctc_loss``) stay in use.
"""

from __future__ import annotations

import numba
import numpy as np
import torch
import torch.nn.functional as F

NEG_INF = -np.inf
MASKED = -1e30  # stands in for −inf where a sum or ATen's CTC gradient would turn it into NaN


@numba.njit(cache=True, nogil=True)
def _viterbi_clip(scores, blank, allowed, with_blank, min_pause, min_frames, frames, phones, starts, ends,
                  with_prior, prior_mean, prior_std):
    """One clip of ``monotonic_viterbi`` (same recursion, same tie-breaking: the last maximum wins).
    Writes ``starts``/``ends`` [N] and returns the path's score. With ``with_prior``, phone n lasting d
    frames also scores −½((ln d − ``prior_mean``[n]) / ``prior_std``[n])²: each end then searches its
    starts instead of keeping a running maximum, latest first, and stops where the prior (falling past
    d = e^mean) and the best start score so far rule out every earlier one: exact, up to O(T²) per phone."""
    cum_blank = np.zeros(frames + 1)
    for k in range(frames):
        cum_blank[k + 1] = cum_blank[k] + blank[k]
    done = np.empty(frames + 1)
    for k in range(frames + 1):
        done[k] = cum_blank[k] if with_blank and allowed[0] else NEG_INF
    done[0] = 0.0
    if phones == 0:
        return done[frames]
    starts_at = np.empty((phones, frames + 1), dtype=np.int32)
    ends_at = np.empty((phones, frames + 1), dtype=np.int32)
    cum = np.zeros(frames + 1)
    ending = np.empty(frames + 1)
    after = np.empty(frames + 1)
    after_arg = np.empty(frames + 1, dtype=np.int32)
    begin = np.empty(frames + 1)
    begin_arg = np.empty(frames + 1, dtype=np.int32)
    shift = min(min_pause, frames + 1)
    size = frames + 1 if with_prior else 1  # the prior's work arrays
    log_frames = np.log(np.maximum(np.arange(size), 1.0))
    lasting = np.empty(size)
    begin_max = np.empty(size)
    for n in range(phones):
        for k in range(frames):  # phone n's score summed over frames < k + 1
            cum[k + 1] = cum[k] + scores[k, n]
        ending[0] = NEG_INF
        if with_prior:
            for d in range(1, frames + 1):  # the prior of phone n lasting d frames
                z = (log_frames[d] - prior_mean[n]) / prior_std[n]
                lasting[d] = -0.5 * z * z
            peak = np.exp(prior_mean[n])  # the prior falls for longer phones: d ≥ peak
            for k in range(frames + 1):
                begin[k] = done[k] - cum[k]
                begin_max[k] = max(begin[k], begin_max[k - 1]) if k > 0 else begin[k]
            for end in range(1, frames + 1):  # phone n over frames start … end - 1, start ≤ end - min_frames
                best, arg = NEG_INF, 0
                for start in range(end - min_frames, -1, -1):  # latest first: on ties the latest start wins
                    value = begin[start] + lasting[end - start]
                    if value > best:
                        best, arg = value, start
                    elif end - start >= peak and begin_max[start] + lasting[end - start] < best:
                        break  # no earlier start can win: its begin is ≤ begin_max, its prior lower
                ending[end] = cum[end] + best
                starts_at[n, end - 1] = arg
        else:
            best, arg = NEG_INF, 0
            for k in range(frames + 1):  # phone n ending at k + 1 started at the best position ≤ k + 1 - min_frames
                value = done[k] - cum[k]
                if value >= best:
                    best, arg = value, k
                begin[k], begin_arg[k] = best, arg  # the best start at a position ≤ k
                latest = k + 1 - min_frames
                starts_at[n, k] = begin_arg[latest] if latest >= 0 else 0
                if k < frames:
                    ending[k + 1] = cum[k + 1] + begin[latest] if latest >= 0 else NEG_INF
        if not (with_blank and allowed[n + 1]):
            done[:] = ending
            continue
        best, arg = NEG_INF, 0
        for k in range(frames + 1):  # the best phone end before a silence reaching k
            value = ending[k] - cum_blank[k]
            if value >= best:
                best, arg = value, k
            after[k], after_arg[k] = best, arg
        if min_pause > 1 and n + 1 < phones:  # an inner silence is empty or min_pause frames long
            for k in range(frames, -1, -1):
                earlier = after[k - shift] if k >= shift else NEG_INF
                earlier_arg = after_arg[k - shift] if k >= shift else 0
                here = ending[k] - cum_blank[k]
                if earlier > here:
                    after[k], after_arg[k] = earlier, earlier_arg
                else:
                    after[k], after_arg[k] = here, k
        for k in range(frames + 1):
            done[k] = after[k] + cum_blank[k]
            ends_at[n, k] = after_arg[k]
    k = frames
    for n in range(phones - 1, -1, -1):
        end = ends_at[n, k] if with_blank and allowed[n + 1] else k
        start = starts_at[n, max(end - 1, 0)]
        starts[n], ends[n] = start, end
        k = start
    return done[frames]


@numba.njit(cache=True, nogil=True)
def _viterbi_batch(scores, blank, allowed, with_blank, min_pause, min_frames, frame_lens, phone_lens, starts, ends,
                   total, with_prior, prior_mean, prior_std):
    """``_viterbi_clip`` over the batch in one compiled call (a call from Python per clip cost more than
    a plain clip's decode)."""
    for b in range(scores.shape[0]):
        total[b] = _viterbi_clip(scores[b], blank[b], allowed[b], with_blank, min_pause, min_frames, frame_lens[b],
                                 phone_lens[b], starts[b], ends[b], with_prior, prior_mean[b], prior_std[b])


def viterbi(
    scores: np.ndarray,
    frame_lens: np.ndarray,
    phone_lens: np.ndarray,
    blank: np.ndarray | None,
    blank_before: np.ndarray | None,
    min_pause: int,
    min_frames: int = 1,
    prior: tuple[np.ndarray, np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``monotonic_viterbi`` on the host: ``(starts, ends, score)`` from float64 arrays, clip after clip."""
    batch, frames, phones = scores.shape
    with_blank = blank is not None
    blank = np.zeros((batch, frames)) if blank is None else blank
    allowed = np.ones((batch, phones + 1), dtype=np.bool_) if blank_before is None else blank_before
    starts = np.full((batch, phones), -1, dtype=np.int64)
    ends = starts.copy()
    total = np.empty(batch)
    with_prior = prior is not None
    mean, std = prior if with_prior else (np.zeros((batch, 1)), np.ones((batch, 1)))
    _viterbi_batch(scores, blank, allowed, with_blank, min_pause, min_frames, frame_lens.astype(np.int64),
                   phone_lens.astype(np.int64), starts, ends, total, with_prior, mean, std)
    return starts, ends, total


@numba.njit(cache=True, nogil=True)
def _forward_sum_clip(scores, blank, frames, phones, scale, grad_scores, grad_blank):
    """One clip's Forward-Sum: the CTC negative log-likelihood of the targets 1..N under each frame's
    softmax over [``blank`` [T], ``scores`` [T, N]], with ``scale`` × its gradient with respect to those
    logits (softmax − γ, γ each frame's posterior over classes) written into ``grad_scores``/``grad_blank``.

    Forward-backward in probability space over the states blank 0, phone 1, blank 1, …, phone N, blank N
    (kept as two arrays: blanks and phones), each frame's α normalised to sum 1 and β to max 1 (their
    scales cancel in γ = αβ / Σαβ), α only over the band of states reachable from the start that can still
    reach the end. Returns inf where T < N (no path) and NaN where a frame's Σαβ fell below 1e-280: the
    past and the future then disagree by ~645 nats and states lost to underflow could matter, so the
    caller recomputes that clip in log space. Arithmetic on the logits keeps their precision (float32
    exps for float32 logits); the recursions run in float64.
    """
    if frames < phones or frames == 0:
        return np.inf
    states = 2 * phones + 1
    y_blank = np.empty(frames)
    y_phone = np.empty((frames, max(phones, 1)))
    for t in range(frames):  # the softmax over the clip's own classes: padded phones never enter
        top = blank[t]
        for j in range(phones):
            top = max(top, scores[t, j])
        y_blank[t] = np.exp(blank[t] - top)
        total = y_blank[t]
        for j in range(phones):
            y_phone[t, j] = np.exp(scores[t, j] - top)
            total += y_phone[t, j]
        y_blank[t] /= total
        for j in range(phones):
            y_phone[t, j] /= total
    a_blank = np.zeros((frames, phones + 1))
    a_phone = np.zeros((frames, max(phones, 1)))
    log_likelihood = 0.0
    for t in range(frames):
        lo, hi = max(0, states - 2 * (frames - t)), min(states - 1, 2 * t + 1)
        blank_lo, blank_hi = (lo + 1) // 2, min(hi // 2, phones)  # blank j is state 2j
        phone_lo, phone_hi = lo // 2, min((hi - 1) // 2, phones - 1)  # phone j + 1 is state 2j + 1
        if t == 0:
            if blank_lo == 0:
                a_blank[0, 0] = y_blank[0]
            if phones > 0:
                a_phone[0, 0] = y_phone[0, 0]
        else:
            prev_blank, prev_phone, now_blank, now_phone = a_blank[t - 1], a_phone[t - 1], a_blank[t], a_phone[t]
            if blank_lo == 0:
                now_blank[0] = prev_blank[0] * y_blank[t]
            for j in range(max(blank_lo, 1), blank_hi + 1):  # stay, or leave phone j
                now_blank[j] = (prev_blank[j] + prev_phone[j - 1]) * y_blank[t]
            if phone_lo == 0 and phone_hi >= 0:
                now_phone[0] = (prev_phone[0] + prev_blank[0]) * y_phone[t, 0]
            for j in range(max(phone_lo, 1), phone_hi + 1):  # stay, leave the blank before, or skip it
                now_phone[j] = (prev_phone[j] + prev_blank[j] + prev_phone[j - 1]) * y_phone[t, j]
        total = a_blank[t, blank_lo : blank_hi + 1].sum() + a_phone[t, phone_lo : phone_hi + 1].sum()
        if total == 0.0:
            return np.nan
        a_blank[t, blank_lo : blank_hi + 1] /= total
        a_phone[t, phone_lo : phone_hi + 1] /= total
        log_likelihood += np.log(total)
    end = a_blank[frames - 1, phones] + (a_phone[frames - 1, phones - 1] if phones > 0 else 0.0)
    b_blank = np.zeros(phones + 1)  # β_t: the frames after t, given the state at t
    b_phone = np.zeros(max(phones, 1))
    b_blank[phones] = 1.0
    if phones > 0:
        b_phone[phones - 1] = 1.0
    f_blank, f_phone = np.empty(phones + 1), np.empty(max(phones, 1))
    for t in range(frames - 1, -1, -1):
        if t < frames - 1:
            for j in range(phones + 1):
                f_blank[j] = b_blank[j] * y_blank[t + 1]
            for j in range(phones):
                f_phone[j] = b_phone[j] * y_phone[t + 1, j]
            for j in range(phones):  # stay, or enter phone j + 1
                b_blank[j] = f_blank[j] + f_phone[j]
            b_blank[phones] = f_blank[phones]
            for j in range(phones - 1):  # stay, enter the blank after, or skip it
                b_phone[j] = f_phone[j] + f_blank[j + 1] + f_phone[j + 1]
            if phones > 0:
                b_phone[phones - 1] = f_phone[phones - 1] + f_blank[phones]
            peak = max(b_blank.max(), b_phone[:phones].max() if phones > 0 else 0.0)
            if peak == 0.0:
                return np.nan
            b_blank /= peak
            b_phone /= peak
        blank_mass = 0.0
        for j in range(phones + 1):
            blank_mass += a_blank[t, j] * b_blank[j]
        z = blank_mass
        for j in range(phones):
            z += a_phone[t, j] * b_phone[j]
        if z < 1e-280:
            return np.nan
        grad_blank[t] = scale * (y_blank[t] - blank_mass / z)
        for j in range(phones):
            grad_scores[t, j] = scale * (y_phone[t, j] - a_phone[t, j] * b_phone[j] / z)
    return -(log_likelihood + np.log(end))


@numba.njit(cache=True, nogil=True)
def _forward_sum_batch(scores, blank, frame_lens, phone_lens, scales, grad_scores, grad_blank, nll):
    """``_forward_sum_clip`` over the batch in one compiled call."""
    for b in range(scores.shape[0]):
        nll[b] = _forward_sum_clip(scores[b], blank[b], frame_lens[b], phone_lens[b], scales[b], grad_scores[b],
                                   grad_blank[b])


def forward_sum(
    scores: torch.Tensor, blank: torch.Tensor, frame_lens: torch.Tensor, phone_lens: torch.Tensor, scales: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-clip Forward-Sum negative log-likelihoods [B] (inf without a path) of the logits ``scores``
    [B, T, N] and ``blank`` [B, T], and the gradients of Σ_b ``scales``_b × nll_b with respect to both."""
    grad_scores, grad_blank = torch.zeros_like(scores), torch.zeros_like(blank)
    s, bl = scores.detach().contiguous().numpy(), blank.detach().contiguous().numpy()
    gs, gb = grad_scores.numpy(), grad_blank.numpy()
    frames, phones, weight = frame_lens.cpu().numpy(), phone_lens.cpu().numpy(), scales.double().numpy()
    nll = np.empty(len(s))
    _forward_sum_batch(s, bl, frames.astype(np.int64), phones.astype(np.int64), weight, gs, gb, nll)
    for b in np.flatnonzero(np.isnan(nll)):
        nll[b], grad_scores[b], grad_blank[b] = _log_space_clip(scores[b].detach(), blank[b].detach(),
                                                                int(frames[b]), int(phones[b]), float(weight[b]))
    return torch.from_numpy(nll), grad_scores, grad_blank


def _log_space_clip(
    scores: torch.Tensor, blank: torch.Tensor, frames: int, phones: int, scale: float
) -> tuple[float, torch.Tensor, torch.Tensor]:
    """The same for one clip through ATen's log-space CTC (the fallback where probabilities underflow)."""
    with torch.enable_grad():  # called from inside an autograd Function's forward
        s = scores[:frames, :phones].double().requires_grad_(True)
        bl = blank[:frames].double().requires_grad_(True)
        log_probs = torch.cat([bl[:, None], s], dim=-1).log_softmax(dim=-1)
        nll = F.ctc_loss(log_probs[:, None], torch.arange(1, phones + 1)[None], torch.tensor([frames]),
                         torch.tensor([phones]), reduction="sum")
        grad_s, grad_bl = torch.autograd.grad(nll, (s, bl))
    full_s, full_bl = torch.zeros_like(scores), torch.zeros_like(blank)
    full_s[:frames, :phones], full_bl[:frames] = scale * grad_s, scale * grad_bl
    return float(nll), full_s, full_bl

"""Forced-alignment building blocks: Forward-Sum loss, batched Viterbi, alignment targets, boundary metrics, TextGrids."""

import itertools
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from praatio import textgrid

from phonclip import alignment_kernels
from phonclip.alignment import (
    Alignment,
    AlignmentTargets,
    _viterbi_torch,
    frame_labels,
    intervals,
    monotonic_viterbi,
    uniform_times,
)
from phonclip.benchmarks.alignment import realistic_batch, reference_decode, reference_forward_sum
from phonclip.eval.align_suite import merge_to_gold
from phonclip.eval.boundaries import BoundaryScorer, Counts, distinct
from phonclip.ipa import IpaTokenizer
from phonclip.losses import ForwardSumLoss


def _brute_force(scores, blank, allowed, min_pause=1, min_frames=1, durations=None):
    """Best score over every frame labelling that is a valid monotonic alignment (tiny sizes only), with
    ``durations`` = (mean, std) of each phone's log frame count as a log-normal prior."""
    frames, phones = scores.shape
    best = -math.inf
    for labels in itertools.product(range(-1 if blank is not None else 0, phones), repeat=frames):
        last, total, ok, pause = -1, 0.0, True, 0  # last: the phone of the latest phone frame
        for t, lab in enumerate(labels):
            if lab == -1:  # silence, where allowed before the next phone
                ok, total, pause = bool(allowed[last + 1]), total + float(blank[t]), pause + 1
            elif (lab == last and labels[t - 1] == lab) or lab == last + 1:
                ok = last == -1 or pause == 0 or pause >= min_pause  # a pause between phones is long
                last, total, pause = lab, total + float(scores[t, lab]), 0
            else:
                ok = False
            if not ok:
                break
        if ok and last == phones - 1 and all(labels.count(n) >= min_frames for n in range(phones)):
            if durations is not None:
                mean, std = durations
                total -= sum(0.5 * ((math.log(labels.count(n)) - float(mean[n])) / float(std[n])) ** 2
                             for n in range(phones))
            best = max(best, total)
    return best


VITERBIS = {"compiled": monotonic_viterbi, "torch": _viterbi_torch}  # the CPU kernel and the other devices' path


@pytest.mark.parametrize("impl", VITERBIS)
@pytest.mark.parametrize(
    ("with_blank", "min_pause", "min_frames", "with_prior"),
    [(False, 1, 1, False), (True, 1, 1, False), (True, 2, 1, False), (True, 3, 1, False), (False, 1, 2, False),
     (True, 2, 3, False), (False, 1, 1, True), (True, 2, 1, True), (True, 1, 2, True)],
)
def test_viterbi_finds_the_best_monotonic_path(impl: str, with_blank: bool, min_pause: int, min_frames: int,
                                               with_prior: bool) -> None:
    g = torch.Generator().manual_seed(1)
    for _ in range(60):
        frames, phones = int(torch.randint(1, 7, (1,), generator=g)), int(torch.randint(1, 4, (1,), generator=g))
        scores = torch.randn(frames, phones, generator=g, dtype=torch.float64)
        blank = torch.randn(frames, generator=g, dtype=torch.float64) if with_blank else None
        allowed = torch.randint(0, 2, (phones + 1,), generator=g).bool()
        mean = torch.rand(phones, generator=g, dtype=torch.float64) * 1.5  # log frames: 1 to 4.5 frames
        std = 0.2 + torch.rand(phones, generator=g, dtype=torch.float64)
        prior = (mean, std) if with_prior else None
        expected = _brute_force(scores, blank, allowed.tolist(), min_pause, min_frames, prior)
        starts, ends, total = VITERBIS[impl](
            scores[None], torch.tensor([frames]), torch.tensor([phones]), None if blank is None else blank[None],
            None if blank is None else allowed[None], min_pause, min_frames,
            (mean[None], std[None]) if with_prior else None,
        )
        assert float(total[0]) == pytest.approx(expected, abs=1e-9)
        if math.isfinite(expected):
            path = sum(float(scores[s:e, n].sum()) for n, (s, e) in enumerate(zip(starts[0], ends[0])))
            if blank is not None:
                covered = {t for s, e in zip(starts[0].tolist(), ends[0].tolist()) for t in range(s, e)}
                path += sum(float(blank[t]) for t in range(frames) if t not in covered)
            if with_prior:
                path -= float((0.5 * (((ends[0] - starts[0]).double().log() - mean) / std) ** 2).sum())
            assert path == pytest.approx(expected, abs=1e-9)
            assert (ends[0] - starts[0] >= min_frames).all() and (starts[0][1:] >= ends[0][:-1]).all()
            gaps = (starts[0][1:] - ends[0][:-1]).tolist()
            assert all(gap == 0 or gap >= min_pause for gap in gaps)


def test_a_duration_prior_moves_a_boundary_the_scores_leave_open() -> None:
    scores = torch.zeros(1, 10, 2)  # two look-alike phones: every split scores the same
    frames, phones = torch.tensor([10]), torch.tensor([2])
    for first in (2.0, 7.0):
        mean = torch.tensor([[math.log(first), math.log(10 - first)]])
        starts, ends, _ = monotonic_viterbi(scores, frames, phones, durations=(mean, torch.full((1, 2), 0.3)))
        assert ends[0].tolist() == [int(first), 10] and starts[0].tolist() == [0, int(first)]


@pytest.mark.parametrize("impl", VITERBIS)
@pytest.mark.parametrize(("min_pause", "min_frames"), [(1, 1), (4, 1), (4, 2)])
def test_viterbi_batched_equals_one_clip_at_a_time(impl: str, min_pause: int, min_frames: int) -> None:
    scores, frames, phones = realistic_batch(seed=3, batch=6)
    blank = torch.randn(scores.shape[:2])
    allowed = torch.rand(6, scores.shape[2] + 1) > 0.5
    starts, ends, total = VITERBIS[impl](scores, frames, phones, blank, allowed, min_pause, min_frames)
    for b in range(6):
        t, n = int(frames[b]), int(phones[b])
        s1, e1, tot1 = VITERBIS[impl](scores[b : b + 1, :t, :n], frames[b : b + 1], phones[b : b + 1],
                                         blank[b : b + 1, :t], allowed[b : b + 1, : n + 1], min_pause, min_frames)
        assert torch.equal(starts[b, :n], s1[0]) and torch.equal(ends[b, :n], e1[0])
        assert float(total[b]) == pytest.approx(float(tot1[0]), rel=1e-6)
        assert (starts[b, n:] == -1).all()


@pytest.mark.parametrize(("min_pause", "min_frames"), [(1, 1), (3, 1), (3, 2)])
def test_compiled_viterbi_decodes_as_the_torch_one(min_pause: int, min_frames: int) -> None:
    for seed in range(4):
        scores, frames, phones = realistic_batch(seed=seed, batch=12)
        frames[0] = phones[0] - 1  # no path
        blank = torch.randn(scores.shape[:2])
        allowed = torch.rand(12, scores.shape[2] + 1) > 0.3
        durations = (torch.randn(12, scores.shape[2]) + 2.0, 0.3 + torch.rand(12, scores.shape[2]))
        for args in [(None, None, 1, min_frames), (blank, allowed, min_pause, min_frames), (blank, None, min_pause, 1),
                     (blank, allowed, min_pause, min_frames, durations)]:
            compiled, torch_path = monotonic_viterbi(scores, frames, phones, *args), _viterbi_torch(scores, frames, phones, *args)
            assert torch.equal(compiled[0][1:], torch_path[0][1:]) and torch.equal(compiled[1][1:], torch_path[1][1:])
            assert torch.allclose(compiled[2], torch_path[2]) and compiled[2][0] == -math.inf


def test_viterbi_matches_librosa_dtw_as_the_reference_decodes() -> None:
    pytest.importorskip("librosa")
    scores, frames, phones = realistic_batch(seed=5, batch=8)
    log_probs = scores.log_softmax(-1)
    starts, ends, _ = monotonic_viterbi(log_probs, frames, phones)
    for b in range(8):
        clip = log_probs[b, : frames[b], : phones[b]].double().numpy()
        assert starts[b, : phones[b]].tolist() == reference_decode(clip)
        assert int(ends[b, phones[b] - 1]) == int(frames[b])  # no silence: the last phone runs to the end


def test_viterbi_reports_clips_too_short_for_their_phones() -> None:
    _, _, total = monotonic_viterbi(torch.zeros(2, 5, 4), torch.tensor([3, 5]), torch.tensor([4, 4]))
    assert total[0] == -math.inf and math.isfinite(float(total[1]))
    _, _, total = monotonic_viterbi(torch.zeros(2, 6, 3), torch.tensor([5, 6]), torch.tensor([3, 3]), min_frames=2)
    assert total[0] == -math.inf and math.isfinite(float(total[1]))


def test_forward_sum_equals_the_reference_loop_in_loss_and_gradients() -> None:
    scores, frames, phones = realistic_batch(seed=7, batch=12)
    ours = scores.clone().requires_grad_(True)
    loss = ForwardSumLoss(blank_logprob=-1.0)(ours, frames, phones)
    loss.backward()
    ref = scores.clone().requires_grad_(True)
    expected = reference_forward_sum(ref[:, None], phones, frames)
    expected.backward()
    assert float(loss) == pytest.approx(float(expected), abs=1e-5)
    assert torch.allclose(ours.grad, ref.grad, atol=1e-5)


def _aten_forward_sum(scores, blank, frames, phones):
    """Per-clip CTC loss under the softmax over [blank, phones 1..N_b] and its gradients with respect to
    ``scores`` and ``blank``, by ATen in float64."""
    s, bl = scores.double().requires_grad_(True), blank.double().requires_grad_(True)
    batch, _, n = s.shape
    padded = torch.arange(n)[None, None, :] >= phones[:, None, None]
    log_probs = torch.cat([bl[..., None], s.masked_fill(padded, -math.inf)], dim=-1).log_softmax(-1)
    targets = torch.arange(1, n + 1).expand(batch, n)
    nll = F.ctc_loss(log_probs.clamp(min=-1e30).transpose(0, 1), targets, frames, phones, reduction="none",
                     zero_infinity=True)
    return nll.detach(), *torch.autograd.grad(nll.sum(), (s, bl))


def _scaled_batch(scale: float, seed: int = 11):
    scores, frames, phones = realistic_batch(seed=seed, batch=10)
    frames[0], frames[1] = phones[0] - 1, phones[1]  # no path; exactly one frame per phone
    blank = torch.randn(scores.shape[:2], generator=torch.Generator().manual_seed(0))
    return scores.double() * scale, blank.double() * scale, frames, phones


@pytest.mark.parametrize("scale", [1.0, 10.0, 1000.0])
def test_compiled_forward_sum_equals_aten_ctc_in_float64(scale: float) -> None:
    scores, blank, frames, phones = _scaled_batch(scale)
    weights = torch.rand(10, dtype=torch.float64)
    nll, grad_scores, grad_blank = alignment_kernels.forward_sum(scores, blank, frames, phones, weights)
    expected, expected_scores, expected_blank = _aten_forward_sum(scores, blank, frames, phones)
    assert nll[0] == math.inf and float(grad_scores[0].abs().max()) == 0.0
    assert torch.allclose(nll[1:], expected[1:], rtol=1e-10, atol=1e-8)
    assert torch.allclose(grad_scores, expected_scores * weights[:, None, None], atol=1e-9)
    assert torch.allclose(grad_blank, expected_blank * weights[:, None], atol=1e-9)


def test_forward_sum_recomputes_in_log_space_where_probabilities_underflow() -> None:
    scores, blank, frames, phones = _scaled_batch(1000.0, seed=2)
    direct = [alignment_kernels._forward_sum_clip(scores[b].numpy(), blank[b].numpy(), int(frames[b]), int(phones[b]),
                                                  1.0, np.zeros(scores.shape[1:]), np.zeros(scores.shape[1]))
              for b in range(2, 10)]
    assert any(math.isnan(v) for v in direct)  # at this scale some clip's past and future disagree
    nll, grad_scores, grad_blank = alignment_kernels.forward_sum(scores, blank, frames, phones, torch.ones(10))
    expected, expected_scores, expected_blank = _aten_forward_sum(scores, blank, frames, phones)
    assert torch.allclose(nll[1:], expected[1:], rtol=1e-10)
    assert torch.allclose(grad_scores, expected_scores, atol=1e-9) and torch.allclose(grad_blank, expected_blank, atol=1e-9)


def test_forward_sum_prefers_the_diagonal_and_takes_a_learned_blank() -> None:
    eye = torch.eye(4).repeat_interleave(3, dim=0)[None] * 10  # 12 frames, 3 per phone
    loss = ForwardSumLoss()
    lens = (torch.tensor([12]), torch.tensor([4]))
    assert loss(eye, *lens) < loss(eye.flip(-1), *lens)
    silent = loss(eye, *lens, blank=torch.full((1, 12), 50.0))
    assert silent > loss(eye, *lens)  # a blank that swallows every frame leaves no mass for the phones
    with pytest.raises(ValueError, match="blank must be"):
        loss(eye, *lens, blank=torch.zeros(1, 11))


def test_alignment_targets_skip_word_breaks_stress_and_tone_letters() -> None:
    tok = IpaTokenizer()
    t = AlignmentTargets.from_ipa(tok, "ˈɡato  t̪˧˥a˨")
    assert t.labels == ["ɡ", "a", "t", "o", "t̪˧˥", "a˨"]
    assert t.word_of == [0, 0, 0, 0, 1, 1]
    assert t.words == ["ɡato", "t̪˧˥a˨"]
    assert [tok.segments("ˈɡato  t̪˧˥a˨")[p] for p in t.positions] == ["ɡ", "a", "t", "o", "t̪", "a"]
    assert t.blank_before == [True, False, False, False, True, False, True]


def test_intervals_make_words_from_their_phones() -> None:
    t = AlignmentTargets.from_ipa(IpaTokenizer(), "ab cd")
    a = intervals(t, [0.0, 0.1, 0.3, 0.4], [0.1, 0.2, 0.4, 0.5], 0.6)
    assert a.words == [("ab", 0.0, 0.2), ("cd", 0.3, 0.5)]
    assert uniform_times(1.0, 4) == ([0.0, 0.25, 0.5, 0.75], [0.25, 0.5, 0.75, 1.0])


def test_textgrid_round_trip_keeps_the_intervals(tmp_path) -> None:
    alignment = Alignment(phones=[("ɡ", 0.05, 0.1), ("a", 0.1, 0.22), ("t", 0.22, 0.3)],
                          words=[("ɡat", 0.05, 0.3)], duration=0.4)
    path = tmp_path / "rec.TextGrid"
    alignment.save_textgrid(str(path))
    grid = textgrid.openTextgrid(str(path), includeEmptyIntervals=False)
    assert grid.tierNames == ("words", "phones")
    read = [(e.label, e.start, e.end) for e in grid.getTier("phones").entries]
    assert read == [(lab, pytest.approx(s), pytest.approx(e)) for lab, s, e in alignment.phones]
    assert [(e.label, e.start, e.end) for e in grid.getTier("words").entries] == [("ɡat", 0.05, 0.3)]
    assert grid.maxTimestamp == pytest.approx(0.4)


def test_boundary_counts_and_r_value() -> None:
    assert distinct([0.3, 0.1, 0.1, 0.0, 0.5]).tolist() == [0.0, 0.1, 0.3, 0.5]
    perfect = Counts(10, 10, 10, 10).scores()
    assert perfect == {"precision": 1.0, "recall": 1.0, "f1": 1.0, "rval": 1.0}
    half = Counts(5, 5, 10, 10).scores()
    assert half["f1"] == pytest.approx(0.5)
    assert half["rval"] == pytest.approx(1 - (0.5 + 0.5 / math.sqrt(2)) / 2)  # Räsänen's R with OS = 0


def test_boundary_scorer_blind_labelled_and_errors() -> None:
    scorer = BoundaryScorer(tolerances_ms=(10.0, 20.0, 50.0))
    gold = [("a", 0.0, 0.10), ("b", 0.10, 0.30), ("c", 0.30, 0.50)]
    pred = [("a", 0.0, 0.115), ("b", 0.115, 0.34), ("c", 0.34, 0.50)]
    scorer.add(pred, gold)
    m = scorer.metrics()
    assert m["boundaries"] == 4  # a's end, b's start and end, c's start: the transitions inside
    assert m["precision@20"] == 0.5 and m["recall@20"] == 0.5  # 0.115 is 15 ms in, 0.34 is 40 ms out
    assert m["f1@10"] == 0.0 and m["f1@50"] == 1.0
    assert m["labelled_f1@20"] == 0.5  # onsets of b (in) and c (out)
    assert m["mae_ms"] == pytest.approx(27.5)
    assert m["within_20ms"] == 0.5 and m["within_50ms"] == 1.0
    assert m["edge_mae_ms"] == 0.0  # speech starts at 0 and ends at 0.5 on both sides
    with pytest.raises(ValueError, match="predicted intervals"):
        scorer.add(pred[:2], gold)


def test_segments_merge_into_the_gold_phones_they_spell() -> None:
    tok = IpaTokenizer()
    predicted = [("t", 0.0, 0.05), ("ʃ", 0.05, 0.1), ("a", 0.1, 0.2)]
    assert merge_to_gold(tok, predicted, [("tʃ", 0.0, 0.09), ("a", 0.09, 0.2)]) == [("tʃ", 0.0, 0.1), ("a", 0.1, 0.2)]
    assert merge_to_gold(tok, predicted, [("t", 0.0, 0.09), ("a", 0.09, 0.2)]) is None


def test_gold_timings_label_frames_with_silence_and_split_multi_segment_phones() -> None:
    tok = IpaTokenizer()
    targets = AlignmentTargets.from_ipa(tok, "tʃa")
    gold = [("tʃ", 0.02, 0.06), ("a", 0.06, 0.09)]
    assert frame_labels(tok, targets, gold, frames=10, step=0.01) == [0, 0, 1, 1, 2, 2, 3, 3, 3, 0]
    assert frame_labels(tok, targets, gold, frames=7, step=0.01) == [0, 0, 1, 1, 2, 2, 3]  # clipped to the frames
    assert frame_labels(tok, targets, [("t", 0.0, 0.05), ("a", 0.05, 0.09)], frames=10, step=0.01) is None


def test_uniform_intervals_tile_the_clip() -> None:
    starts, ends = uniform_times(0.9, 3)
    assert np.allclose(starts, [0.0, 0.3, 0.6]) and np.allclose(ends, [0.3, 0.6, 0.9])

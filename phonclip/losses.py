"""Contrastive losses for paired embeddings; chunked and DDP runs compute the plain math."""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from phonclip import alignment_kernels
from phonclip.alignment_kernels import MASKED


def _world() -> tuple[int, int]:
    """(rank, world size) of the default process group, so one code path serves DDP and not."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _gather_counts(*counts: int, device: torch.device) -> Tensor:
    """Every rank's row counts [world, len(counts)], so ranks may hold unequal (last) batches."""
    local = torch.tensor(counts, dtype=torch.long, device=device)
    out = [torch.empty_like(local) for _ in range(dist.get_world_size())]
    dist.all_gather(out, local)
    return torch.stack(out).cpu()


def _gather_rows(x: Tensor, counts: list[int]) -> Tensor:
    """All ranks' rows of ``x`` in rank order; gradients flow back to the rank owning each row."""
    from torch.distributed.nn.functional import all_gather

    longest = max(counts)
    if longest == 0:
        return x[:0]
    padded = torch.cat([x, x.new_zeros((longest - len(x), *x.shape[1:]))])
    return torch.cat([part[:n] for part, n in zip(all_gather(padded), counts, strict=True)])


def _check_pair(a: Tensor, b: Tensor) -> None:
    """Fail early, naming the inputs, when a batch of pairs is malformed."""
    if a.ndim != 2 or b.ndim != 2 or a.shape != b.shape:
        raise ValueError(
            f"a and b must be [B, D] of equal shape, got {tuple(a.shape)} and {tuple(b.shape)}"
        )
    if len(a) == 0:
        raise ValueError("a and b are empty: a contrastive loss needs at least one pair")


class SigLipLoss(nn.Module):
    r"""Sigmoid loss (Zhai et al. 2023): each pair is a yes/no call, so negatives just add columns.

    Inputs are L2-normalised here (a no-op on unit vectors). With rows a_i (i < B), columns c_j:
    first the b_j (j < B), then the N extra negatives; t = exp(logit_scale), β = logit_bias;
    z_ij = +1 if j = i else −1; w_ij = 1 except on extra-negative columns (below):

        L = −(1/B) · Σ_i Σ_j  w_ij · log σ(z_ij · (t · a_i·c_j + β))

    Extra negatives (``extra_negatives_b``, e.g. minimal-pair IPA of the batch's words) have
    z = −1 for every row. ``hard_negative_of[n]`` names the a-row the n-th one was made from;
    the pair (that row, n) gets weight ``hard_negative_weight``, and every other row weight 1
    (``hard_negatives_shared=True``, the default) or 0 (each extra negative only counts
    against its own row).

    The sum over j runs in chunks of ``chunk_size`` columns, each under activation
    checkpointing when gradients are on, so memory peaks at O(B · chunk) instead of
    O(B · (B + N)); ``chunk_size=None`` computes it in one piece.

    Under DDP (world W > 1) b, the extra negatives and their owners are all-gathered with
    gradients, so every local row meets the global batch of B_g = Σ_r B_r columns. Rank r
    returns L_r = (W / B_g) · S_r with S_r its rows' double sum. DDP averages gradients, and the
    all-gather backward sums them into the rank owning each row, so the applied gradient is
    that of (1/W) Σ_r L_r = (1/B_g) Σ_r S_r: the single-process loss on the concatenated
    batch, and the mean of the logged L_r is that loss (with equal local batches L_r = S_r / B_r).
    Every rank must call with the same options (extra negatives may be empty on some).
    """

    def __init__(
        self,
        init_logit_scale: float = math.log(10.0),
        init_logit_bias: float = -10.0,
        chunk_size: int | None = 1024,
        hard_negative_weight: float = 1.0,
        hard_negatives_shared: bool = True,
    ) -> None:
        super().__init__()
        if chunk_size is not None and chunk_size < 1:
            raise ValueError(f"chunk_size must be a positive int or None, got {chunk_size}")
        self.logit_scale = nn.Parameter(torch.tensor(float(init_logit_scale)))
        self.logit_bias = nn.Parameter(torch.tensor(float(init_logit_bias)))
        self.chunk_size = chunk_size
        self.hard_negative_weight = float(hard_negative_weight)
        self.hard_negatives_shared = hard_negatives_shared

    def forward(
        self,
        a: Tensor,
        b: Tensor,
        extra_negatives_b: Tensor | None = None,
        hard_negative_of: Tensor | None = None,
    ) -> Tensor:
        """Scalar loss of B pairs (a_i, b_i), optionally with N extra b-side negatives."""
        _check_pair(a, b)
        extra = b[:0] if extra_negatives_b is None else extra_negatives_b
        if extra.ndim != 2 or extra.shape[1] != b.shape[1]:
            raise ValueError(
                f"extra_negatives_b must be [N, {b.shape[1]}], got {tuple(extra.shape)}"
            )
        owners = self._owners(hard_negative_of, len(extra), len(a), a.device)
        a, b, extra = F.normalize(a, dim=-1), F.normalize(b, dim=-1), F.normalize(extra, dim=-1)

        rank, world = _world()
        if world > 1:
            counts = _gather_counts(len(a), len(extra), device=a.device)
            pair_counts, extra_counts = counts[:, 0].tolist(), counts[:, 1].tolist()
            row_offset = sum(pair_counts[:rank])
            owners = torch.where(owners >= 0, owners + row_offset, owners)
            b = _gather_rows(b, pair_counts)
            extra = _gather_rows(extra, extra_counts)
            owners = _gather_rows(owners, extra_counts)
        else:
            row_offset = 0

        columns = torch.cat([b, extra])
        column_owner = torch.cat([torch.arange(len(b), device=a.device), owners])
        is_pair = torch.arange(len(columns), device=a.device) < len(b)
        rows = torch.arange(len(a), device=a.device) + row_offset
        scale, bias = self.logit_scale.exp(), self.logit_bias

        step = len(columns) if self.chunk_size is None else self.chunk_size
        chunked = torch.is_grad_enabled() and len(columns) > step
        total = a.new_zeros((), dtype=torch.promote_types(a.dtype, torch.float32))
        for start in range(0, len(columns), step):
            part = slice(start, start + step)
            args = (a, rows, columns[part], column_owner[part], is_pair[part], scale, bias)
            total = total + (
                checkpoint(self._chunk_sum, *args, use_reentrant=False)
                if chunked
                else self._chunk_sum(*args)
            )
        return total * world / len(b)

    def _owners(
        self, hard_negative_of: Tensor | None, n_extra: int, n_rows: int, device: torch.device
    ) -> Tensor:
        """The a-row each extra negative came from (−1: none), checked against the batch."""
        if hard_negative_of is None:
            if not self.hard_negatives_shared:
                raise ValueError(
                    "hard_negatives_shared=False needs hard_negative_of (each extra row's a-row)"
                )
            return torch.full((n_extra,), -1, dtype=torch.long, device=device)
        if hard_negative_of.shape != (n_extra,):
            raise ValueError(
                f"hard_negative_of must be [{n_extra}], one per extra negative, "
                f"got {tuple(hard_negative_of.shape)}"
            )
        if n_extra and not (
            0 <= int(hard_negative_of.min()) and int(hard_negative_of.max()) < n_rows
        ):
            raise ValueError(
                f"hard_negative_of must index rows of a in [0, {n_rows}), got values outside"
            )
        return hard_negative_of.to(device=device, dtype=torch.long)

    def _chunk_sum(
        self,
        a: Tensor,
        rows: Tensor,
        columns: Tensor,
        owner: Tensor,
        is_pair: Tensor,
        scale: Tensor,
        bias: Tensor,
    ) -> Tensor:
        """Σ_i Σ_j w_ij · −log σ(z_ij · logit_ij) over one block of columns."""
        logits = scale * (a @ columns.T) + bias
        if logits.dtype in (torch.float16, torch.bfloat16):  # autocast: sum the terms in fp32
            logits = logits.float()
        own = owner[None, :] == rows[:, None]
        sign = torch.where(own & is_pair, 1.0, -1.0).to(logits.dtype)
        others = 1.0 if self.hard_negatives_shared else 0.0
        extra_weight = torch.where(own, self.hard_negative_weight, others)
        weight = torch.where(is_pair, 1.0, extra_weight).to(logits.dtype)
        return -(weight * F.logsigmoid(sign * logits)).sum()


class ClipLoss(nn.Module):
    r"""Symmetric InfoNCE (Radford et al. 2021): items pick their partner in the batch, both ways.

    Inputs are L2-normalised here. With t = exp(min(logit_scale, log 100)) and s_ij = t · a_i·b_j:

        L = ½ · [ −(1/B) Σ_i log softmax_j(s_ij)[i]  −  (1/B) Σ_i log softmax_j(s_ji)[i] ]

    The cap (CLIP's 100) acts in the forward pass, so no in-place clamp is needed in the
    training loop; past it the temperature gets no gradient. Under DDP local rows are scored
    against the all-gathered other side in both directions, and rank r returns
    (W / B_g) · S_r exactly as in ``SigLipLoss``, so DDP's gradient averaging reproduces the
    single-process loss on the concatenated batch.
    """

    def __init__(
        self, init_logit_scale: float = math.log(1 / 0.07), max_logit_scale: float = math.log(100.0)
    ) -> None:
        super().__init__()
        self.logit_scale = nn.Parameter(torch.tensor(float(init_logit_scale)))
        self.max_logit_scale = float(max_logit_scale)

    def forward(self, a: Tensor, b: Tensor) -> Tensor:
        """Scalar loss of a batch of B pairs (a_i, b_i)."""
        _check_pair(a, b)
        a, b = F.normalize(a, dim=-1), F.normalize(b, dim=-1)
        rank, world = _world()
        if world > 1:
            counts = _gather_counts(len(a), device=a.device)[:, 0].tolist()
            row_offset = sum(counts[:rank])
            a_all, b_all = _gather_rows(a, counts), _gather_rows(b, counts)
        else:
            row_offset, a_all, b_all = 0, a, b
        scale = self.logit_scale.clamp(max=self.max_logit_scale).exp()
        targets = torch.arange(len(a), device=a.device) + row_offset
        a_to_b = F.cross_entropy(scale * a @ b_all.T, targets, reduction="sum")
        b_to_a = F.cross_entropy(scale * b @ a_all.T, targets, reduction="sum")
        return (a_to_b + b_to_a) / 2 * world / len(b_all)


class ForwardSumLoss(nn.Module):
    r"""Forward-Sum alignment loss (RAD-TTS, Badlani et al. 2022): the likelihood of every monotonic
    path through a frame × phone score matrix, so frames and phones learn to line up.

    For clip b with T_b frames and N_b phones, scores s_btn (n < N_b) and a blank score β_bt
    (``blank`` [B, T], or the constant ``blank_logprob`` as in RAD-TTS and the CLAP-IPA reference),
    each frame's distribution over [blank, phone 1..N_b] is

        p_bt = softmax([β_bt, s_bt1, …, s_btN_b])

    and with CTC over the targets 1, 2, …, N_b (each phone once, in order, blank optional between
    them; so every phone gets ≥ 1 frame):

        L = (1/B) Σ_b  −log Σ_{monotonic paths π} Π_t p_bt[π_t]  /  N_b

    (``nn.CTCLoss``'s "mean" reduction; clips with fewer frames than phones have no path and count 0,
    as with ``zero_infinity``). Padded phone columns are masked before the softmax instead of cutting each
    clip out in a loop as the reference does; the CTC itself is one call for the whole batch: the compiled
    kernel of ``phonclip.alignment_kernels`` on the CPU, ``F.ctc_loss`` elsewhere.
    """

    def __init__(self, blank_logprob: float = -1.0) -> None:
        super().__init__()
        self.blank_logprob = blank_logprob

    def log_probs(self, scores: Tensor, phone_lens: Tensor, blank: Tensor | None = None) -> Tensor:
        """Each frame's log-distribution [B, T, 1 + N] over [blank, phone 1..N_b] (padded phones: −inf,
        which exp takes on its fast path; a finite mask such as −1e9 underflows on the slow one, 5x slower)."""
        blank = self._blank(scores, phone_lens, blank)
        padded = torch.arange(scores.shape[2], device=scores.device)[None, None, :] >= phone_lens[:, None, None]
        logits = torch.cat([blank[..., None], scores.masked_fill(padded, float("-inf"))], dim=-1).float()
        return logits.log_softmax(dim=-1)

    def forward(
        self, scores: Tensor, frame_lens: Tensor, phone_lens: Tensor, blank: Tensor | None = None
    ) -> Tensor:
        """Mean loss of ``scores`` [B, T, N] (frames × phones, padded past the lengths)."""
        batch, _, phones = scores.shape
        if frame_lens.shape != (batch,):
            raise ValueError(f"frame_lens must be [B={batch}], got {tuple(frame_lens.shape)}")
        if scores.device.type == "cpu":
            blank = self._blank(scores, phone_lens, blank)
            return _CompiledForwardSum.apply(scores.float(), blank.float(), frame_lens, phone_lens)
        log_probs = self.log_probs(scores, phone_lens, blank).clamp(min=MASKED)
        targets = torch.arange(1, phones + 1, device=scores.device).expand(batch, phones)
        return F.ctc_loss(
            log_probs.transpose(0, 1), targets, frame_lens, phone_lens, blank=0, reduction="mean", zero_infinity=True
        )

    def _blank(self, scores: Tensor, phone_lens: Tensor, blank: Tensor | None) -> Tensor:
        """The blank logits [B, T] (the constant ``blank_logprob`` when None), the lengths checked."""
        batch, frames, _ = scores.shape
        if phone_lens.shape != (batch,):
            raise ValueError(f"phone_lens must be [B={batch}], got {tuple(phone_lens.shape)}")
        if blank is None:
            return scores.new_full((batch, frames), self.blank_logprob)
        if blank.shape != (batch, frames):
            raise ValueError(f"blank must be [B={batch}, T={frames}], got {tuple(blank.shape)}")
        return blank


class _CompiledForwardSum(torch.autograd.Function):
    """``F.ctc_loss(log_probs(...), ..., reduction="mean", zero_infinity=True)`` over the targets 1..N_b
    computed by the compiled CPU kernel (``phonclip.alignment_kernels``), softmax included: one pass over
    each clip's own frames and phones instead of masking, softmax and CTC over the padded batch."""

    @staticmethod
    def forward(ctx: Any, scores: Tensor, blank: Tensor, frame_lens: Tensor, phone_lens: Tensor) -> Tensor:
        weights = 1.0 / (phone_lens.cpu().clamp(min=1).double() * len(phone_lens))
        nll, grad_scores, grad_blank = alignment_kernels.forward_sum(scores, blank, frame_lens, phone_lens, weights)
        ctx.save_for_backward(grad_scores, grad_blank)
        return (nll.masked_fill(~torch.isfinite(nll), 0.0) * weights).sum().to(scores.dtype)

    @staticmethod
    def backward(ctx: Any, grad_output: Tensor) -> tuple[Tensor, Tensor, None, None]:
        grad_scores, grad_blank = ctx.saved_tensors
        return grad_scores * grad_output, grad_blank * grad_output, None, None

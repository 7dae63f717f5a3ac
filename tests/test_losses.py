"""The losses compute their documented math, and chunking changes neither values nor gradients."""

import math

import pytest
import torch
import torch.nn.functional as F

from phonclip.losses import ClipLoss, SigLipLoss


def _unit(*shape: int, seed: int, dtype=torch.float64) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(*shape, generator=g, dtype=dtype), dim=-1)


def _siglip_loop(a, b, extra, t, bias, owner=None, own_weight=1.0, shared=True) -> float:
    """The SigLipLoss docstring formula, one term at a time."""
    columns = list(b) + list(extra)
    total = 0.0
    for i, ai in enumerate(a):
        for j, cj in enumerate(columns):
            logit = t * float(ai @ cj) + bias
            if j < len(b):
                z, w = (1.0 if i == j else -1.0), 1.0
            else:
                mine = owner is not None and int(owner[j - len(b)]) == i
                z, w = -1.0, (own_weight if mine else (1.0 if shared else 0.0))
            total -= w * math.log(1 / (1 + math.exp(-z * logit)))
    return total / len(a)


def _clip_loop(a, b, t) -> float:
    """The ClipLoss docstring formula, one term at a time."""
    total = 0.0
    for x, y in ((a, b), (b, a)):
        for i in range(len(x)):
            logits = [t * float(x[i] @ y[j]) for j in range(len(y))]
            total -= logits[i] - math.log(sum(math.exp(v) for v in logits))
    return total / (2 * len(a))


@pytest.mark.parametrize("n_extra", [0, 3])
def test_siglip_matches_literal_formula(n_extra):
    a, b, extra = _unit(4, 5, seed=0), _unit(4, 5, seed=1), _unit(n_extra, 5, seed=2)
    loss = SigLipLoss(init_logit_scale=math.log(3.0), init_logit_bias=-1.5).double()
    got = loss(a, b, extra if n_extra else None)
    t, bias = loss.logit_scale.exp().item(), loss.logit_bias.item()
    assert got.item() == pytest.approx(_siglip_loop(a, b, extra, t, bias), rel=1e-12)


def test_siglip_default_init_and_normalises_inputs():
    loss = SigLipLoss().double()
    t, bias = loss.logit_scale.exp().item(), loss.logit_bias.item()
    assert (t, bias) == (pytest.approx(10.0), -10.0)
    a, b = _unit(3, 4, seed=3), _unit(3, 4, seed=4)
    assert loss(5 * a, 0.5 * b).item() == pytest.approx(_siglip_loop(a, b, [], t, bias), rel=1e-12)


@pytest.mark.parametrize(("own_weight", "shared"), [(3.0, True), (2.0, False)])
def test_siglip_hard_negative_options_match_literal_formula(own_weight, shared):
    a, b, extra = _unit(4, 5, seed=5), _unit(4, 5, seed=6), _unit(6, 5, seed=7)
    owner = torch.tensor([0, 0, 1, 2, 3, 3])
    loss = SigLipLoss(
        init_logit_scale=1.0,
        init_logit_bias=-2.0,
        hard_negative_weight=own_weight,
        hard_negatives_shared=shared,
        chunk_size=3,
    ).double()
    got = loss(a, b, extra, hard_negative_of=owner)
    want = _siglip_loop(a, b, extra, loss.logit_scale.exp().item(), -2.0, owner, own_weight, shared)
    assert got.item() == pytest.approx(want, rel=1e-12)


def _loss_and_grads(loss, a, b, extra):
    a, b = a.clone().requires_grad_(), b.clone().requires_grad_()
    extra = None if extra is None else extra.clone().requires_grad_()
    value = loss(a, b, extra)
    inputs = [a, b, loss.logit_scale, loss.logit_bias] + ([] if extra is None else [extra])
    return value.detach(), torch.autograd.grad(value, inputs)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("n_extra", [0, 7])
@pytest.mark.parametrize("chunk_size", [1, 4, 5, 16])
def test_siglip_chunked_equals_dense(dtype, n_extra, chunk_size):
    a, b = _unit(10, 8, seed=8, dtype=dtype), _unit(10, 8, seed=9, dtype=dtype)
    extra = _unit(n_extra, 8, seed=10, dtype=dtype) if n_extra else None
    kwargs = {"init_logit_scale": math.log(5.0), "init_logit_bias": -3.0}
    dense_value, dense_grads = _loss_and_grads(
        SigLipLoss(chunk_size=None, **kwargs).to(dtype), a, b, extra
    )
    value, grads = _loss_and_grads(
        SigLipLoss(chunk_size=chunk_size, **kwargs).to(dtype), a, b, extra
    )
    tol = 1e-5 if dtype == torch.float64 else 1e-4
    torch.testing.assert_close(value, dense_value, atol=tol, rtol=tol)
    for got, want in zip(grads, dense_grads, strict=True):
        torch.testing.assert_close(got, want, atol=tol, rtol=tol)


def test_siglip_sums_in_float32_under_bf16_autocast():
    a, b, extra = (_unit(64, 16, seed=seed).bfloat16() for seed in (15, 16, 17))  # as encoders emit
    loss = SigLipLoss(chunk_size=48)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = loss(a, b, extra)
    assert mixed.dtype == torch.float32
    torch.testing.assert_close(
        mixed, loss(a.float(), b.float(), extra.float()), rtol=1e-3, atol=0.0
    )


def test_siglip_rejects_bad_inputs():
    loss = SigLipLoss()
    with pytest.raises(ValueError, match="a and b"):
        loss(torch.randn(3, 4), torch.randn(2, 4))
    with pytest.raises(ValueError, match="extra_negatives_b"):
        loss(torch.randn(3, 4), torch.randn(3, 4), torch.randn(2, 5))
    with pytest.raises(ValueError, match="hard_negative_of"):
        loss(
            torch.randn(3, 4),
            torch.randn(3, 4),
            torch.randn(2, 4),
            hard_negative_of=torch.tensor([0, 3]),
        )
    with pytest.raises(ValueError, match="hard_negative_of"):
        SigLipLoss(hard_negatives_shared=False)(
            torch.randn(3, 4), torch.randn(3, 4), torch.randn(2, 4)
        )


def test_clip_matches_literal_formula_and_caps_temperature():
    a, b = _unit(5, 6, seed=11), _unit(5, 6, seed=12)
    loss = ClipLoss().double()
    assert loss.logit_scale.exp().item() == pytest.approx(1 / 0.07)
    assert loss(a, b).item() == pytest.approx(
        _clip_loop(a, b, loss.logit_scale.exp().item()), rel=1e-10
    )
    with torch.no_grad():
        loss.logit_scale.fill_(math.log(1000.0))
    assert loss(a, b).item() == pytest.approx(_clip_loop(a, b, 100.0), rel=1e-10)


def test_clip_gradient_reaches_both_sides_and_temperature():
    a, b = _unit(4, 3, seed=13).requires_grad_(), _unit(4, 3, seed=14).requires_grad_()
    loss = ClipLoss().double()
    grads = torch.autograd.grad(loss(a, b), [a, b, loss.logit_scale])
    assert all(g.abs().sum() > 0 for g in grads)

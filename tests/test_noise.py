"""Noise corruptions for robustness analyses: Gaussian mixes by weight, noise at an exact SNR, babble."""

import itertools
import math

import pytest
import torch

from phonclip.eval.noise import add_at_snr, babble, mix_gaussian, rms, white_noise


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _clip(n: int, seed: int, scale: float = 1.0) -> torch.Tensor:
    return scale * torch.randn(n, generator=_gen(seed))


def _snr_db(x: torch.Tensor, noisy: torch.Tensor) -> float:
    return 10 * math.log10(float(rms(x)) ** 2 / float(rms(noisy - x)) ** 2)


def _looped_unit(clip: torch.Tensor, length: int) -> torch.Tensor:
    """A clip looped or cut to ``length`` samples, at unit RMS (babble's documented recipe)."""
    looped = torch.cat([clip.float()] * (length // len(clip) + 1))[:length]
    return looped / looped.pow(2).mean().sqrt()


# ---- rms ----------------------------------------------------------------------------------------
def test_rms_of_known_signals():
    assert float(rms(torch.full((100,), -3.0))) == pytest.approx(3.0)
    t = torch.arange(8000, dtype=torch.float64) / 8000
    assert float(rms(2 * torch.sin(2 * math.pi * 50 * t))) == pytest.approx(math.sqrt(2), rel=1e-5)


def test_rms_of_silence_is_small_but_positive():
    value = float(rms(torch.zeros(10)))
    assert 0 < value <= 1e-8


# ---- mix_gaussian -------------------------------------------------------------------------------
def test_mix_gaussian_alpha_zero_returns_clip_exactly():
    x = _clip(1600, seed=0)
    assert torch.equal(mix_gaussian(x, 0.0, _gen(1)), x)


def test_mix_gaussian_alpha_one_is_pure_noise_at_clip_rms():
    """α = 1 keeps nothing of x: uncorrelated with it, and Gaussian at x's RMS."""
    x = _clip(200_000, seed=0, scale=0.3)
    out = mix_gaussian(x, 1.0, _gen(1))
    assert out.shape == x.shape
    assert float(rms(out)) == pytest.approx(float(rms(x)), rel=0.02)
    correlation = float((out * x).sum() / (out.norm() * x.norm()))
    assert abs(correlation) < 0.01


def test_mix_gaussian_is_the_documented_weighted_sum():
    """x' = (1 − α)x + α·n: the noise part (x' − (1 − α)x)/α is the same n for every α."""
    x = _clip(50_000, seed=2, scale=0.1)
    noises = [(mix_gaussian(x, a, _gen(7)) - (1 - a) * x) / a for a in (0.25, 0.5, 0.75, 1.0)]
    for n in noises[1:]:
        assert torch.allclose(n, noises[0], atol=1e-5)
    assert float(rms(noises[0])) == pytest.approx(float(rms(x)), rel=0.02)


@pytest.mark.parametrize("alpha", [-0.1, 1.1, 2.0, float("nan")])
def test_mix_gaussian_rejects_alpha_outside_unit_interval(alpha):
    with pytest.raises(ValueError, match="alpha"):
        mix_gaussian(_clip(100, seed=0), alpha, _gen(0))


def test_mix_gaussian_is_deterministic_given_the_generator():
    x = _clip(1600, seed=0)
    assert torch.equal(mix_gaussian(x, 0.5, _gen(3)), mix_gaussian(x, 0.5, _gen(3)))
    assert not torch.equal(mix_gaussian(x, 0.5, _gen(3)), mix_gaussian(x, 0.5, _gen(4)))


# ---- add_at_snr ---------------------------------------------------------------------------------
@pytest.mark.parametrize("snr_db", [-10.0, -3.0, 0.0, 5.0, 10.0, 20.0, 40.0])
def test_add_at_snr_achieves_the_requested_snr(snr_db):
    x = _clip(1600, seed=0, scale=0.2)
    n = _clip(1600, seed=1, scale=7.0)  # the noise's own level must not matter
    out = add_at_snr(x, n, snr_db)
    assert out.shape == x.shape
    assert _snr_db(x, out) == pytest.approx(snr_db, abs=1e-3)


def test_add_at_snr_only_rescales_the_noise():
    """x' − x is a positive multiple of the noise given: its shape in time is kept."""
    x, n = _clip(1000, seed=0), _clip(1000, seed=1)
    added = add_at_snr(x, n, 6.0) - x
    gain = float(added @ n / (n @ n))
    assert gain > 0
    assert torch.allclose(added, gain * n, atol=1e-5)


def test_add_at_snr_rejects_noise_of_another_shape():
    with pytest.raises(ValueError, match="must match"):
        add_at_snr(torch.zeros(100), torch.zeros(99), 0.0)
    with pytest.raises(ValueError, match="must match"):
        add_at_snr(torch.zeros(100), torch.zeros(1, 100), 0.0)


# ---- white_noise --------------------------------------------------------------------------------
def test_white_noise_is_unit_variance_gaussian_as_long_as_the_clip():
    x = _clip(100_000, seed=0, scale=5.0)
    n = white_noise(x, _gen(1))
    assert n.shape == x.shape
    assert float(n.mean()) == pytest.approx(0.0, abs=0.02)
    assert float(n.std()) == pytest.approx(1.0, rel=0.02)


def test_white_noise_is_deterministic_given_the_generator():
    x = torch.zeros(500)
    assert torch.equal(white_noise(x, _gen(5)), white_noise(x, _gen(5)))
    assert not torch.equal(white_noise(x, _gen(5)), white_noise(x, _gen(6)))


# ---- babble -------------------------------------------------------------------------------------
def _clips() -> list[torch.Tensor]:
    """Clip 0 a distinctive constant, the others sinusoids of different lengths, pitches and levels."""
    clips = [torch.full((1000,), 100.0)]
    for k, n in enumerate((300, 1000, 1700, 730, 2500), start=1):
        t = torch.arange(n, dtype=torch.float32)
        clips.append((0.1 * k) * torch.sin(2 * math.pi * t * k / 97))
    return clips


@pytest.mark.parametrize("target", [0, 1, 3])
def test_babble_has_the_targets_length(target):
    clips = _clips()
    out = babble(clips, target, talkers=3, generator=_gen(0))
    assert out.shape == (len(clips[target]),)


@pytest.mark.parametrize("target", [0, 2, 5])
def test_babble_of_all_other_clips_is_their_unit_rms_sum(target):
    """With every other clip talking, babble is the sum of the others looped or cut, each at unit RMS."""
    clips = _clips()
    length = len(clips[target])
    expected = sum(_looped_unit(c, length) for i, c in enumerate(clips) if i != target)
    out = babble(clips, target, talkers=len(clips) - 1, generator=_gen(0))
    assert torch.allclose(out, expected, atol=1e-4)


@pytest.mark.parametrize("seed", range(5))
def test_babble_never_uses_the_target_clip(seed):
    """The output is the unit-RMS sum of exactly ``talkers`` clips, none of them the target."""
    clips = _clips()
    target, talkers, length = 0, 2, len(clips[0])
    out = babble(clips, target, talkers, _gen(seed))
    matches = [
        combo
        for combo in itertools.combinations(range(len(clips)), talkers)
        if torch.allclose(out, sum(_looped_unit(clips[i], length) for i in combo), atol=1e-4)
    ]
    assert len(matches) == 1
    assert target not in matches[0]
    # the constant clip would leave a large mean; sinusoids average out
    assert abs(float(out.mean())) < 0.5


def test_babble_raises_when_too_few_other_clips():
    clips = _clips()[:3]
    babble(clips, 0, talkers=2, generator=_gen(0))  # 2 others: enough
    with pytest.raises(ValueError, match="talkers"):
        babble(clips, 0, talkers=3, generator=_gen(0))


def test_babble_is_deterministic_given_the_generator():
    clips = [_clip(800, seed=s) for s in range(10)]
    runs = {seed: babble(clips, 4, talkers=3, generator=_gen(seed)) for seed in range(6)}
    assert torch.equal(runs[0], babble(clips, 4, talkers=3, generator=_gen(0)))
    # 84 possible choices of 3 talkers: six seeds do not all pick the same one
    assert any(not torch.allclose(runs[0], runs[s]) for s in range(1, 6))

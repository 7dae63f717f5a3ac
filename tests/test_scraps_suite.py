"""The SCRAPS analyses: phone substitution, score changes, phone error rates and the intelligibility pairs,
then sensitivity, intelligibility and noise robustness end to end on a fake model whose embeddings are
bags of phones, so every expected number follows from the IPA."""

import math
import random

import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf

from phonclip.eval.scraps_suite import (
    ClipSet,
    change,
    intelligibility,
    intelligibility_pairs,
    nearest_phone,
    noisy_sets,
    phone_error_rate,
    random_phone,
    robustness,
    sensitivity,
    substitute,
)
from phonclip.ipa import STRESS_MARKS, WORD_BOUNDARY, IpaTokenizer
from phonclip.minimal_pairs import MinimalPairSampler
from phonclip.models.scraps import ScrapsEvalConfig

SPANISH = [
    "ɡato",
    "kasa",
    "pero",
    "mesa",
    "libro",
    "mano",
    "luna",
    "sol",
    "aɡwa",
    "fweɡo",
    "tjera",
    "arbol",
    "silja",
    "berde",
    "ombre",
    "mundo",
]
GERMAN = [
    "haus",
    "tiːʁ",
    "hunt",
    "kats",
    "buːx",
    "tɪʃ",
    "ʃtuːl",
    "fɪʃ",
    "vasɐ",
    "kɪnt",
    "mʊtɐ",
    "faːtɐ",
    "bʁoːt",
    "ʃtat",
    "vɛlt",
    "ʃpiːl",
]


class BagOfPhones:
    """A transparent fake model: an IPA string embeds as its L2-normalised phone counts, and the i-th
    waveform of a call as the IPA of clip i, mixed with a direction no IPA uses by how far the waveform
    is from clip i's clean audio (``hear_noise``), so its matched score is the waveform's correlation
    with the clean clip; without ``hear_noise`` every waveform is heard as its clean clip."""

    def __init__(self, clips: ClipSet, hear_noise: bool = False) -> None:
        self.tokenizer = IpaTokenizer(keep_stress=False)
        self.clips = clips
        self.hear_noise = hear_noise

    def embed_phones(self, strings: list[str]) -> torch.Tensor:
        bags = torch.zeros(len(strings), self.tokenizer.vocab_size)
        for row, ipa in zip(bags, strings):
            for i in self.tokenizer.encode(ipa):
                row[i] += 1
        return F.normalize(bags, dim=-1)

    def embed_speech(self, waveforms: list[torch.Tensor]) -> torch.Tensor:
        assert len(waveforms) == len(self.clips.audio)
        out = self.embed_phones(self.clips.ipa)
        if self.hear_noise:
            clean = torch.stack(self.clips.audio).double()
            heard = torch.stack(waveforms).double()
            c = F.cosine_similarity(heard, clean, dim=-1).clamp(-1, 1).float()
            junk = torch.zeros_like(out)
            junk[:, self.tokenizer.pad_id] = 1.0  # no IPA string encodes <pad>
            out = c[:, None] * out + (1 - c * c).clamp(min=0).sqrt()[:, None] * junk
        return out


def _clip_set(words: list[str], langs: list[str], seed: int = 0) -> ClipSet:
    g = torch.Generator().manual_seed(seed)
    return ClipSet([torch.randn(1600, generator=g) for _ in words], list(words), list(langs))


@pytest.fixture(scope="module")
def clips() -> ClipSet:
    return _clip_set(SPANISH + GERMAN, ["es"] * len(SPANISH) + ["de"] * len(GERMAN))


@pytest.fixture(scope="module")
def sampler() -> MinimalPairSampler:
    return MinimalPairSampler()


def _cfg(**overrides):
    cfg = OmegaConf.structured(ScrapsEvalConfig)
    cfg.noise_alphas = [0.0, 0.25, 0.5, 0.75, 1.0]
    cfg.snrs_db = [20.0, 5.0, 0.0]
    cfg.babble_talkers = 3
    cfg.babble_snrs_db = [10.0, 0.0]
    for key, value in overrides.items():
        setattr(cfg, key, value)
    return cfg


def test_fake_model_words_have_distinct_bags(clips):
    """Sanity of the fixture: no two words are anagrams, so each clip's own IPA is its unique best match."""
    model = BagOfPhones(clips)
    phones = model.embed_phones(clips.ipa)
    sims = phones @ phones.T
    assert torch.allclose(sims.diagonal(), torch.ones(len(clips.ipa)))
    assert (sims - 2 * torch.eye(len(clips.ipa))).max() < 1 - 1e-3
    assert not model.tokenizer.unknown


# ---- substitute ---------------------------------------------------------------------------------
_TWO_WORDS = IpaTokenizer(keep_stress=True).segments("ˈɡato ˌkasa")  # one character per segment


def _mark(phone: str, rng: random.Random) -> str:
    return "X"


@pytest.mark.parametrize(
    ("rate", "changed"), [(0.0, 1), (0.05, 1), (0.25, 2), (0.5, 4), (0.9, 7), (1.0, 8), (3.0, 8)]
)
def test_substitute_replaces_max_one_or_rounded_share_of_phones(rate, changed):
    segments = _TWO_WORDS
    assert sum(s != WORD_BOUNDARY and s not in STRESS_MARKS for s in segments) == 8
    out = substitute(segments, rate, _mark, random.Random(0))
    assert len(out) == len(segments)
    assert out.count("X") == changed


@pytest.mark.parametrize("seed", range(10))
def test_substitute_never_touches_word_boundaries_or_stress(seed):
    segments = _TWO_WORDS
    seen: list[str] = []

    def record(phone: str, rng: random.Random) -> str:
        seen.append(phone)
        return "X"

    out = substitute(segments, 0.5, record, random.Random(seed))
    for got, seg in zip(out, segments):
        if seg == WORD_BOUNDARY or seg in STRESS_MARKS:
            assert got == seg
        else:
            assert got in ("X", seg)
    # the replacement is asked about the phone it replaces, once per position
    assert sorted(seen) == sorted(seg for got, seg in zip(out, segments) if got == "X")


def test_substitute_without_phones_changes_nothing():
    assert (
        substitute([WORD_BOUNDARY, STRESS_MARKS[0]], 0.5, _mark, random.Random(0))
        == " " + STRESS_MARKS[0]
    )


def test_substitute_is_deterministic_given_the_rng():
    segments = IpaTokenizer().segments("libro ombre mundo")
    pick = random_phone(["a", "e", "i", "o", "u"])
    assert substitute(segments, 0.3, pick, random.Random(5)) == substitute(
        segments, 0.3, pick, random.Random(5)
    )


# ---- replacements -------------------------------------------------------------------------------
def test_random_phone_never_returns_the_phone_and_stays_in_inventory():
    inventory = ["a", "e", "k", "s", "t"]
    pick, rng = random_phone(inventory), random.Random(0)
    for phone in inventory:
        draws = {pick(phone, rng) for _ in range(200)}
        assert draws == set(inventory) - {phone}  # uniform over the rest: all of them show up


def test_random_phone_of_a_phone_outside_the_inventory_draws_from_all():
    pick, rng = random_phone(["a", "e"]), random.Random(0)
    assert {pick("x", rng) for _ in range(100)} == {"a", "e"}


@pytest.mark.parametrize("phone", ["p", "a", "s", "ɡ", "iː"])
def test_nearest_phone_is_the_samplers_first_neighbour(sampler, phone):
    pick = nearest_phone(sampler, ["a", "e"])
    assert pick(phone, random.Random(0)) == sampler.neighbours(phone)[0]
    assert pick(phone, random.Random(0)) != phone


def test_nearest_phone_of_p_is_b(sampler):
    assert nearest_phone(sampler, ["a"])("p", random.Random(0)) == "b"


def test_nearest_phone_falls_back_to_random_when_panphon_knows_none(sampler):
    assert sampler.neighbours("X") == []
    pick, rng = nearest_phone(sampler, ["a", "e", "o"]), random.Random(0)
    assert {pick("X", rng) for _ in range(100)} == {"a", "e", "o"}


# ---- change -------------------------------------------------------------------------------------
def test_change_counts_drops_rises_and_mean_relative_change():
    clean = torch.tensor([1.0, 0.5, -0.5, 2.0])
    corrupted = torch.tensor([0.5, 0.5, -1.0, 3.0])
    out = change(clean, corrupted)
    assert out["drop"] == pytest.approx(0.5)  # 1 → 0.5 and −0.5 → −1
    assert out["rise"] == pytest.approx(0.25)  # 2 → 3
    assert out["rel_change"] == pytest.approx((-0.5 + 0.0 - 1.0 + 0.5) / 4)  # relative to |s|


def test_change_of_unchanged_scores_is_zero():
    s = torch.tensor([0.9, -0.2, 0.0])
    assert change(s, s.clone()) == {"drop": 0.0, "rise": 0.0, "rel_change": 0.0}


# ---- phone error rate ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("meant", "said", "per"),
    [
        ("kasa", "kasa", 0.0),
        ("kasa", "kas", 0.25),  # one deletion
        ("kasa", "kasas", 0.25),  # one insertion
        ("kasa", "mesa", 0.5),  # two substitutions
        ("kasa", "ksaa", 0.25),  # an adjacent swap is one edit
        ("sol", "kasa", 4 / 3),  # three substitutions and an insertion over three phones meant
        ("a", "abc", 2.0),  # over the phones meant, not said
        ("", "ab", 2.0),  # nothing meant: over one phone
    ],
)
def test_phone_error_rate_hand_checked(meant, said, per):
    assert phone_error_rate(list(meant), list(said)) == pytest.approx(per)


# ---- intelligibility pairs ----------------------------------------------------------------------
def _segments(words: list[str]) -> list[list[str]]:
    tok = IpaTokenizer(keep_stress=False)
    return [tok.segments(w) for w in words]


@pytest.mark.parametrize("per_clip", [1, 2, 3, 5, 8, 40])
def test_intelligibility_pairs_structure(clips, per_clip):
    phones = _segments(clips.ipa)
    pairs = intelligibility_pairs(phones, clips.lang, per_clip, seed=0)
    for b in range(len(phones)):
        mine = [(said, meant, per) for said, meant, per in pairs if said == b]
        assert (b, b, 0.0) in mine  # each clip with itself at PER 0
        assert len(mine) <= per_clip
        partners = [meant for _, meant, _ in mine if meant != b]
        assert len(partners) == len(set(partners))
        assert all(clips.lang[a] == clips.lang[b] for a in partners)
        for _, a, per in mine:
            assert per == pytest.approx(phone_error_rate(phones[a], phones[b]))
        if per_clip == 1:
            assert partners == []


def test_intelligibility_pairs_spread_evenly_over_the_per_range():
    """Partners are the words closest to PER targets 1/(k−1) … 1, not the most common PERs."""
    words = ["abcd", "abcx", "abxy", "wxyz", "vwxy", "uvwx"]  # PER from "abcd": 0.25, 0.5, 1, 1, 1
    phones = [list(w) for w in words]
    pairs = intelligibility_pairs(phones, ["xx"] * len(words), per_clip=3, seed=0)
    mine = sorted(per for said, meant, per in pairs if said == 0 and meant != 0)
    assert mine == [0.5, 1.0]


def test_intelligibility_pairs_take_every_partner_when_few():
    phones = _segments(["kasa", "mesa", "pero", "haus"])
    pairs = intelligibility_pairs(phones, ["es", "es", "es", "de"], per_clip=10, seed=0)
    assert sorted((b, a) for b, a, _ in pairs) == sorted(
        [(0, 0), (0, 1), (0, 2), (1, 1), (1, 0), (1, 2), (2, 2), (2, 0), (2, 1), (3, 3)]
    )


def test_intelligibility_pairs_are_deterministic_given_the_seed(clips):
    phones = _segments(clips.ipa)
    assert intelligibility_pairs(phones, clips.lang, 5, seed=3) == intelligibility_pairs(
        phones, clips.lang, 5, seed=3
    )


# ---- end to end: sensitivity --------------------------------------------------------------------
def test_sensitivity_single_substitutions_always_drop_a_bag_of_phones_score(clips):
    """Words have at most 5 phones, so rates 0.05–0.25 replace exactly one phone by a different one: the
    bag of phones changes and the matched score (1 when clean) drops in every pair, in both modes."""
    model = BagOfPhones(clips)
    speech = model.embed_speech(clips.audio)
    rates = [0.05, 0.1, 0.2, 0.25]
    assert max(len(_segments([w])[0]) for w in clips.ipa) * 0.25 < 1.5
    out = sensitivity(model, clips, speech, rates, seed=0)
    assert set(out) == {f"{mode}@{r:g}" for mode in ("random", "nearest") for r in rates}
    for key, row in out.items():
        assert row["drop"] == 1.0, key
        assert row["rise"] == 0.0, key
        assert row["rel_change"] < 0, key


def test_sensitivity_drops_more_with_more_substitutions(clips):
    """A bag-of-phones score falls further the more phones are replaced; it never rises above 1."""
    model = BagOfPhones(clips)
    speech = model.embed_speech(clips.audio)
    rates = [0.1, 0.5, 1.0]
    out = sensitivity(model, clips, speech, rates, seed=0)
    for mode in ("random", "nearest"):
        rel = [out[f"{mode}@{r:g}"]["rel_change"] for r in rates]
        assert rel[0] > rel[1] > rel[2], mode
        assert all(out[f"{mode}@{r:g}"]["rise"] == 0.0 for r in rates)
        assert out[f"{mode}@1"]["drop"] >= 0.9


def test_sensitivity_is_deterministic_given_the_seed(clips):
    model = BagOfPhones(clips)
    speech = model.embed_speech(clips.audio)
    assert sensitivity(model, clips, speech, [0.3], seed=1) == sensitivity(
        model, clips, speech, [0.3], seed=1
    )


def test_sensitivity_of_a_content_blind_model_never_drops(clips):
    """Speech embedded in a direction no phones use: every matched score is 0 clean and corrupted."""
    model = BagOfPhones(clips)
    speech = torch.zeros(len(clips.ipa), model.tokenizer.vocab_size)
    speech[:, model.tokenizer.pad_id] = 1.0
    for row in sensitivity(model, clips, speech, [0.2, 0.5], seed=0).values():
        assert row["drop"] == 0.0 and row["rise"] == 0.0


# ---- end to end: intelligibility ----------------------------------------------------------------
def test_intelligibility_scores_fall_with_phone_error_rate(clips):
    model = BagOfPhones(clips)
    speech = model.embed_speech(clips.audio)
    out, per, scores = intelligibility(model, clips, speech, per_clip=8, seed=0)
    phones = _segments(clips.ipa)
    pairs = intelligibility_pairs(phones, clips.lang, 8, seed=0)
    assert out["pairs"] == len(pairs) == len(per) == len(scores)
    for (b, a, p), got_per, got_score in zip(pairs, per, scores):
        assert float(got_per) == pytest.approx(p)
        assert float(got_score) == pytest.approx(
            float(speech[b] @ model.embed_phones([clips.ipa[a]])[0]), abs=1e-5
        )
    assert out["spearman"] < -0.5
    assert out["spearman_mismatched"] < 0
    assert out["chance_spearman"] == 0.0


def test_intelligibility_self_pairs_score_one(clips):
    model = BagOfPhones(clips)
    speech = model.embed_speech(clips.audio)
    _, per, scores = intelligibility(model, clips, speech, per_clip=4, seed=0)
    assert torch.allclose(scores[per == 0], torch.ones(int((per == 0).sum())), atol=1e-5)
    assert scores[per > 0].max() < 1 - 1e-3


# ---- end to end: noise --------------------------------------------------------------------------
def test_noisy_sets_conditions_and_shapes(clips):
    cfg = _cfg()
    sets = noisy_sets(clips, cfg)
    assert set(sets) == {
        "alpha=0",
        "alpha=0.25",
        "alpha=0.5",
        "alpha=0.75",
        "alpha=1",
        "white_snr=20dB",
        "white_snr=5dB",
        "white_snr=0dB",
        "babble_snr=10dB",
        "babble_snr=0dB",
    }
    for name, audio in sets.items():
        assert len(audio) == len(clips.audio), name
        assert all(x.shape == c.shape for x, c in zip(audio, clips.audio)), name
    assert all(torch.equal(x, c) for x, c in zip(sets["alpha=0"], clips.audio))


def test_noisy_sets_are_deterministic_and_differ_by_condition(clips):
    cfg = _cfg()
    first, second = noisy_sets(clips, cfg), noisy_sets(clips, cfg)
    for name in first:
        assert all(torch.equal(x, y) for x, y in zip(first[name], second[name])), name
    # each condition draws its own noise: α = 1 is pure noise, not the same noise for every clip
    pure = first["alpha=1"]
    assert not torch.allclose(pure[0] / pure[0].norm(), pure[1] / pure[1].norm())
    other_seed = noisy_sets(clips, _cfg(seed=1))
    assert not torch.equal(first["white_snr=0dB"][0], other_seed["white_snr=0dB"][0])


def test_noisy_sets_skip_babble_without_enough_other_clips():
    few = _clip_set(["kasa", "mesa", "pero"], ["es"] * 3)
    assert not any(name.startswith("babble") for name in noisy_sets(few, _cfg(babble_talkers=3)))
    assert any(name.startswith("babble") for name in noisy_sets(few, _cfg(babble_talkers=2)))


def test_robustness_of_a_noise_deaf_model_changes_nothing(clips):
    model = BagOfPhones(clips, hear_noise=False)
    speech = model.embed_speech(clips.audio)
    out = robustness(model, clips, speech, _cfg())
    assert out["clean"]["hit@1"] == 1.0
    assert out["clean"]["score"] == pytest.approx(1.0, abs=1e-5)
    assert set(out) - {"clean"} == set(noisy_sets(clips, _cfg()))
    for name, row in out.items():
        if name == "clean":
            continue
        assert row["rel_change"] == 0.0, name
        assert row["drop"] == 0.0 and row["rise"] == 0.0, name
        assert row["hit@1"] == out["clean"]["hit@1"], name
        assert row["hit@1_rel_change"] == 0.0, name


def test_robustness_scores_track_the_noise_level(clips):
    """The fake's matched score is the noisy clip's correlation with the clean one, which the conditions
    fix: (1 − α)/√((1 − α)² + α²) for a Gaussian mix at the clip's RMS, 1/√(1 + 10^(−SNR/10)) at an SNR."""
    model = BagOfPhones(clips, hear_noise=True)
    speech = model.embed_speech(clips.audio)
    out = robustness(model, clips, speech, _cfg())
    assert out["clean"]["score"] == pytest.approx(1.0, abs=1e-5)
    for a in (0.0, 0.25, 0.5, 0.75, 1.0):
        expected = (1 - a) / math.sqrt((1 - a) ** 2 + a**2)
        assert out[f"alpha={a:g}"]["score"] == pytest.approx(expected, abs=0.03), a
    for kind, snrs in (("white", (20.0, 5.0, 0.0)), ("babble", (10.0, 0.0))):
        for s in snrs:
            expected = 1 / math.sqrt(1 + 10 ** (-s / 10))
            row = out[f"{kind}_snr={s:g}dB"]
            assert row["score"] == pytest.approx(expected, abs=0.03), (kind, s)
            assert row["drop"] == 1.0
            assert row["rel_change"] == pytest.approx(expected - 1, abs=0.03)
    assert out["alpha=1"]["hit@1"] < out["clean"]["hit@1"]

"""The CLAP-IPA evaluation suite on oracle and random embedders: perfect scores where they must be, chance otherwise."""

import hashlib
from types import SimpleNamespace

import torch
import torch.nn.functional as F

from phonclip.eval.clap_suite import (
    EmbeddedSet,
    draw_gallery,
    kws,
    minimal_pair_accuracy,
    per_language,
    retrieval,
)
from phonclip.minimal_pairs import MinimalPairSampler

WORDS = ["kato", "ɡato", "pero", "bero", "mano", "nano", "sol", "zol", "tu", "du", "la", "ra"]


def _code(ipa: str, dim: int = 64) -> torch.Tensor:
    seed = int(hashlib.sha256(ipa.encode()).hexdigest()[:8], 16)
    return F.normalize(torch.randn(dim, generator=torch.Generator().manual_seed(seed)), dim=0)


class Oracle:
    """Embeds a clip exactly like its own IPA: the ideal model."""

    cfg = SimpleNamespace(units="ipa")

    def embed_phones(self, strings: list[str]) -> torch.Tensor:
        return torch.stack([_code(s) for s in strings])


def _set(labels: list[str], noise: float = 0.0, seed: int = 0) -> EmbeddedSet:
    g = torch.Generator().manual_seed(seed)
    speech = torch.stack([_code(w) for w in labels]) + noise * torch.randn(len(labels), 64, generator=g)
    return EmbeddedSet(F.normalize(speech, dim=-1), labels, labels, ["es" if i % 2 else "it" for i in range(len(labels))])


def test_oracle_is_perfect_in_every_direction():
    words = WORDS + [w + "s" for w in WORDS]  # 24 ≥ MIN_SPEECH_QUERIES
    gallery, partners = draw_gallery(_set(words * 2, noise=0.01), size=len(words), seed=0)
    assert sorted(gallery.ipa) == sorted(words) and partners.ipa == gallery.ipa
    out = retrieval(Oracle(), gallery, partners)
    for direction in ("phone→speech", "speech→phone", "speech→speech"):
        assert out[direction]["hit@1"] == 1.0 and out[direction]["mAP"] == 1.0, direction
        assert out[direction]["chance_hit@1"] < 0.2


def test_random_speech_is_near_chance():
    labels = [f"w{i}" for i in range(300)]
    s = EmbeddedSet(F.normalize(torch.randn(300, 64, generator=torch.Generator().manual_seed(1)), dim=-1),
                    labels, labels, ["xx"] * 300)
    out = retrieval(Oracle(), s)["phone→speech"]
    assert abs(out["hit@10"] - out["chance_hit@10"]) < 0.05


def test_kws_and_minimal_pairs_perfect_for_oracle():
    s = _set(WORDS)
    sampler = MinimalPairSampler(seed=0)
    scores = kws(Oracle(), s, sampler, seed=0)
    assert scores["easy_auc"] == 1.0 and scores["hard_auc"] == 1.0 and scores["easy_eer"] == 0.0
    assert minimal_pair_accuracy(Oracle(), s, sampler, k=5, seed=0) == 1.0


def test_noise_lowers_scores():
    clean = retrieval(Oracle(), _set(WORDS * 3))["phone→speech"]["mAP"]
    noisy = retrieval(Oracle(), _set(WORDS * 3, noise=0.5))["phone→speech"]["mAP"]
    assert noisy < clean


def test_per_language_rows_use_own_gallery():
    rows = per_language(Oracle(), _set(WORDS * 2))
    assert set(rows) == {"es", "it"} and all(r["hit@1"] == 1.0 for r in rows.values())
    assert rows["es"]["n"] == len(WORDS)


def test_gallery_is_seeded_distinct_words_spanning_the_set_with_second_renditions():
    s = _set([f"w{i}" for i in range(100)] + [f"w{i}" for i in range(0, 100, 2)], noise=0.1)
    a, partners = draw_gallery(s, 30, seed=3)
    b, _ = draw_gallery(s, 30, seed=3)
    assert a.ipa == b.ipa and len(set(a.ipa)) == len(a.ipa) == 30
    assert max(int(w[1:]) for w in a.ipa) > 50
    assert partners.ipa == [w for w in a.ipa if int(w[1:]) % 2 == 0]
    assert not any(torch.equal(p, g) for p in partners.speech for g in a.speech)  # other clips, not copies


def test_speech_to_speech_needs_enough_second_renditions():
    gallery, partners = draw_gallery(_set(WORDS * 2), size=len(WORDS), seed=0)
    assert "speech→speech" not in retrieval(Oracle(), gallery, partners)  # 12 < MIN_SPEECH_QUERIES
    assert "speech→speech" not in retrieval(Oracle(), gallery)

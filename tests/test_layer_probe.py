"""The layer probe's retrieval, pronunciation control and chance levels; the frozen encoders it reads."""

import numpy as np
import pytest
import torch
from tiny import TinyRun, write_tiny_whisper

from phonclip.encoders.frozen import MissingEncoder, SourceSpeechConfig, load_frozen_speech
from phonclip.eval.layer_probe import (
    ControlConfig,
    chance,
    controlled_galleries,
    pair_tasks,
    phone_distances,
    probe,
    ranks_of_targets,
    reading,
)
from phonclip.models.layer_probe import length_batches


def test_phone_distances_are_normalised_segment_edits() -> None:
    d = phone_distances(["abc", "tʃa"], ["abc", "abd", "xyzw", "tʃa"])
    assert d[0, 0] == 0.0 and d[0, 1] == pytest.approx(1 / 3) and d[0, 2] == 1.0
    assert d[1, 3] == 0.0  # tʃ is one segment: the same string at distance 0
    assert phone_distances(["ab"], ["ba"])[0, 0] == 1.0  # two substitutions over two segments


def test_ranks_share_ties_fairly() -> None:
    scores = np.array([[0.9, 0.1, 0.9], [0.0, 0.5, 0.7], [0.2, 0.3, 0.4]])
    hits, rr = ranks_of_targets(scores, {q: np.arange(3) for q in range(3)})
    assert hits.tolist() == [0.5, 0.0, 1.0]  # row 0 ties with one distractor
    assert rr.tolist() == pytest.approx([1 / 1.5, 1 / 2, 1.0])
    hits, _ = ranks_of_targets(scores, {1: np.array([0, 1])})  # the gallery leaves out column 2
    assert hits.tolist() == [1.0]


def test_chance_levels_are_exact() -> None:
    hit, mrr = chance(np.array([1, 2, 4]))
    assert hit == pytest.approx((1 + 1 / 2 + 1 / 4) / 3)
    assert mrr == pytest.approx((1 + 1.5 / 2 + (1 + 1 / 2 + 1 / 3 + 1 / 4) / 4) / 3)


def test_control_keeps_far_translations_and_equally_far_distractors() -> None:
    dist = np.array([
        [0.9, 0.88, 0.5, 0.93, 0.95],
        [0.9, 0.2, 0.9, 0.9, 0.9],
        [0.7, 0.9, 0.8, 0.84, 0.70],
        [0.9, 0.9, 0.9, 0.9, 0.9],
        [0.9, 0.9, 0.9, 0.9, 0.9],
    ])  # fmt: skip
    kept = controlled_galleries(dist, ControlConfig(threshold=0.6, tolerance=0.05, min_distractors=2))
    assert 1 not in kept  # its translation is too close in pronunciation
    assert kept[0].tolist() == [0, 1, 3, 4]  # 0.5 is not as far as the translation (0.9)
    assert 2 not in kept  # only one distractor (0.84) within 0.8 ± 0.05
    assert kept[3].tolist() == [0, 1, 2, 3, 4]


def _parallel(n_items: int, langs: list[str], cognate_items: int, seed: int = 0):
    """Items spoken in each language: the first ``cognate_items`` share one phone string across languages,
    the rest get unrelated random strings per language."""
    rng = np.random.default_rng(seed)
    phones = list("ptkbdgmnszfvlraeiou")
    items, lang_of, ipa = [], [], []
    shared = ["".join(rng.choice(phones, 6)) for _ in range(n_items)]
    for lang in langs:
        for i in range(n_items):
            items.append(f"n:{i}")
            lang_of.append(lang)
            ipa.append(shared[i] if i < cognate_items else "".join(rng.choice(phones, 6)))
    return items, lang_of, ipa


def _bag_of_phones(ipa: list[str]) -> torch.Tensor:
    """An 'encoder' that hears only phones: a bag-of-phones vector per utterance."""
    vocab = sorted(set("".join(ipa)))
    return torch.tensor([[s.count(p) for p in vocab] for s in ipa], dtype=torch.float32) + 0.01


def test_control_removes_what_pronunciation_alone_can_carry() -> None:
    items, langs, ipa = _parallel(60, ["a", "b", "c"], cognate_items=30)
    durations = np.ones(len(items))
    tasks = pair_tasks(items, langs, ipa, durations)
    assert len(tasks) == 6 and all(len(t.rows_a) == 60 for t in tasks)
    phonetic = _bag_of_phones(ipa)
    rng = torch.Generator().manual_seed(0)
    dim = phonetic.shape[1]
    meaning = torch.randn(60, dim, generator=rng).repeat(3, 1) + 0.3 * torch.randn(180, dim, generator=rng)
    layers = torch.stack([phonetic, torch.randn(180, dim, generator=rng), meaning])
    cfg = ControlConfig(threshold=0.5, tolerance=0.2, min_distractors=3, min_queries=3)
    out = probe(layers, tasks, unseen={"c"}, cfg=cfg)
    phon, noise, sem = out["layer_0"], out["layer_1"], out["layer_2"]
    assert phon["uncontrolled"]["hit@1"] > 0.4  # the cognates carry a phonetic encoder
    assert phon["controlled"]["hit@1"] < phon["controlled"]["chance_hit@1"] + 0.15  # ... until they are controlled
    assert abs(noise["uncontrolled"]["hit@1"] - noise["uncontrolled"]["chance_hit@1"]) < 0.1
    assert sem["controlled"]["hit@1"] > 0.9  # meaning survives the control
    assert out["phone_distance"]["uncontrolled"]["hit@1"] > 0.45
    assert out["phone_distance"]["controlled"]["hit@1"] < 0.5
    assert out["duration"]["uncontrolled"]["hit@1"] == pytest.approx(1 / 60)  # all tied: exactly chance
    assert sem["uncontrolled_unseen"]["pairs"] == 4 and sem["uncontrolled"]["pairs"] == 6
    assert sem["controlled"]["queries"] <= 6 * 30
    assert any("best layer 2" in line for line in reading(out))


def test_pairs_without_ipa_skip_the_control() -> None:
    items, langs, ipa = _parallel(8, ["a", "b"], cognate_items=0)
    ipa[0] = ""
    tasks = pair_tasks(items, langs, ipa, np.ones(len(items)))
    assert all(t.dist is None for t in tasks)
    out = probe(torch.randn(2, len(items), 4), tasks, set(), ControlConfig())
    assert "controlled" not in out["layer_0"] and "phone_distance" not in out
    assert "no language pair" in reading(out)[1]


def test_length_batches_respect_the_budget() -> None:
    lengths = [5, 1, 9, 3, 3, 20]
    batches = length_batches(lengths, budget=10)
    assert sorted(i for b in batches for i in b) == list(range(6))
    assert all(len(b) == 1 or len(b) * max(lengths[i] for i in b) <= 10 for b in batches)


@pytest.fixture(scope="module")
def whisper_dir(tmp_path_factory: pytest.TempPathFactory):
    return write_tiny_whisper(tmp_path_factory.mktemp("whisper"), encoder_layers=3)


def test_frozen_whisper_exits_early_and_pools_every_layer(whisper_dir) -> None:
    full = load_frozen_speech(SourceSpeechConfig(source=str(whisper_dir)))
    early = load_frozen_speech(SourceSpeechConfig(source=str(whisper_dir), exit_layer=2))
    assert (full.num_layers, early.num_layers, full.logmel.hop_length) == (3, 2, 160)
    assert not any(p.requires_grad for p in full.parameters())
    audio = torch.randn(2, 16_000) * 0.1
    lens = torch.tensor([16_000, 9_000])
    pooled = full.pooled_layers(audio, lens)
    assert pooled.shape == (4, 2, 32)
    alone = full.pooled_layers(audio[1:, :9_000], lens[1:])
    torch.testing.assert_close(pooled[:, 1], alone[:, 0], atol=1e-5, rtol=1e-4)  # padding never leaks
    # the early exit's first two layers are the full encoder's (its last adds the final layer norm)
    torch.testing.assert_close(early.pooled_layers(audio, lens)[:2], pooled[:2])


def test_frozen_run_and_missing_sources(tiny_run: TinyRun, tmp_path) -> None:
    speech = load_frozen_speech(SourceSpeechConfig(source=str(tiny_run.path)))
    assert speech.num_layers == tiny_run.model.speech_encoder.num_layers
    assert speech.hidden_size == tiny_run.model.speech_encoder.hidden_size
    with pytest.raises(MissingEncoder, match="make train EXP=clap_ipa"):
        load_frozen_speech(SourceSpeechConfig(source=str(tmp_path / "runs" / "nothing")))
    with pytest.raises(ValueError, match="exit_layer=9"):
        load_frozen_speech(SourceSpeechConfig(source=str(tiny_run.path), exit_layer=9))


def test_probe_model_embeds_every_layer_and_refuses_too_long_audio(whisper_dir) -> None:
    from phonclip.models.layer_probe import LayerProbe

    model = LayerProbe({"speech": {"source": str(whisper_dir)}, "batch_seconds": 1.0})
    clips = [np.zeros(8_000, dtype=np.float32), 0.1 * np.ones(20_000, dtype=np.float32)]
    pooled = model.pooled_layers(clips)
    assert pooled.shape == (4, 2, 32)
    torch.testing.assert_close(pooled[:, :1], model.pooled_layers(clips[:1]))
    with pytest.raises(ValueError, match="longer than the encoder's 30 s"):
        model.pooled_layers([np.zeros(31 * 16_000, dtype=np.float32)])

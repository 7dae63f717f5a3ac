"""Semantic AWEs: spoken-word segments, stage-2 pieces (context pairs, soft labels, Skipgram) and the encoder."""

from pathlib import Path

import pytest
import torch

from data_modules.spoken_words import (
    PairBatches,
    Segments,
    SpokenWordsConfig,
    build_target,
    spoken_units,
    target_sentences,
    wordnet_topic_sentences,
)
from phonclip.encoders.word_rnn import WordEncoderConfig, WordRnn
from phonclip.models.semantic_awe import SemanticAwe, as_config
from phonclip.models.skipgram import (
    Skipgram,
    Stage2Config,
    context_pairs,
    fit,
    one_hot_labels,
    soft_labels,
)


def test_spoken_units_give_each_espeak_word_its_written_words() -> None:
    words = ["parts", "of", "the", "brain"]
    # espeak spoke "of the" as one word starting at character 6
    assert spoken_units(words, [0, 6, 13]) == ["parts", "of the", "brain"]
    assert spoken_units(words, [0, 6, 9, 13]) == words


def test_context_pairs_stay_inside_an_utterance_and_the_window() -> None:
    utterance = [0, 0, 0, 1, 1]
    position = [0, 1, 2, 0, 1]
    pairs = {tuple(p) for p in context_pairs(utterance, position, window=1).tolist()}
    assert pairs == {(0, 1), (1, 0), (1, 2), (2, 1), (3, 4), (4, 3)}
    wide = {tuple(p) for p in context_pairs(utterance, position, window=2).tolist()}
    assert wide == pairs | {(0, 2), (2, 0)}


def test_soft_labels_favour_the_nearest_centroid_and_sum_to_one() -> None:
    centroids = torch.eye(4)
    x = torch.tensor([[1.0, 0.1, 0.0, 0.0], [0.0, 0.0, 0.2, 1.0]])
    idx, weights = soft_labels(x, centroids, top_k=3, temperature=0.05)
    assert idx[:, 0].tolist() == [0, 3]
    assert torch.allclose(weights.sum(1), torch.ones(2))
    assert (weights[:, 0] > weights[:, 1]).all()


def test_skipgram_places_words_that_share_contexts_together() -> None:
    """Labels 0 and 1 both occur beside 4; 2 and 3 both beside 5: after training 0≈1 and 2≈3."""
    sentences = [[0, 4], [1, 4], [2, 5], [3, 5]] * 50
    labels = torch.tensor([w for s in sentences for w in s])
    utterance = [i for i, s in enumerate(sentences) for _ in s]
    position = [k for s in sentences for k in range(len(s))]
    pairs = context_pairs(utterance, position, window=1)
    inputs = one_hot_labels([str(x) for x in labels.tolist()], {str(i): i for i in range(6)})
    cfg = Stage2Config(dim=8, epochs=30, batch_size=64, lr=0.05)
    for seed in range(3):
        model = fit(lambda: Skipgram(7, 8), inputs, pairs, cfg, seed=seed, desc="test")
        e = torch.nn.functional.normalize(model.embedding.weight.detach(), dim=-1)
        assert e[0] @ e[1] > e[0] @ e[2] + 0.3
        assert e[2] @ e[3] > e[2] @ e[1] + 0.3


def test_pair_batches_hold_distinct_words_with_two_renditions() -> None:
    words = ["a", "a", "b", "b", "b", "c", "c", "d"]
    sampler = PairBatches(words, list(range(len(words))), batch_pairs=2, seed=0)
    batches = list(sampler)
    assert len(batches) == len(sampler) == 1  # three words have two renditions; d has one
    for rows in batches:
        anchors, positives = rows[:2], rows[2:]
        assert len({words[i] for i in anchors}) == 2
        assert all(words[a] == words[p] and a != p for a, p in zip(anchors, positives))
    assert batches == list(PairBatches(words, list(range(len(words))), 2, seed=0))  # seeded
    with pytest.raises(ValueError, match="two word types"):
        PairBatches(["a", "a", "b"], [0, 1, 2], batch_pairs=2, seed=0)


@pytest.mark.parametrize("frame_stack", [1, 2])
def test_word_rnn_ignores_padding(frame_stack: int) -> None:
    torch.manual_seed(0)
    encoder = WordRnn(5, WordEncoderConfig(hidden=8, layers=2, dim=4, dropout=0.0, frame_stack=frame_stack)).eval()
    a, b = torch.randn(7, 5), torch.randn(3, 5)
    segments = Segments.concat([{"segments": [a.half().numpy(), b.half().numpy()], "words": ["x", "y"],
                                 "utterance": [0, 0], "position": [0, 1], "split": ["train", "train"]}])
    batch = segments.batch([0, 1])
    assert batch["feats"].shape == (2, 7, 5) and batch["lens"].tolist() == [7, 3]
    together = encoder(batch["feats"], batch["lens"])
    alone = encoder(segments.batch([1])["feats"], torch.tensor([3]))
    assert torch.allclose(together[1], alone[0], atol=1e-5)


def test_wordnet_topics_are_checked_and_read() -> None:
    with pytest.raises(ValueError, match="noun.dragons"):
        wordnet_topic_sentences(["noun.dragons"])
    sentences = wordnet_topic_sentences(["noun.animal"])
    assert len(sentences) > 5000 and any("dog" in s for s in sentences)


def test_target_speech_from_a_users_text(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PHONCLIP_CACHE", str(tmp_path / "cache"))
    text = tmp_path / "sentences.txt"
    text.write_text("The dog chased the cat.\nA cat sat on the mat\n\nbirds eat seeds and worms\none\n")
    cfg = SpokenWordsConfig(text=str(text), sentence_words=[2, 10], test_fraction=0.34, workers=1, n_mels=16)
    assert [len(s) for s in target_sentences(cfg)] and all(len(s) >= 2 for s in target_sentences(cfg))
    segments, summary = build_target(cfg, progress=False)
    assert summary["sentences"] == 3 and summary["test_sentences"] == 2
    spoken = " ".join(segments.words).split()
    expected = "the dog chased the cat a cat sat on the mat birds eat seeds and worms"
    assert sorted(spoken) == sorted(expected.split(" "))
    assert segments.feats.shape[1] == 16 and (segments.lengths() > 0).all()
    assert set(segments.split) == {"train", "test"}
    again, _ = build_target(cfg, progress=False)  # from the cache
    assert again.words == segments.words and torch.equal(again.feats, segments.feats)


def test_bad_config_is_named() -> None:
    with pytest.raises(ValueError, match="strategies"):
        as_config({"strategies": ["phonetic", "telepathy"]})
    with pytest.raises(FileNotFoundError, match="make train EXP=semantic_awe"):
        SemanticAwe({"init_from": "runs/nowhere"})
    with pytest.raises(FileNotFoundError, match="no such file"):
        SpokenWordsConfig(text="missing.txt").validate()

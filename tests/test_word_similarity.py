"""Semantic word-embedding scores: WordNet gold, user gold files, word similarity, same-word AP,
semantic query-by-example, and the word map."""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from pathlib import Path

import matplotlib.pyplot as plt
import pytest
import torch
from sklearn.metrics import average_precision_score

from data_modules.synthetic import cache_root
from phonclip.eval import word_similarity as ws

NOUNS = ["dog", "cat", "car", "tree", "apple"]


@pytest.fixture(scope="session")
def wordnet_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A private PHONCLIP_CACHE for the LF copy, set once: nltk's wordnet is a process singleton."""
    root = tmp_path_factory.mktemp("wordnet_cache")
    old = os.environ.get("PHONCLIP_CACHE")
    os.environ["PHONCLIP_CACHE"] = str(root)
    ws.wordnet.cache_clear()
    ws.wordnet()
    yield root
    ws.wordnet.cache_clear()
    if old is None:
        del os.environ["PHONCLIP_CACHE"]
    else:
        os.environ["PHONCLIP_CACHE"] = old


def _at_degrees(*degrees: float) -> torch.Tensor:
    """2-D unit vectors at the given angles: cosine similarity falls monotonically with the gap."""
    rad = torch.tensor(degrees, dtype=torch.float64) * math.pi / 180
    return torch.stack([rad.cos(), rad.sin()], dim=1)


# ---------------------------------------------------------------- WordNet


def test_wordnet_copy_has_lf_endings_and_no_leftovers(wordnet_cache: Path) -> None:
    corpora = wordnet_cache / "nltk_data" / "corpora"
    assert [p.name for p in corpora.iterdir()] == ["wordnet"]  # the temp dir was renamed away
    data = (corpora / "wordnet" / "data.noun").read_bytes()
    assert b"\r\n" not in data and data.count(b"\n") > 80_000


def test_wup_orders_related_words_first(wordnet_cache: Path) -> None:
    assert ws.wup_similarity("dog", "cat") > ws.wup_similarity("dog", "car")
    assert ws.wup_similarity("dog", "dog") == 1.0


@pytest.mark.parametrize("word", ["xyzzyq", "quickly"])  # unknown; adverb only
def test_wup_non_noun_is_none(wordnet_cache: Path, word: str) -> None:
    assert ws.wup_similarity(word, "dog") is None
    assert ws.wup_similarity("dog", word) is None


def test_wordnet_gold_seeded_sample_of_noun_pairs(
    wordnet_cache: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PHONCLIP_CACHE", str(tmp_path))
    words = [*NOUNS, "xyzzyq", "quickly", "dog"]
    gold = ws.wordnet_gold(words, max_pairs=4, seed=0)
    assert len(gold) == 4 and gold == sorted(gold)
    assert all(a < b and {a, b} <= set(NOUNS) for a, b, _ in gold)
    assert all(s == ws.wup_similarity(a, b) for a, b, s in gold)
    assert [(a, b) for a, b, _ in gold] != [(a, b) for a, b, _ in ws.wordnet_gold(words, 4, seed=1)]
    everything = ws.wordnet_gold(words, max_pairs=100, seed=0)
    assert len(everything) == len(NOUNS) * (len(NOUNS) - 1) // 2
    assert len({(a, b) for a, b, _ in everything}) == len(everything)


def test_wordnet_gold_second_call_reads_the_cache(
    wordnet_cache: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PHONCLIP_CACHE", str(tmp_path))
    first = ws.wordnet_gold(NOUNS, max_pairs=3, seed=7)
    assert len(list((cache_root() / "word_similarity").glob("*.json"))) == 1

    def boom(a: str, b: str) -> float:
        raise AssertionError("recomputed instead of reading the cache")

    monkeypatch.setattr(ws, "wup_similarity", boom)
    assert ws.wordnet_gold(list(reversed(NOUNS)), max_pairs=3, seed=7) == first
    with pytest.raises(AssertionError, match="recomputed"):
        ws.wordnet_gold(NOUNS, max_pairs=3, seed=8)  # a different key is computed afresh


# ---------------------------------------------------------------- user gold files


def test_read_similarity_tsv_header_tabs_and_spaces(tmp_path: Path) -> None:
    path = tmp_path / "gold.txt"
    path.write_text("word1\tword2\tSimLex999\nOld\tnew\t1.58\n\nsmart  intelligent 9.2\n")
    assert ws.read_similarity_tsv(path) == [("old", "new", 1.58), ("smart", "intelligent", 9.2)]


def test_read_similarity_tsv_without_header(tmp_path: Path) -> None:
    path = tmp_path / "gold.txt"
    path.write_text("tiger cat 7.35\n")
    assert ws.read_similarity_tsv(str(path)) == [("tiger", "cat", 7.35)]


def test_read_similarity_tsv_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nope.tsv"):
        ws.read_similarity_tsv(tmp_path / "nope.tsv")


@pytest.mark.parametrize(
    "text, line",
    [
        ("a b 1\nc d\n", 2),
        ("a b 1\nc d high\n", 2),
        ("w1 w2 score\na b 1\n\nc d x\n", 4),
        ("a b\n", 1),
    ],
)
def test_read_similarity_tsv_bad_line_names_file_and_line(
    tmp_path: Path, text: str, line: int
) -> None:
    path = tmp_path / "bad.tsv"
    path.write_text(text)
    with pytest.raises(ValueError, match=f"bad.tsv:{line}:"):
        ws.read_similarity_tsv(path)


@pytest.mark.parametrize("text", ["", "\n\n", "word1 word2 score\n"])
def test_read_similarity_tsv_no_pairs(tmp_path: Path, text: str) -> None:
    path = tmp_path / "empty.tsv"
    path.write_text(text)
    with pytest.raises(ValueError, match="no word pairs"):
        ws.read_similarity_tsv(path)


# ---------------------------------------------------------------- word similarity


def test_averaged_vectors_mean_per_word_type() -> None:
    emb = torch.tensor([[1.0, 0], [3.0, 2], [0, 5.0], [2.0, 4]])
    out = ws.averaged_vectors(emb, ["a", "a", "b", "a"])
    assert list(out) == ["a", "b"]
    assert torch.allclose(out["a"], torch.tensor([2.0, 2.0], dtype=torch.float64))
    assert torch.allclose(out["b"], torch.tensor([0.0, 5.0], dtype=torch.float64))


def test_averaged_vectors_length_mismatch_raises() -> None:
    with pytest.raises(ValueError, match="3 labels"):
        ws.averaged_vectors(torch.zeros(4, 2), ["a", "b", "c"])


def test_similarity_spearman_monotone_cosine_gives_one() -> None:
    # w0 at 0°, the others further away; norms differ so only cosine (not dot) is monotone in gold
    vecs = _at_degrees(0, 10, 30, 60, 100) * torch.tensor([[1.0], [9.0], [0.1], [5.0], [0.3]])
    vectors = {f"w{i}": v for i, v in enumerate(vecs)}
    gold = [("w0", "w1", 9.0), ("w0", "w2", 7.0), ("w3", "w0", 5.0), ("w0", "w4", 1.0)]
    gold.append(("w0", "unseen", 3.0))
    out = ws.similarity_spearman(gold, vectors)
    assert out == {"spearman": pytest.approx(1.0), "pairs": 4, "pairs_missing": 1}
    reversed_gold = [(a, b, -s) for a, b, s in gold]
    assert ws.similarity_spearman(reversed_gold, vectors)["spearman"] == pytest.approx(-1.0)


def test_similarity_spearman_too_few_pairs_is_nan() -> None:
    vectors = {w: v for w, v in zip("abc", _at_degrees(0, 10, 20), strict=True)}
    out = ws.similarity_spearman([("a", "b", 1.0), ("a", "c", 0.5), ("a", "z", 0.1)], vectors)
    assert math.isnan(out["spearman"]) and out["pairs"] == 2 and out["pairs_missing"] == 1


def _segments() -> tuple[torch.Tensor, list[str], list[tuple[str, str, float]]]:
    """Three noisy segments per word around angle-placed word centres, and gold that fits them."""
    g = torch.Generator().manual_seed(0)
    centres = _at_degrees(0, 20, 45, 80, 120, 170)
    words = [f"w{i}" for i in range(6) for _ in range(3)]
    emb = centres.repeat_interleave(3, dim=0) + 0.3 * torch.randn(
        18, 2, generator=g, dtype=torch.float64
    )
    gold = [
        (f"w{i}", f"w{j}", -abs(i - j) * 1.0 + 0.01 * i) for i in range(6) for j in range(i + 1, 6)
    ]
    return emb, words, gold


def test_single_sample_spearman_is_deterministic_and_varies_by_draw() -> None:
    emb, words, gold = _segments()
    out = ws.single_sample_spearman(gold, emb, words, draws=5, seed=3)
    assert out == ws.single_sample_spearman(gold, emb, words, draws=5, seed=3)
    assert out != ws.single_sample_spearman(gold, emb, words, draws=5, seed=4)
    assert out["pairs"] == 15 and out["spearman_std"] > 0 and 0 < out["spearman"] < 1


def test_single_sample_spearman_one_segment_per_word_equals_averaged() -> None:
    emb, words, gold = _segments()
    emb, words = emb[::3], words[::3]
    out = ws.single_sample_spearman(gold, emb, words, draws=3)
    full = ws.similarity_spearman(gold, ws.averaged_vectors(emb, words))
    assert out["spearman"] == pytest.approx(full["spearman"]) and out[
        "spearman_std"
    ] == pytest.approx(0.0, abs=1e-12)


# ---------------------------------------------------------------- same-word AP


def test_same_word_ap_matches_sklearn() -> None:
    g = torch.Generator().manual_seed(0)
    emb = torch.randn(40, 8, generator=g)
    labels = [str(int(i)) for i in torch.randint(0, 6, (40,), generator=g)]
    out = ws.same_word_average_precision(emb, labels)
    x = torch.nn.functional.normalize(emb.double(), dim=-1)
    i, j = torch.triu_indices(40, 40, offset=1)
    same = [labels[a] == labels[b] for a, b in zip(i.tolist(), j.tolist(), strict=True)]
    expected = average_precision_score(same, (x[i] * x[j]).sum(-1).numpy())
    assert out["average_precision"] == pytest.approx(expected, abs=1e-12)
    assert out["pairs"] == 780 and out["same_pairs"] == sum(same)
    assert out["chance"] == pytest.approx(sum(same) / 780)


def test_same_word_ap_identical_within_orthogonal_across_is_one() -> None:
    labels = ["a", "b", "a", "c", "b", "a", "c"]
    basis = {"a": [1.0, 0, 0], "b": [0, 2.0, 0], "c": [0, 0, 0.5]}
    out = ws.same_word_average_precision(torch.tensor([basis[x] for x in labels]), labels)
    assert out["average_precision"] == pytest.approx(1.0)
    assert out["pairs"] == 21 and out["same_pairs"] == 5


def test_same_word_ap_subsamples_segments_with_seed() -> None:
    g = torch.Generator().manual_seed(1)
    emb = torch.randn(100, 4, generator=g)
    labels = [str(i % 10) for i in range(100)]
    out = ws.same_word_average_precision(emb, labels, max_segments=30, seed=2)
    assert out["pairs"] == 30 * 29 // 2
    assert out == ws.same_word_average_precision(emb, labels, max_segments=30, seed=2)
    assert out != ws.same_word_average_precision(emb, labels, max_segments=30, seed=5)


# ---------------------------------------------------------------- semantic QbE


def _qbe_case() -> tuple[torch.Tensor, torch.Tensor]:
    """Two queries over eight utterances; relevance graded, distinct values per query."""
    g = torch.Generator().manual_seed(0)
    relevance = torch.rand(2, 8, generator=g)
    relevance[:, :3] = torch.tensor([0.9, 0.8, 0.7])  # three relevant utterances per query
    relevance[:, 3:] *= 0.5
    return relevance.clone(), relevance


def test_semantic_qbe_perfect_scores() -> None:
    scores, relevance = _qbe_case()
    exclude = torch.zeros(2, 8, dtype=torch.bool)
    out = ws.semantic_qbe(scores, relevance, exclude, threshold=0.6, k=3)
    assert out == {
        "spearman": pytest.approx(1.0),
        "precision_at_3": pytest.approx(1.0),
        "chance_precision_at_3": pytest.approx(3 / 8),
        "queries": 2,
        "queries_skipped": 0,
    }


def test_semantic_qbe_honours_exclude() -> None:
    scores, relevance = _qbe_case()
    # utterances 6, 7 contain the query word: top score, no semantic relevance; they must not count
    scores[:, 6:] = 10.0 + torch.arange(2.0)
    relevance[:, 6:] = 0.0
    exclude = torch.zeros(2, 8, dtype=torch.bool)
    exclude[:, 6:] = True
    out = ws.semantic_qbe(scores, relevance, exclude, threshold=0.6, k=3)
    assert out["spearman"] == pytest.approx(1.0) and out["precision_at_3"] == pytest.approx(1.0)
    assert out["chance_precision_at_3"] == pytest.approx(3 / 6)
    kept = ws.semantic_qbe(scores, relevance, torch.zeros_like(exclude), threshold=0.6, k=3)
    assert kept["precision_at_3"] == pytest.approx(1 / 3) and kept["spearman"] < 0.9


def test_semantic_qbe_skips_queries_without_relevant_utterances() -> None:
    scores, relevance = _qbe_case()
    relevance[1] *= 0.5  # nothing reaches the threshold for query 1
    out = ws.semantic_qbe(
        scores, relevance, torch.zeros(2, 8, dtype=torch.bool), threshold=0.6, k=2
    )
    assert out["queries"] == 1 and out["queries_skipped"] == 1
    assert out["precision_at_2"] == pytest.approx(1.0) and out[
        "chance_precision_at_2"
    ] == pytest.approx(3 / 8)


# ---------------------------------------------------------------- figure


@pytest.mark.parametrize("max_words, expected", [(60, 5), (3, 3)])
def test_word_map_figure_labels_each_word(max_words: int, expected: int) -> None:
    g = torch.Generator().manual_seed(0)
    vectors = {w: torch.randn(6, generator=g) for w in NOUNS}
    fig = ws.word_map_figure(vectors, "words", max_words=max_words)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.texts] == NOUNS[:expected]
    assert all(t.get_fontsize() == 7 for t in ax.texts) and ax.get_title() == "words"
    plt.close(fig)

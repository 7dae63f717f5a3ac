"""The semantic-AWE suite: run stage 2 on the target language for each strategy, then score every strategy
the same way (word similarity against gold, averaged and single-sample; semantic query-by-example), plus the
phonetic same-word AP of stage 1 and a PCA map of frequent words."""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from data_modules.pronunciations import wordnet_nouns
from phonclip.encoders.word_rnn import embed_rows
from phonclip.eval.plots import save_figure
from phonclip.eval.word_similarity import (
    averaged_vectors,
    read_similarity_tsv,
    same_word_average_precision,
    semantic_qbe,
    similarity_spearman,
    single_sample_spearman,
    word_map_figure,
    wordnet_gold,
)
from phonclip.models.skipgram import (
    Projection,
    Skipgram,
    context_pairs,
    fine_tune_on_context,
    fit,
    fit_kmeans,
    one_hot_labels,
    soft_labels,
)

Gold = list[tuple[str, str, float]]


class TargetSpeech:
    """The target language's segments split for stage 2: unlabelled training speech, and the test speech scored."""

    def __init__(self, model: Any, segments: Any) -> None:
        self.segments = segments
        self.encoder = model.encoder
        self.train_rows, self.test_rows = segments.rows("train"), segments.rows("test")
        self.train_words = [segments.words[i] for i in self.train_rows]
        self.test_words = [segments.words[i] for i in self.test_rows]
        self.test_utterance = [segments.utterance[i] for i in self.test_rows]
        self.phonetic_train = model.embed_segments(segments, self.train_rows)
        self.phonetic_test = model.embed_segments(segments, self.test_rows)
        utterance = [segments.utterance[i] for i in self.train_rows]
        position = [segments.position[i] for i in self.train_rows]
        self.pairs = context_pairs(utterance, position, model.cfg.stage2.window)


def _phonetic(speech: TargetSpeech, cfg: Any, seed: int) -> Tensor:
    return speech.phonetic_test


def _cluster_skipgram(speech: TargetSpeech, cfg: Any, seed: int) -> Tensor:
    centroids = fit_kmeans(speech.phonetic_train, cfg.clusters, seed)
    train = soft_labels(speech.phonetic_train, centroids, cfg.top_k, cfg.soft_temperature)
    skipgram = fit(lambda: Skipgram(cfg.clusters, cfg.dim), train, speech.pairs, cfg, seed, "cluster skipgram")
    with torch.no_grad():
        return skipgram.embed(soft_labels(speech.phonetic_test, centroids, cfg.top_k, cfg.soft_temperature))


def _projection(speech: TargetSpeech, cfg: Any, seed: int) -> Tensor:
    train = F.normalize(speech.phonetic_train, dim=-1)
    build = lambda: Projection(train.shape[1], cfg.dim, cfg.projection_temperature)
    projection = fit(build, train, speech.pairs, cfg, seed, "projection")
    with torch.no_grad():
        return projection.embed(F.normalize(speech.phonetic_test, dim=-1))


def _context_rnn(speech: TargetSpeech, cfg: Any, seed: int) -> Tensor:
    encoder = fine_tune_on_context(speech.encoder, speech.segments, speech.train_rows, speech.pairs, cfg, seed)
    return embed_rows(encoder, speech.segments, speech.test_rows)


def _text_skipgram(speech: TargetSpeech, cfg: Any, seed: int) -> Tensor:
    """The topline: true word identities, the ``clusters - 1`` most frequent (the rest share one label)."""
    frequent = [w for w, _ in Counter(speech.train_words).most_common(cfg.clusters - 1)]
    vocabulary = {w: i for i, w in enumerate(frequent)}
    train = one_hot_labels(speech.train_words, vocabulary)
    skipgram = fit(lambda: Skipgram(len(vocabulary) + 1, cfg.dim), train, speech.pairs, cfg, seed, "text skipgram")
    with torch.no_grad():
        return skipgram.embed(one_hot_labels(speech.test_words, vocabulary))


STRATEGIES: dict[str, Callable[[TargetSpeech, Any, int], Tensor]] = {
    "phonetic": _phonetic,
    "cluster_skipgram": _cluster_skipgram,
    "projection": _projection,
    "context_rnn": _context_rnn,
    "text_skipgram": _text_skipgram,
}


def evaluation_words(speech: TargetSpeech, e: Any) -> list[str]:
    """Target words frequent enough in both splits to be scored, most frequent first (WordNet: nouns only)."""
    train, test = Counter(speech.train_words), Counter(speech.test_words)
    nouns = wordnet_nouns() if e.gold == "wordnet" else None
    words = [w for w, n in train.most_common() if n >= e.min_train_count and test[w] >= e.min_test_count
             and len(w) >= 3 and (nouns is None or w in nouns)]
    return words[: e.words] if e.gold == "wordnet" else words


def gold_pairs(words: list[str], e: Any) -> Gold:
    """WordNet Wu–Palmer over the evaluation words, or the user's TSV restricted to them."""
    if e.gold == "wordnet":
        return wordnet_gold(words, e.max_pairs, e.seed)
    known = set(words)
    pairs = [(a, b, s) for a, b, s in read_similarity_tsv(e.gold) if a in known and b in known]
    if len(pairs) < 3:
        raise ValueError(f"model.eval.gold={e.gold}: only {len(pairs)} of its pairs are spoken often enough to score")
    return pairs


def same_word_ap(speech: TargetSpeech, e: Any) -> dict[str, float]:
    """Stage 1's phonetic quality on the target language: same-word AP over test words of ≥ ``ap_min_chars`` letters."""
    rows = [i for i, w in enumerate(speech.test_words) if len(w) >= e.ap_min_chars and " " not in w]
    labels = [speech.test_words[i] for i in rows]
    return same_word_average_precision(speech.phonetic_test[rows], labels, e.ap_max_segments, e.seed)


def qbe(embeddings: Tensor, speech: TargetSpeech, words: Sequence[str], gold: Gold, e: Any) -> dict[str, float]:
    """Semantic query-by-example: one spoken segment of an evaluation word ranks the test utterances (best
    segment match); relevance is the gold similarity of the query to the utterance's best evaluation word,
    and utterances that contain the query word itself are left out (only meaning counts)."""
    sim = {(a, b): s for a, b, s in gold} | {(b, a): s for a, b, s in gold}
    rng = random.Random(f"{e.seed}/qbe")
    by_word: dict[str, list[int]] = {}
    for i, w in enumerate(speech.test_words):
        by_word.setdefault(w, []).append(i)
    queries = [q for q in words if q in by_word][: e.qbe_queries]
    utterances = sorted(set(speech.test_utterance))
    column = {u: j for j, u in enumerate(utterances)}
    seg_utt = torch.tensor([column[u] for u in speech.test_utterance])
    content: list[set[str]] = [set() for _ in utterances]
    for w, u in zip(speech.test_words, seg_utt.tolist()):
        content[u].add(w)
    query_rows = [rng.choice(by_word[q]) for q in queries]
    x = F.normalize(embeddings, dim=-1)
    seg_scores = x[query_rows] @ x.T  # [Q, S]
    scores = torch.full((len(queries), len(utterances)), -2.0).scatter_reduce(
        1, seg_utt.expand(len(queries), -1), seg_scores, reduce="amax")
    relevance = torch.tensor([[max((sim.get((q, w), 0.0) for w in c), default=0.0) for c in content] for q in queries])
    exclude = torch.tensor([[q in c for c in content] for q in queries])
    return semantic_qbe(scores, relevance, exclude, e.qbe_threshold)


def score_strategy(embeddings: Tensor, speech: TargetSpeech, words: list[str], gold: Gold, e: Any) -> dict[str, float]:
    """Every semantic metric of one strategy's test-segment embeddings."""
    keep = set(words)
    rows = [i for i, w in enumerate(speech.test_words) if w in keep]
    labels = [speech.test_words[i] for i in rows]
    averaged = similarity_spearman(gold, averaged_vectors(embeddings[rows], labels))
    single = single_sample_spearman(gold, embeddings[rows], labels, seed=e.seed)
    search = qbe(embeddings, speech, words, gold, e)
    return {
        "spearman_averaged": averaged["spearman"],
        "spearman_single": single["spearman"],
        "spearman_single_std": single["spearman_std"],
        "pairs": averaged["pairs"],
        "qbe_spearman": search["spearman"],
        "qbe_precision_at_10": search["precision_at_10"],
        "qbe_chance_precision_at_10": search["chance_precision_at_10"],
    }


def evaluate_semantic_awe(model: Any, datamodule: Any, out_dir: Path, logger: Any = None) -> dict[str, Any]:
    """``{data, phonetic_awe, <strategy>...}`` for the strategies the config lists; PCA maps under plots/."""
    cfg = model.cfg
    speech = TargetSpeech(model, datamodule.target)
    words = evaluation_words(speech, cfg.eval)
    gold = gold_pairs(words, cfg.eval)
    results: dict[str, Any] = {
        "data": {**datamodule.target_summary, "evaluation_words": len(words), "gold_pairs": len(gold),
                 "context_pairs": len(speech.pairs), "target": datamodule.cfg.target_voice},
        "phonetic_awe": same_word_ap(speech, cfg.eval),
    }
    for strategy in cfg.strategies:
        started = time.time()
        embeddings = STRATEGIES[strategy](speech, cfg.stage2, model.seed).float()
        results[strategy] = score_strategy(embeddings, speech, words, gold, cfg.eval)
        results[strategy]["seconds"] = round(time.time() - started, 1)
        keep = set(words[: cfg.eval.plot_words])
        rows = [i for i, w in enumerate(speech.test_words) if w in keep]
        vectors = averaged_vectors(embeddings[rows], [speech.test_words[i] for i in rows])
        figure = word_map_figure(vectors, f"{strategy}: frequent target words (PCA)", cfg.eval.plot_words)
        save_figure(figure, f"word_map_{strategy}", out_dir, logger)
    return results

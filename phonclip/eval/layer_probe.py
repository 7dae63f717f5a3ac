"""Spoken translation retrieval between languages, layer by layer, with and without pronunciation control.

For every ordered language pair (A, B), each utterance of A queries the utterances of B that mean
something (the same item ids); a hit is its own translation. Uncontrolled, the gallery is every B item.
Controlled, a query counts only when its translation's phone string is far from its own (normalised
phone edit distance ≥ ``threshold``), and its gallery holds only distractors as far from the query as the
translation is (within ``tolerance``): pronunciation overlap then ranks the translation no better than a
distractor, which the ``phone_distance`` baseline row shows. A ``duration`` baseline shows what
utterance length alone carries. Chance levels are exact for each query's gallery size.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import permutations
from typing import Any

import editdistance
import numpy as np
import torch
from matplotlib.figure import Figure

from phonclip.ipa import segment


@dataclass
class ControlConfig:
    """Which translation pairs and distractors the pronunciation-controlled retrieval keeps."""

    threshold: float = 0.6  # normalised phone edit distance a translation pair must reach
    tolerance: float = 0.05  # distractors' distance to the query: the translation's ± this
    min_distractors: int = 5  # a controlled query needs at least this many
    min_queries: int = 5  # a language pair is averaged in when it has at least this many controlled queries


def phone_distances(ipa_a: list[str], ipa_b: list[str]) -> np.ndarray:
    """Levenshtein distance of phone segments over the longer string's length: [len(a), len(b)] in [0, 1]."""
    segs_a = [segment(s) for s in ipa_a]
    segs_b = [segment(s) for s in ipa_b]
    out = np.ones((len(segs_a), len(segs_b)))
    for i, x in enumerate(segs_a):
        for j, y in enumerate(segs_b):
            if x or y:
                out[i, j] = editdistance.eval(x, y) / max(len(x), len(y))
    return out


def ranks_of_targets(scores: np.ndarray, galleries: dict[int, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Hit@1 and reciprocal rank of each query q (row q, its target column q) within its gallery of columns,
    ties shared fairly (first place tied with m others counts 1 / (m + 1); a tied rank is the mean place)."""
    hits, rr = np.zeros(len(galleries)), np.zeros(len(galleries))
    for k, (q, gallery) in enumerate(galleries.items()):
        others = scores[q, gallery[gallery != q]]
        above, tied = int((others > scores[q, q]).sum()), int((others == scores[q, q]).sum())
        hits[k] = (above == 0) / (1 + tied)
        rr[k] = 1.0 / (1 + above + tied / 2)
    return hits, rr


def chance(gallery_sizes: np.ndarray) -> tuple[float, float]:
    """Expected Hit@1 and MRR of a random ranking, averaged over queries with these gallery sizes."""
    harmonic = np.array([np.sum(1.0 / np.arange(1, n + 1)) for n in gallery_sizes])
    return float(np.mean(1.0 / gallery_sizes)), float(np.mean(harmonic / gallery_sizes))


def controlled_galleries(dist: np.ndarray, cfg: ControlConfig) -> dict[int, np.ndarray]:
    """For each query whose translation is at least ``threshold`` away, the translation plus the distractors
    whose distance to the query is within ``tolerance`` of the translation's (also ≥ threshold)."""
    out = {}
    for q in range(len(dist)):
        target = dist[q, q]
        if target < cfg.threshold:
            continue
        near = (np.abs(dist[q] - target) <= cfg.tolerance) & (dist[q] >= cfg.threshold)
        near[q] = True
        if near.sum() - 1 >= cfg.min_distractors:
            out[q] = np.flatnonzero(near)
    return out


@dataclass
class PairTask:
    """One ordered language pair: row i of A and row i of B mean the same thing."""

    lang_a: str
    lang_b: str
    dist: np.ndarray | None  # [n, n] phone distances, A rows × B rows (None: a language without IPA)
    durations: np.ndarray  # [2, n] seconds of A and B rows
    rows_a: np.ndarray  # indices into the embedding table
    rows_b: np.ndarray


def pair_tasks(items: list[str], langs: list[str], ipa: list[str], durations: np.ndarray) -> list[PairTask]:
    """Every ordered pair of languages with its shared items (distances computed once per unordered pair)."""
    by_lang: dict[str, dict[str, int]] = {}
    for row, (item, lang) in enumerate(zip(items, langs, strict=True)):
        by_lang.setdefault(lang, {})[item] = row
    tasks, cached = [], {}
    for a, b in permutations(sorted(by_lang), 2):
        shared = sorted(set(by_lang[a]) & set(by_lang[b]))
        rows_a = np.array([by_lang[a][i] for i in shared], dtype=int)
        rows_b = np.array([by_lang[b][i] for i in shared], dtype=int)
        if not all(ipa[r] for r in np.r_[rows_a, rows_b]):
            dist = None
        elif (b, a) in cached:
            dist = cached[(b, a)].T
        else:
            dist = cached[(a, b)] = phone_distances([ipa[r] for r in rows_a], [ipa[r] for r in rows_b])
        tasks.append(PairTask(a, b, dist, np.stack([durations[rows_a], durations[rows_b]]), rows_a, rows_b))
    return tasks


def _score(scores: np.ndarray, galleries: dict[int, np.ndarray]) -> dict[str, float]:
    hits, rr = ranks_of_targets(scores, galleries)
    chance_hit, chance_mrr = chance(np.array([len(g) for g in galleries.values()]))
    return {"hit@1": float(hits.mean()), "mrr": float(rr.mean()), "chance_hit@1": chance_hit,
            "chance_mrr": chance_mrr, "queries": len(galleries)}


def _pair_scores(task: PairTask, scores: np.ndarray, cfg: ControlConfig) -> dict[str, dict[str, float]]:
    """Uncontrolled and (when the pair has enough queries) controlled retrieval of one pair."""
    n = len(task.rows_a)
    out = {"uncontrolled": _score(scores, {q: np.arange(n) for q in range(n)})}
    controlled = {} if task.dist is None else controlled_galleries(task.dist, cfg)
    if len(controlled) >= cfg.min_queries:
        out["controlled"] = _score(scores, controlled)
    return out


def _mean(rows: list[dict[str, float]]) -> dict[str, float]:
    """Macro average over language pairs (each pair counts once), with how many pairs and queries."""
    out = {k: float(np.mean([r[k] for r in rows])) for k in rows[0] if k != "queries"}
    return out | {"pairs": len(rows), "queries": int(sum(r["queries"] for r in rows))}


def probe(embeddings: torch.Tensor, tasks: list[PairTask], unseen: set[str], cfg: ControlConfig) -> dict[str, Any]:
    """Retrieval per layer (``embeddings`` [layers, N, D], any scale) and the two baselines, macro-averaged
    over ordered language pairs; ``*_unseen`` rows average the pairs that involve an unseen language."""
    unit = torch.nn.functional.normalize(embeddings.float(), dim=-1)
    per_layer: list[dict[str, list]] = [{} for _ in range(len(unit))]
    baselines: dict[str, dict[str, list]] = {"phone_distance": {}, "duration": {}}
    for task in tasks:
        groups = ["all"] + (["unseen"] if {task.lang_a, task.lang_b} & unseen else [])
        sims = torch.einsum("lid,ljd->lij", unit[:, task.rows_a], unit[:, task.rows_b]).numpy()
        log_dur = np.log(task.durations)
        scored = [(s, per_layer[k]) for k, s in enumerate(sims)]
        scored.append((-np.abs(log_dur[0][:, None] - log_dur[1][None, :]), baselines["duration"]))
        if task.dist is not None:
            scored.append((-task.dist, baselines["phone_distance"]))
        for scores, bucket in scored:
            for kind, metrics in _pair_scores(task, scores, cfg).items():
                for group in groups:
                    bucket.setdefault(f"{kind}_{group}" if group != "all" else kind, []).append(metrics)
    tables = {f"layer_{k}": bucket for k, bucket in enumerate(per_layer)} | {k: v for k, v in baselines.items() if v}
    return {row: {kind: _mean(rows) for kind, rows in sorted(bucket.items())} for row, bucket in tables.items()}


def layer_curves(results: dict[str, Any], title: str) -> Figure:
    """Hit@1 by layer, uncontrolled and controlled, each with its chance level and the duration baseline."""
    import matplotlib.pyplot as plt

    layers = sorted((k for k in results if k.startswith("layer_")), key=lambda k: int(k.split("_")[1]))
    x = [int(k.split("_")[1]) for k in layers]
    fig, ax = plt.subplots(figsize=(6, 4))
    for kind, color in (("uncontrolled", "tab:blue"), ("controlled", "tab:red")):
        if kind not in results[layers[0]]:
            continue
        ax.plot(x, [results[k][kind]["hit@1"] for k in layers], "o-", color=color, label=f"{kind}")
        ax.axhline(results[layers[0]][kind]["chance_hit@1"], color=color, ls=":", label=f"{kind}: chance")
        ax.axhline(results["duration"][kind]["hit@1"], color=color, ls="--", alpha=0.6,
                   label=f"{kind}: duration only")
    ax.set_xticks(x, ["emb"] + [str(i) for i in x[1:]])
    ax.set_xlabel("layer (mean-pooled states)")
    ax.set_ylabel("translation retrieval Hit@1")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    return fig


def distance_histogram(tasks: list[PairTask], cfg: ControlConfig) -> Figure:
    """Phone distance of translation pairs (the diagonal) against all other pairs, with the threshold: what
    the control keeps."""
    import matplotlib.pyplot as plt

    own = np.concatenate([np.diag(t.dist) for t in tasks if t.dist is not None])
    other = np.concatenate([t.dist[~np.eye(len(t.dist), dtype=bool)] for t in tasks if t.dist is not None])
    fig, ax = plt.subplots(figsize=(6, 3.5))
    bins = np.linspace(0, 1, 41)
    ax.hist(other, bins=bins, density=True, alpha=0.5, label="non-translations")
    ax.hist(own, bins=bins, density=True, alpha=0.6, label="translations")
    ax.axvline(cfg.threshold, color="k", ls="--", label=f"threshold {cfg.threshold}")
    ax.set_xlabel("normalised phone edit distance")
    ax.set_ylabel("density")
    ax.legend(fontsize=7)
    return fig


def reading(results: dict[str, Any]) -> list[str]:
    """What the probe's numbers say, and what a model trained only on espeak phone matching can and cannot show."""
    layers = [k for k in results if k.startswith("layer_")]
    lines = []
    for kind in ("uncontrolled", "controlled"):
        if kind not in results[layers[0]]:
            lines.append(f"- {kind}: no language pair had enough queries.")
            continue
        best = max(layers, key=lambda k: results[k][kind]["hit@1"])
        row = results[best][kind]
        lines.append(
            f"- {kind} ({row['pairs']} language pairs, {row['queries']} queries): best layer {best.split('_')[1]} "
            f"(0 = embeddings) with Hit@1 {row['hit@1']:.3f} against chance {row['chance_hit@1']:.3f}; "
            + ", ".join(f"{name.replace('_', ' ')} alone {results[name][kind]['hit@1']:.3f}"
                        for name in ("phone_distance", "duration") if kind in results.get(name, {}))
            + ".")
    return lines + [
        "",
        ("What this can and cannot show. The default CLAP-IPA encoder was trained only to match espeak speech to espeak "
        "phone strings, word by word: no objective ever tied one meaning across languages. Whatever lets a "
        "translation be found must be in the sound itself: shared phones (the uncontrolled rows, which the phone "
        "distance alone shows) and, under control, what is left: length and rhythm (the duration row), voice and "
        "recording conditions, or phone similarity finer than the edit distance. A controlled curve above chance "
        "here is therefore not evidence of semantic alignment; it is a check that the probe, the pronunciation "
        "control and the chance levels work. A semantic reading needs an encoder trained on speech-to-text or "
        "translation (`ARGS=\"model.speech.source=openai/whisper-base\"` where the network allows) and real "
        "parallel speech such as FLEURS (`data.manifest`)."),
    ]

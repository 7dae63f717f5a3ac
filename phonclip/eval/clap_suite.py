"""The CLAP-IPA evaluation suite: retrieval in three directions, KWS (easy/hard), minimal-pair discrimination, plots."""

from __future__ import annotations

import random
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from phonclip.eval.detection import auc_eer
from phonclip.eval.plots import per_language_bars, save_figure, similarity_matrix
from phonclip.eval.retrieval import chance_levels, labels_to_relevance, retrieval_metrics
from phonclip.minimal_pairs import MinimalPairSampler

MIN_SPEECH_QUERIES = 20  # fewer second renditions make speech→speech numbers noise


@dataclass
class EmbeddedSet:
    """A test set after embedding: one speech embedding per clip, with its IPA, text and language."""

    speech: torch.Tensor  # [N, D]
    ipa: list[str]
    text: list[str]
    lang: list[str]


def embed_set(model: Any, loader: Any, max_clips: int, desc: str) -> EmbeddedSet:
    """Speech embeddings of the first ``max_clips`` clips of a test loader (deterministic order)."""
    speech, ipa, text, lang = [], [], [], []
    device = model.device
    for batch in tqdm(loader, desc=f"embed {desc}", leave=False):
        with torch.no_grad():
            speech.append(model.speech_embedding(batch["audio"].to(device), batch["audio_lens"].to(device)).float().cpu())
        ipa += batch["ipa"]
        text += batch["text"]
        lang += batch["lang"]
        if len(ipa) >= max_clips:
            break
    n = min(max_clips, len(ipa))
    return EmbeddedSet(torch.cat(speech)[:n] if speech else torch.empty(0), ipa[:n], text[:n], lang[:n])


def take(s: EmbeddedSet, idx: list[int]) -> EmbeddedSet:
    return EmbeddedSet(s.speech[idx], [s.ipa[i] for i in idx], [s.text[i] for i in idx], [s.lang[i] for i in idx])


def gallery_indices(ipa: list[str], size: int, seed: int) -> tuple[list[int], list[int]]:
    """A seeded gallery of ``size`` distinct words (the first clip of each), and the second rendition of
    each gallery word that has one: the speech→speech queries. Drawn across the whole set."""
    clips: dict[str, list[int]] = defaultdict(list)
    for i, label in enumerate(ipa):
        clips[label].append(i)
    words = list(clips)
    rng = random.Random(seed)
    chosen = sorted(rng.sample(range(len(words)), min(size, len(words))))
    gallery = [clips[words[w]][0] for w in chosen]
    partners = [clips[words[w]][1] for w in chosen if len(clips[words[w]]) > 1]
    return gallery, partners


def draw_gallery(s: EmbeddedSet, size: int, seed: int) -> tuple[EmbeddedSet, EmbeddedSet]:
    """The gallery and speech→speech queries of ``gallery_indices``, as embedded sets."""
    gallery, partners = gallery_indices(s.ipa, size, seed)
    return take(s, gallery), take(s, partners)


def _queries(model: Any, s: EmbeddedSet) -> list[str]:
    """The strings the phone encoder sees: IPA, or orthography for a text-units model."""
    return s.ipa if model.cfg.units == "ipa" else s.text


def retrieval(model: Any, gallery: EmbeddedSet, partners: EmbeddedSet | None = None) -> dict[str, dict[str, float]]:
    """phone→speech and speech→phone mAP / Hit@k over a gallery of distinct words, and speech→speech
    (other renditions of gallery words as queries) when there are enough of them; with chance levels."""
    labels = _queries(model, gallery)
    unique = sorted(set(labels))
    phones = model.embed_phones(unique)
    rel = labels_to_relevance(unique, labels)
    out = {"phone→speech": _with_chance(phones @ gallery.speech.T, rel)}
    out["speech→phone"] = _with_chance(gallery.speech @ phones.T, rel.T.contiguous())
    if partners is not None and len(partners.ipa) >= MIN_SPEECH_QUERIES:
        scores = partners.speech @ gallery.speech.T
        out["speech→speech"] = _with_chance(scores, labels_to_relevance(partners.ipa, gallery.ipa))
    return out


def _with_chance(scores: torch.Tensor, relevant: torch.Tensor) -> dict[str, float]:
    metrics = retrieval_metrics(scores, relevant, ks=(1, 10))
    chance = chance_levels(relevant, ks=(1, 10))
    return {**metrics, **{f"chance_{k}": v for k, v in chance.items()}}


def kws(model: Any, s: EmbeddedSet, sampler: MinimalPairSampler | None, seed: int) -> dict[str, float]:
    """LibriPhrase-style detection: each clip vs its own keyword, a random other word, and a minimal pair."""
    rng = random.Random(seed)
    labels = _queries(model, s)
    easy = [_random_other(labels, lab, rng) for lab in labels]
    pos = (s.speech * model.embed_phones(labels)).sum(-1)
    neg_easy = (s.speech * model.embed_phones(easy)).sum(-1)
    ones, zeros = torch.ones_like(pos, dtype=torch.bool), torch.zeros_like(pos, dtype=torch.bool)
    out = {f"easy_{k}": v for k, v in auc_eer(torch.cat([pos, neg_easy]), torch.cat([ones, zeros])).items()}
    if sampler is not None:
        hard = [sampler(ipa, rng) for ipa in s.ipa]
        neg_hard = (s.speech * model.embed_phones(hard)).sum(-1)
        out |= {f"hard_{k}": v for k, v in auc_eer(torch.cat([pos, neg_hard]), torch.cat([ones, zeros])).items()}
    return {k: v for k, v in out.items() if not k.endswith("threshold")}


def _random_other(labels: list[str], label: str, rng: random.Random) -> str:
    """A random label different from ``label`` (a few tries; a set of one word has no other)."""
    for _ in range(32):
        other = rng.choice(labels)
        if other != label:
            return other
    raise ValueError("KWS needs at least two distinct keywords in a test set")


def minimal_pair_accuracy(model: Any, s: EmbeddedSet, sampler: MinimalPairSampler, k: int, seed: int) -> float:
    """Fraction of clips whose true IPA outscores all of k one-segment variants (chance 1/(k+1))."""
    rng = random.Random(seed)
    variants = [[sampler(ipa, rng) for _ in range(k)] for ipa in s.ipa]
    true = (s.speech * model.embed_phones(s.ipa)).sum(-1)
    flat = model.embed_phones([v for vs in variants for v in vs]).view(len(s.ipa), k, -1)
    other = torch.einsum("nd,nkd->nk", s.speech, flat)
    return float((true > other.max(dim=1).values).float().mean())


def per_language(model: Any, s: EmbeddedSet) -> dict[str, dict[str, float]]:
    """phone→speech metrics within each language's own gallery."""
    by_lang: dict[str, list[int]] = defaultdict(list)
    for i, lang in enumerate(s.lang):
        by_lang[lang].append(i)
    rows = {}
    for lang, idx in sorted(by_lang.items()):
        p2s = retrieval(model, take(s, idx))["phone→speech"]
        rows[lang] = {"n": len(idx), "hit@1": p2s["hit@1"], "mAP": p2s["mAP"], "chance_hit@1": p2s["chance_hit@1"]}
    return rows


def evaluate_clap(model: Any, datamodule: Any, out_dir: Path, cfg: Any, logger: Any = None) -> dict[str, Any]:
    """Every metric on every test set of the DataModule; plots under ``out_dir/plots`` and in TensorBoard."""
    model.eval()
    model.to(model.eval_device)
    sampler = MinimalPairSampler(seed=cfg.kws_seed) if model.cfg.units == "ipa" else None
    results: dict[str, Any] = {}
    language_hits: dict[str, float] = {}
    test_sets = datamodule.test_sets()
    for name, loader in test_sets.items():
        s, partners = draw_gallery(embed_set(model, loader, cfg.max_clips, name), cfg.gallery_size, cfg.kws_seed)
        if not s.ipa:
            continue
        row: dict[str, Any] = {"clips": len(s.ipa), "distinct": len(set(_queries(model, s))),
                               "speech_queries": len(partners.ipa)}
        row |= retrieval(model, s, partners)
        row["kws"] = kws(model, s, sampler, cfg.kws_seed)
        if sampler is not None:
            row["minimal_pair_acc"] = minimal_pair_accuracy(model, s, sampler, cfg.minimal_pair_k, cfg.kws_seed)
            row["minimal_pair_chance"] = 1 / (cfg.minimal_pair_k + 1)
        if len(set(s.lang)) > 1:
            row["per_language"] = per_language(model, s)
            language_hits |= {f"{lang} ({name})": r["hit@1"] for lang, r in row["per_language"].items()}
        results[name] = row
        if name == next(iter(test_sets)):
            save_figure(similarity_matrix(model, s, cfg.similarity_plot_size), "similarity_matrix", out_dir, logger)
    if language_hits:
        save_figure(per_language_bars(language_hits), "per_language_hit1", out_dir, logger)
    return results


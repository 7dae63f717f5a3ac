"""The SCRAPS evaluation suite: retrieval both ways, then how the matched score (cosine of a clip and its
own IPA) reacts to wrong phones (sensitivity), to noise (robustness), and to the phone error rate between
what was said and what was meant (intelligibility); curves as PNG and in TensorBoard.

Every analysis runs on the clips of each test set's retrieval gallery: distinct words, one clip each.
"""

from __future__ import annotations

import random
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from matplotlib.figure import Figure
from torch import Tensor
from torchmetrics.functional import spearman_corrcoef
from tqdm import tqdm

from phonclip.eval import noise
from phonclip.eval.clap_suite import EmbeddedSet, gallery_indices, retrieval
from phonclip.eval.plots import plt, save_figure
from phonclip.eval.retrieval import labels_to_relevance, retrieval_metrics
from phonclip.ipa import STRESS_MARKS, WORD_BOUNDARY
from phonclip.minimal_pairs import MinimalPairSampler, segment_edit_distance


@dataclass
class ClipSet:
    """A test set's clips as waveforms, with their IPA and language."""

    audio: list[Tensor]
    ipa: list[str]
    lang: list[str]

    def take(self, idx: list[int]) -> ClipSet:
        return ClipSet([self.audio[i] for i in idx], [self.ipa[i] for i in idx], [self.lang[i] for i in idx])


def read_clips(loader: Any, max_clips: int, desc: str) -> ClipSet:
    """The first ``max_clips`` clips of a test loader (its fixed order), unpadded."""
    clips = ClipSet([], [], [])
    for batch in tqdm(loader, desc=f"read {desc}", leave=False):
        for audio, n, ipa, lang in zip(batch["audio"], batch["audio_lens"], batch["ipa"], batch["lang"]):
            clips.audio.append(audio[: int(n)].float().clone())
            clips.ipa.append(ipa)
            clips.lang.append(lang)
        if len(clips.ipa) >= max_clips:
            break
    return clips.take(list(range(min(max_clips, len(clips.ipa)))))


def matched_scores(speech: Tensor, phones: Tensor) -> Tensor:
    """Cosine of each clip with its own transcription (rows of two L2-normalised [N, D] tensors)."""
    return (speech * phones).sum(-1)


def change(clean: Tensor, corrupted: Tensor) -> dict[str, float]:
    """How matched scores moved: the share that dropped, the share that rose, and the mean relative change
    (s′ − s) / |s| over pairs (the paper's Table 1); a score blind to the change drops in none."""
    relative = (corrupted - clean) / clean.abs().clamp(min=1e-6)
    return {"drop": float((corrupted < clean).float().mean()), "rise": float((corrupted > clean).float().mean()),
            "rel_change": float(relative.mean())}


# ---- sensitivity --------------------------------------------------------------------------------
def _is_phone(seg: str) -> bool:
    return seg != WORD_BOUNDARY and seg not in STRESS_MARKS


def substitute(segments: list[str], rate: float, replacement: Any, rng: random.Random) -> str:
    """``segments`` with max(1, round(rate · phones)) distinct phones replaced by ``replacement(phone, rng)``."""
    positions = [i for i, s in enumerate(segments) if _is_phone(s)]
    out = list(segments)
    for i in rng.sample(positions, min(len(positions), max(1, round(rate * len(positions))))):
        out[i] = replacement(out[i], rng)
    return "".join(out)


def random_phone(inventory: list[str]):
    """Replacement uniform over ``inventory`` less the phone itself (the paper's substitution)."""
    def pick(phone: str, rng: random.Random) -> str:
        return rng.choice([p for p in inventory if p != phone])
    return pick


def nearest_phone(sampler: MinimalPairSampler, inventory: list[str]):
    """Replacement by the panphon-nearest phone (a minimal pair); random where panphon knows none."""
    fallback = random_phone(inventory)

    def pick(phone: str, rng: random.Random) -> str:
        near = sampler.neighbours(phone)
        return near[0] if near else fallback(phone, rng)
    return pick


def sensitivity(model: Any, clips: ClipSet, speech: Tensor, rates: list[float], seed: int) -> dict[str, Any]:
    """Matched-score change when a share of each clip's phones is substituted, at random and by the
    nearest phone; chance: a content-blind score drops in half the pairs at most."""
    segments = [model.tokenizer.segments(ipa) for ipa in clips.ipa]
    inventory = sorted({s for segs in segments for s in segs if _is_phone(s)})
    clean = matched_scores(speech, model.embed_phones(clips.ipa))
    modes = {"random": random_phone(inventory), "nearest": nearest_phone(MinimalPairSampler(), inventory)}
    out: dict[str, Any] = {}
    for mode, replacement in modes.items():
        for rate in rates:
            rng = random.Random(f"{seed}/{mode}/{rate}")
            corrupted = [substitute(segs, rate, replacement, rng) for segs in segments]
            out[f"{mode}@{rate:g}"] = change(clean, matched_scores(speech, model.embed_phones(corrupted)))
    return out


# ---- noise --------------------------------------------------------------------------------------
def noisy_sets(clips: ClipSet, cfg: Any) -> dict[str, list[Tensor]]:
    """Every noise condition's copy of the clips: Gaussian mixes by weight α, white noise and babble at
    fixed SNRs."""
    def each(name: str, corrupt) -> list[Tensor]:
        generator = torch.Generator().manual_seed(hash_seed(cfg.seed, name))
        return [corrupt(i, x, generator) for i, x in enumerate(clips.audio)]

    conditions = {f"alpha={a:g}": (lambda i, x, g, a=a: noise.mix_gaussian(x, a, g)) for a in cfg.noise_alphas}
    conditions |= {f"white_snr={s:g}dB": (lambda i, x, g, s=s: noise.add_at_snr(x, noise.white_noise(x, g), s))
                   for s in cfg.snrs_db}
    if len(clips.audio) > cfg.babble_talkers:
        conditions |= {
            f"babble_snr={s:g}dB": (lambda i, x, g, s=s: noise.add_at_snr(
                x, noise.babble(clips.audio, i, cfg.babble_talkers, g), s))
            for s in cfg.babble_snrs_db
        }
    return {name: each(name, corrupt) for name, corrupt in conditions.items()}


def hash_seed(seed: int, name: str) -> int:
    """A stable per-condition seed (Python's ``hash`` of a string changes between processes)."""
    return seed * 1_000_003 + sum((k + 1) * ord(c) for k, c in enumerate(name))


def robustness(model: Any, clips: ClipSet, speech: Tensor, cfg: Any) -> dict[str, Any]:
    """Matched score and phone→speech Hit@1 under each noise condition, against the clean clips."""
    phones = model.embed_phones(clips.ipa)
    relevant = labels_to_relevance(clips.ipa, clips.ipa)
    clean_score = matched_scores(speech, phones)
    clean_hit = retrieval_metrics(phones @ speech.T, relevant, ks=(1,))["hit@1"]
    out: dict[str, Any] = {"clean": {"score": float(clean_score.mean()), "hit@1": clean_hit}}
    for name, audio in tqdm(noisy_sets(clips, cfg).items(), desc="noise", leave=False):
        noisy = model.embed_speech(audio)
        scores = matched_scores(noisy, phones)
        hit = retrieval_metrics(phones @ noisy.T, relevant, ks=(1,))["hit@1"]
        out[name] = {"score": float(scores.mean()), **change(clean_score, scores), "hit@1": hit,
                     "hit@1_rel_change": (hit - clean_hit) / clean_hit if clean_hit else 0.0}
    return out


# ---- intelligibility ----------------------------------------------------------------------------
def phone_error_rate(meant: list[str], said: list[str]) -> float:
    """Phone edits from what was meant to what was said, over the phones meant."""
    return segment_edit_distance(said, meant) / max(1, len(meant))


def intelligibility_pairs(phones: list[list[str]], lang: list[str], per_clip: int, seed: int) -> list[tuple[int, int, float]]:
    """(said B, meant A, PER) pairs: each clip B with itself, and with ``per_clip`` − 1 other words of its
    language whose phone error rates are closest to evenly spaced targets over (0, 1] — so the pairs cover
    the range of PER that intelligibility is about, not only the unrelated words most pairs would be."""
    by_lang: dict[str, list[int]] = defaultdict(list)
    for i, lg in enumerate(lang):
        by_lang[lg].append(i)
    rng = random.Random(seed)
    pairs = []
    for b in range(len(phones)):
        pairs.append((b, b, 0.0))
        others = [(phone_error_rate(phones[a], phones[b]), rng.random(), a) for a in by_lang[lang[b]] if a != b]
        for k in range(1, per_clip):
            if not others:
                break
            target = k / (per_clip - 1)
            pick = min(others, key=lambda o, t=target: (abs(o[0] - t), o[1]))
            others.remove(pick)
            pairs.append((b, pick[2], pick[0]))
    return pairs


def intelligibility(model: Any, clips: ClipSet, speech: Tensor, per_clip: int, seed: int) -> tuple[dict, Tensor, Tensor]:
    """Spearman ρ between the score of (audio of word B, phones of word A) and the phone error rate between
    A and B, over all pairs and over mismatched pairs only (A ≠ B); chance ρ = 0."""
    phones = [[s for s in model.tokenizer.segments(ipa) if _is_phone(s)] for ipa in clips.ipa]
    pairs = intelligibility_pairs(phones, clips.lang, per_clip, seed)
    embedded = model.embed_phones(clips.ipa)
    said = torch.tensor([b for b, _, _ in pairs])
    meant = torch.tensor([a for _, a, _ in pairs])
    scores = (speech[said] * embedded[meant]).sum(-1)
    per = torch.tensor([p for _, _, p in pairs], dtype=torch.float32)
    mismatched = said != meant
    out = {"pairs": len(pairs), "spearman": float(spearman_corrcoef(scores, per)), "chance_spearman": 0.0}
    if mismatched.sum() > 2:
        out["spearman_mismatched"] = float(spearman_corrcoef(scores[mismatched], per[mismatched]))
        out["chance_spearman_mismatched"] = 0.0
    return out, per, scores


# ---- plots --------------------------------------------------------------------------------------
def sensitivity_figure(rows: dict[str, Any], rates: list[float]) -> Figure:
    """Share of pairs whose matched score drops, and the mean relative change, by substitution rate."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.5))
    for mode, style in (("random", "o-"), ("nearest", "s--")):
        left.plot([100 * r for r in rates], [rows[f"{mode}@{r:g}"]["drop"] for r in rates], style, label=mode)
        right.plot([100 * r for r in rates], [rows[f"{mode}@{r:g}"]["rel_change"] for r in rates], style, label=mode)
    left.set_ylim(0, 1.02)
    left.set_ylabel("share of pairs whose score drops")
    right.axhline(0, color="grey", linewidth=0.6)
    right.set_ylabel("mean relative score change")
    for ax in (left, right):
        ax.set_xlabel("phones substituted (%)")
        ax.legend()
    fig.tight_layout()
    return fig


def noise_figure(rows: dict[str, Any], cfg: Any) -> Figure:
    """Relative change of the matched score and of Hit@1: by Gaussian weight α, and by SNR."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.5))
    alphas = [a for a in cfg.noise_alphas if f"alpha={a:g}" in rows]
    for key, style, label in (("rel_change", "o-", "matched score"), ("hit@1_rel_change", "s--", "Hit@1")):
        left.plot(alphas, [rows[f"alpha={a:g}"][key] for a in alphas], style, label=label)
        for kind, snrs in (("white", cfg.snrs_db), ("babble", cfg.babble_snrs_db)):
            snrs = [s for s in snrs if f"{kind}_snr={s:g}dB" in rows]
            right.plot(snrs, [rows[f"{kind}_snr={s:g}dB"][key] for s in snrs], style, label=f"{label}, {kind}")
    left.set_xlabel("Gaussian weight α  (x′ = (1 − α)x + αn)")
    right.set_xlabel("SNR (dB)")
    right.invert_xaxis()
    for ax in (left, right):
        ax.axhline(0, color="grey", linewidth=0.6)
        ax.set_ylabel("relative change vs clean")
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def intelligibility_figure(per: Tensor, scores: Tensor, rho: float) -> Figure:
    """Score of (audio B, phones A) against the phone error rate between A and B."""
    fig, ax = plt.subplots(figsize=(4.5, 3.5))
    ax.scatter(per.numpy(), scores.numpy(), s=4, alpha=0.3)
    ax.set_xlabel("phone error rate (A meant, B said)")
    ax.set_ylabel("score (cosine)")
    ax.set_title(f"Spearman ρ = {rho:.3f}")
    fig.tight_layout()
    return fig


# ---- the suite ----------------------------------------------------------------------------------
def evaluate_scraps(model: Any, datamodule: Any, out_dir: Path, cfg: Any, logger: Any = None) -> dict[str, Any]:
    """Every analysis on every test set; the curves of ``cfg.plot_set`` (or the first set) as figures."""
    model.eval()
    model.to(model.eval_device)
    results: dict[str, Any] = {}
    test_sets = datamodule.test_sets()
    plot_set = cfg.plot_set if cfg.plot_set in test_sets else next(iter(test_sets), None)
    for name, loader in test_sets.items():
        clips = read_clips(loader, cfg.max_clips, name)
        gallery_idx, partner_idx = gallery_indices(clips.ipa, cfg.gallery_size, cfg.seed)
        gallery = clips.take(gallery_idx)
        if len(gallery.ipa) < 2:
            continue
        speech = model.embed_speech(gallery.audio)
        partners = clips.take(partner_idx)
        as_set = EmbeddedSet(speech, gallery.ipa, gallery.ipa, gallery.lang)
        partner_set = EmbeddedSet(model.embed_speech(partners.audio), partners.ipa, partners.ipa, partners.lang)
        row: dict[str, Any] = {"clips": len(gallery.ipa), **retrieval(model, as_set, partner_set)}
        row["sensitivity"] = sensitivity(model, gallery, speech, list(cfg.substitution_rates), cfg.seed)
        row["noise"] = robustness(model, gallery, speech, cfg)
        row["intelligibility"], per, scores = intelligibility(model, gallery, speech, cfg.intelligibility_pairs,
                                                              cfg.seed)
        results[name] = row
        if name == plot_set:
            save_figure(sensitivity_figure(row["sensitivity"], list(cfg.substitution_rates)), "sensitivity",
                        out_dir, logger)
            save_figure(noise_figure(row["noise"], cfg), "noise", out_dir, logger)
            save_figure(intelligibility_figure(per, scores, row["intelligibility"]["spearman"]), "intelligibility",
                        out_dir, logger)
    return results

"""The aligner's evaluation suite: phone and word boundaries against gold timings on every test set,
and plots of the frame × phone scores with the decoded path over the spectrogram."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib.figure import Figure
from tqdm import tqdm

from phonclip.alignment import Alignment, gold_token_counts
from phonclip.eval.boundaries import BoundaryScorer, Interval
from phonclip.eval.plots import plt, save_figure


def gold_phones(meta: dict) -> list[Interval]:
    """Gold phone intervals from a clip's metadata (``phones``: ipa, start, end)."""
    return [(p["ipa"], float(p["start"]), float(p["end"])) for p in meta.get("phones", [])]


def gold_words(meta: dict) -> list[Interval]:
    """Gold word intervals from a clip's metadata (``words``: ipa, start, end)."""
    return [(w.get("ipa", w.get("text", "")), float(w["start"]), float(w["end"])) for w in meta.get("words", [])]


def merge_to_gold(tokenizer: Any, predicted: list[Interval], gold: list[Interval]) -> list[Interval] | None:
    """Predicted segment intervals grouped into the gold phones they spell (espeak's /tʃ/ is two
    segments, t and ʃ, to the tokenizer); None when the two do not spell the same sequence."""
    sizes = gold_token_counts(tokenizer, gold)
    if sum(sizes) != len(predicted) or 0 in sizes:
        return None
    merged, i = [], 0
    for (label, _, _), n in zip(gold, sizes):
        merged.append((label, predicted[i][1], predicted[i + n - 1][2]))
        i += n
    return merged


def score_set(
    model: Any, loader: Any, cfg: Any, desc: str
) -> tuple[dict[str, Any] | None, list[tuple[dict, Alignment]]]:
    """Phone and word boundary metrics of one test set; also its first ``cfg.plot_examples`` clips for plots.
    None when the set's first batch carries no gold timings (a retrieval-only set): nothing to score."""
    max_clips, tolerances_ms = cfg.max_clips, list(cfg.tolerances_ms)
    phones, words = BoundaryScorer(tolerances_ms), BoundaryScorer(tolerances_ms)
    step = None if model.cfg.decoder == "uniform" else model.frame_seconds
    oracle = BoundaryScorer(tolerances_ms)  # gold snapped to the frame grid: the best this frame rate allows
    skipped: Counter = Counter()
    examples: list[tuple[dict, Alignment]] = []
    seen = 0
    for batch in tqdm(loader, desc=f"align {desc}", leave=False):
        if seen == 0 and not any(gold_phones(meta) for meta in batch["meta"]):
            return None, []
        for i, alignment in enumerate(model.decode(batch)):
            if seen >= max_clips:
                break
            seen += 1
            meta = batch["meta"][i]
            if alignment is None:
                skipped["too_short"] += 1
                continue
            gold = gold_phones(meta)
            merged = merge_to_gold(model.tokenizer, alignment.phones, gold)
            if merged is None:
                skipped["phones_differ_from_gold"] += 1
                continue
            phones.add(merged, gold)
            if step is not None:
                oracle.add([(lab, round(s / step) * step, round(e / step) * step) for lab, s, e in gold], gold)
            gw = gold_words(meta)
            if len(gw) == len(alignment.words):  # the same words in order: compare under the gold labels
                words.add([(g[0], s, e) for g, (_, s, e) in zip(gw, alignment.words)], gw)
            else:
                skipped["words_differ_from_gold"] += 1
            if len(examples) < cfg.plot_examples:
                examples.append(({k: (v[i : i + 1] if isinstance(v, (torch.Tensor, list)) else v)
                                  for k, v in batch.items()}, alignment))
        if seen >= max_clips:
            break
    row: dict[str, Any] = {"clips": seen, "phone": phones.metrics()}
    if oracle.clips:
        best = oracle.metrics()
        row["phone"] |= {f"grid_oracle_f1@{ms:g}": best[f"f1@{ms:g}"] for ms in tolerances_ms if ms < 50}
    if words.errors_ms:  # word junctions: none in single-word clips
        row["word"] = words.metrics()
    if skipped:
        row["skipped"] = dict(skipped)
    return row, examples


def alignment_figure(model: Any, batch: dict, alignment: Alignment) -> Figure:
    """Log-mel spectrogram above the frame × phone log-probabilities, with the decoded phone spans
    (white) and the gold boundaries (red dashes)."""
    device = model.device
    with torch.no_grad():
        mel, mel_lens = model.clap.logmel(batch["audio"].to(device), batch["audio_lens"].to(device))
        out = model.scores({k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()})
        log_probs = model.forward_sum.log_probs(out["logits"], out["phone_lens"], out["blank"])[0]
    n_frames, n_phones = int(out["frame_lens"][0]), int(out["phone_lens"][0])
    matrix = log_probs[:n_frames, 1 : n_phones + 1].float().cpu().numpy().T
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(10, 6), sharex=True, height_ratios=(1, 1.4))
    mel_seconds = int(mel_lens[0]) * model.cfg.clap.hop_length / 16_000
    top.imshow(mel[0, :, : int(mel_lens[0])].float().cpu().numpy(), origin="lower", aspect="auto",
               extent=(0, mel_seconds, 0, mel.shape[1]))
    top.set_ylabel("mel bin")
    top.set_title(f"/{batch['ipa'][0]}/  ({batch['lang'][0] if batch.get('lang') else ''})")
    bottom.imshow(matrix, origin="upper", aspect="auto", cmap="magma", vmin=max(float(np.min(matrix)), -20),
                  extent=(0, n_frames * model.frame_seconds, n_phones - 0.5, -0.5))
    for k, (_, start, end) in enumerate(alignment.phones):
        bottom.plot([start, end], [k, k], color="white", linewidth=2)
    for ax in (top, bottom):
        for _, start, end in gold_phones(batch["meta"][0]):
            ax.axvline(start, color="red", linestyle="--", linewidth=0.6)
            ax.axvline(end, color="red", linestyle="--", linewidth=0.6)
    labels = [lab for lab, _, _ in alignment.phones]
    bottom.set_yticks(range(len(labels)), labels, fontsize=7)
    bottom.set_xlabel("seconds")
    bottom.set_ylabel("phone")
    fig.tight_layout()
    return fig


def evaluate_aligner(model: Any, datamodule: Any, out_dir: Path, cfg: Any, logger: Any = None) -> dict[str, Any]:
    """Boundary metrics on every test set of the DataModule; plots under ``out_dir/plots`` and in TensorBoard."""
    model.eval()
    model.to(model.eval_device)
    results: dict[str, Any] = {}
    examples: list[tuple[dict, Alignment]] = []
    for name, loader in datamodule.test_sets().items():
        row, found = score_set(model, loader, cfg, name)
        if row is None:
            print(f"{name}: no gold timings, not scored")
            continue
        results[name] = row
        examples = examples or found
    for k, (batch, alignment) in enumerate(examples[: cfg.plot_examples]):
        save_figure(alignment_figure(model, batch, alignment), f"alignment_{k}", out_dir, logger)
    return results

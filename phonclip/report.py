"""``make report``: train (or reuse) the reported experiments and write docs/RESULTS.md against the targets."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from phonclip import config, runner
from phonclip.bench import machine
from phonclip.doc_sections import sections, write_merged
from phonclip.results import flatten, metric_tables, side_by_side

DOC = Path(__file__).resolve().parent.parent / "docs" / "RESULTS.md"
REPORTED = ("clap_ipa", "ablation_hardneg", "ablation_text_vs_phone", "aligner", "scraps", "ablation_scraps_integrator",
            "ipa_clip", "ablation_phoneme_embedding", "semantic_awe", "ablation_semantic_awe", "layer_probe", "early_exit")
# Rows of the side-by-side table where an ablation has too many metrics to read (the rest: runs/<exp>/<arm>/results.md).
SHOWN = {
    "ablation_scraps_integrator": (
        "test_*/phone→speech/hit@1", "test_*/phone→speech/mAP", "test_*/sensitivity/*@0.2/drop",
        "test_*/noise/clean/score", "test_*/noise/alpha=*/rel_change", "test_*/noise/alpha=0.75/hit@1_rel_change",
        "test_*/noise/babble_snr=0dB/rel_change", "test_*/intelligibility/spearman",
    ),
}


@dataclass(frozen=True)
class Target:
    """A number the issue tracker asked for, checked against what the run measured."""

    experiment: str
    description: str
    value: Any  # callable(results by arm) -> float
    goal: str
    met: Any  # callable(float) -> bool


def _metric(arm: str, path: str):
    return lambda results: flatten(results[arm]["metrics"]).get(path)


def _wall_seconds(arm: dict) -> float:
    """Seconds one arm took. ``corpus_seconds`` is data the arm generated itself (None: cached): inside
    training for an arm that trained (``train_seconds`` holds it), before evaluation for one that did not."""
    outside = 0.0 if arm.get("steps") else (arm.get("corpus_seconds") or 0.0)
    return outside + (arm.get("train_seconds") or 0.0) + arm.get("eval_seconds", 0.0)


def _minutes(results: dict) -> float | None:
    """Minutes of data generation, training and evaluation of the main arm; None (n/a) when that run
    found its data cached, so the budget is only ever judged on a run that generated it."""
    main = results["main"]
    return None if main.get("corpus_seconds") is None else _wall_seconds(main) / 60


def _arm_minutes(results: dict) -> float:
    """Minutes summed over every arm (the aligner's budget covers them all)."""
    return sum(_wall_seconds(r) for r in results.values()) / 60


def _wins(better: str, worse: str, paths: tuple[str, ...]):
    """On how many of ``paths`` arm ``better`` scores higher than arm ``worse``."""
    return lambda results: sum(_metric(better, p)(results) > _metric(worse, p)(results) for p in paths)


SILHOUETTES = ("phonemes_en/s_Cc", "phonemes_en/s_Cv")
ATTRIBUTE_METRICS = tuple(f"phonemes_en/{m}" for m in (
    "voicing_mAP", "place_mAP", "manner_mAP", "height_rho", "backness_rho", "rounded_rho"))


def _nonword_rise(results: dict) -> float:
    """The smaller of the two steps (points) of the student's nonword accuracy from 0 to 1 to 2 shared attributes."""
    acc = [_metric("main", f"nonwords/shared/shared={k}/student")(results) for k in range(3)]
    return 100 * min(acc[1] - acc[0], acc[2] - acc[1])


def _points(better: str, worse: str, path: str):
    """How many F1 points arm ``better`` is ahead of arm ``worse`` on ``path``."""
    return lambda results: 100 * (_metric(better, path)(results) - _metric(worse, path)(results))


def _rho_points(results: dict) -> float:
    """Points of averaged Spearman ρ the cluster+Skipgram AWE gains over the phonetic AWE it starts from."""
    return 100 * (_metric("main", "cluster_skipgram/spearman_averaged")(results)
                  - _metric("main", "phonetic/spearman_averaged")(results))


def _topline_share(results: dict) -> float:
    """Averaged ρ of cluster+Skipgram as a share of the text topline's."""
    return (_metric("main", "cluster_skipgram/spearman_averaged")(results)
            / _metric("main", "text_skipgram/spearman_averaged")(results))


def _fit_minutes(results: dict) -> float:
    """Minutes of training and evaluation of the main arm, less any data generation that run did (data cached)."""
    main = results["main"]
    return ((main.get("train_seconds") or 0.0) + main.get("eval_seconds", 0.0) - (main.get("corpus_seconds") or 0.0)) / 60


TARGETS = (
    Target("clap_ipa", "phone→speech Hit@1, seen languages, held-out words",
           _metric("main", "test_seen/phone→speech/hit@1"), "≥ 0.90", lambda v: v >= 0.90),
    Target("clap_ipa", "phone→speech Hit@1, 7 unseen languages (mixed gallery)",
           _metric("main", "test_unseen/phone→speech/hit@1"), "≥ 0.65", lambda v: v >= 0.65),
    Target("clap_ipa", "minutes: corpus generation + training + evaluation (fresh corpus)", _minutes, "≤ 15", lambda v: v <= 15),
    Target("ablation_text_vs_phone", "unseen Hit@1 gain of IPA units over text units (points)",
           lambda r: 100 * (_metric("phone", "test_unseen/phone→speech/hit@1")(r)
                            - _metric("text", "test_unseen/phone→speech/hit@1")(r)),
           "≥ 20", lambda v: v >= 20),
    Target("ablation_hardneg", "hard-KWS AUC gain from hard negatives, seen held-out words (points)",
           lambda r: 100 * (_metric("hardneg_on", "test_seen/kws/hard_auc")(r)
                            - _metric("hardneg_off", "test_seen/kws/hard_auc")(r)),
           "≥ 3", lambda v: v >= 3),
    Target("aligner", "label-blind phone-boundary F1 at 20 ms, test_seen (fine-tuned)",
           _metric("finetuned", "test_seen/phone/f1@20"), "≥ 0.85", lambda v: v >= 0.85),
    Target("aligner", "label-blind phone-boundary F1 at 20 ms, test_unseen (fine-tuned)",
           _metric("finetuned", "test_unseen/phone/f1@20"), "≥ 0.75", lambda v: v >= 0.75),
    Target("aligner", "word-boundary F1 at 20 ms, test_phrases (fine-tuned)",
           _metric("finetuned", "test_phrases/word/f1@20"), "≥ 0.90", lambda v: v >= 0.90),
    Target("aligner", "test_unseen phone F1@20: fine-tuned − zero-shot (points)",
           _points("finetuned", "zero_shot", "test_unseen/phone/f1@20"), "≥ 10", lambda v: v >= 10),
    Target("aligner", "test_unseen phone F1@20: zero-shot − uniform (points)",
           _points("zero_shot", "uniform", "test_unseen/phone/f1@20"), "≥ 10", lambda v: v >= 10),
    Target("aligner", "minutes: fine-tuning + evaluation, every arm (clap_ipa run present)",
           _arm_minutes, "≤ 10", lambda v: v <= 10),
    Target("scraps", "share of pairs whose matched score drops at 20 % random phone substitution, test_seen",
           _metric("main", "test_seen/sensitivity/random@0.2/drop"), "≥ 0.90", lambda v: v >= 0.90),
    Target("scraps", "relative change of the matched score, Gaussian mix α = 0.75, test_seen",
           _metric("main", "test_seen/noise/alpha=0.75/rel_change"), "≥ −0.15", lambda v: v >= -0.15),
    Target("scraps", "Spearman ρ(score of audio B with phones A, phone error rate A→B), test_seen",
           _metric("main", "test_seen/intelligibility/spearman"), "≤ −0.6", lambda v: v <= -0.6),
    Target("scraps", "minutes: training + evaluation (corpus cached)", _arm_minutes, "≤ 10", lambda v: v <= 10),
    Target("ablation_scraps_integrator", "α = 0.75 matched-score change, test_seen: shared − none (points; "
           "the paper: no integrator is less robust)",
           _points("shared", "none", "test_seen/noise/alpha=0.75/rel_change"), "> 0", lambda v: v > 0),
    Target("ipa_clip", "nonword → text accuracy rises with shared attributes: smaller step of 0→1→2 (points)",
           _nonword_rise, "> 0", lambda v: v > 0),
    Target("ipa_clip", "nonword → text accuracy at 2 shared attributes: student − teacher on spelling (points)",
           lambda r: 100 * (_metric("main", "nonwords/shared/shared=2/student")(r)
                            - _metric("main", "nonwords/shared/shared=2/teacher_spelling")(r)),
           "> 0", lambda v: v > 0),
    Target("ipa_clip", "minutes: pair generation + teacher caching + training + evaluation", _minutes, "≤ 15",
           lambda v: v <= 15),
    Target("ablation_phoneme_embedding", "English phones: silhouettes (s_Cc, s_Cv) where Frozen > Baseline",
           _wins("frozen", "baseline", SILHOUETTES), "2 of 2", lambda v: v == 2),
    Target("ablation_phoneme_embedding", "English phones: voicing/place/manner mAP and height/backness/roundedness ρ "
           "where Frozen > Baseline", _wins("frozen", "baseline", ATTRIBUTE_METRICS), "≥ 5 of 6", lambda v: v >= 5),
    Target("semantic_awe", "averaged Spearman ρ with gold: cluster+Skipgram − phonetic AWE (points)", _rho_points,
           "≥ 10", lambda v: v >= 10),
    Target("semantic_awe", "averaged Spearman ρ: cluster+Skipgram / text topline", _topline_share, "≥ 0.5",
           lambda v: v >= 0.5),
    Target("semantic_awe", "stage-1 same-word AP on the target language (never trained on)",
           _metric("main", "phonetic_awe/average_precision"), "≥ 0.5", lambda v: v >= 0.5),
    Target("semantic_awe", "minutes: training + evaluation (data cached)", _fit_minutes, "≤ 15", lambda v: v <= 15),
    Target("layer_probe", "minutes: parallel-set synthesis + probe (clap_ipa run present)", _arm_minutes, "≤ 10",
           lambda v: v <= 10),
    Target("early_exit", "minutes: every exit layer, 7 languages × 3 seeds (clap_ipa run and corpus present)",
           _arm_minutes, "≤ 10", lambda v: v <= 10),
)


def collect(name: str, rerun: bool, overrides: list[str]) -> dict[str, dict]:
    """Results of every arm of ``name``: read from runs/ when complete (and not ``rerun``), else trained now."""
    arms = config.load(name, overrides)
    paths = {arm: runner.run_dir_for(cfg, arm) / "results.json" for arm, cfg in arms}
    if rerun or not all(p.exists() for p in paths.values()):
        runner.train(name, [*overrides, "resume=false"] if rerun else overrides)
    return {arm: json.loads(p.read_text()) for arm, p in paths.items()}


def target_rows(all_results: dict[str, dict[str, dict]]) -> list[str]:
    """One table row per target of the experiments in ``all_results``."""
    rows = []
    for t in TARGETS:
        if t.experiment not in all_results:
            continue
        value = t.value(all_results[t.experiment])
        shown = "n/a" if value is None else f"{value:.3f}"
        met = "n/a" if value is None else ("yes" if t.met(value) else "**no**")
        rows.append(f"| {t.experiment} | {t.description} | {shown} | {t.goal} | {met} |")
    return rows


def experiment_section(name: str, per_arm: dict[str, dict], command: str) -> str:
    """One experiment's section: how and where it was measured, each arm's cost, then its tables."""
    lines = [f"Regenerated by `{command}` on {dt.date.today().isoformat()} ({machine()}).", ""]
    for arm, r in per_arm.items():
        lines.append(
            f"- `{arm}`: {r['steps']} steps, train {r.get('train_seconds')} s, eval {r.get('eval_seconds')} s"
            + (f", corpus generation {r['corpus_seconds']} s" if r.get("corpus_seconds") else "")
            + f" ({r['date']})"
        )
    lines.append("")
    if len(per_arm) == 1:
        lines += metric_tables(next(iter(per_arm.values()))["metrics"])
    else:
        lines.append(side_by_side(per_arm, SHOWN.get(name, ("*",))))
    if name in READINGS:
        lines += ["", *READINGS[name](per_arm)]
    return "\n".join(lines)


def _probe_reading(per_arm: dict[str, dict]) -> list[str]:
    from phonclip.eval.layer_probe import reading

    return reading(per_arm["main"]["metrics"])


def _exit_reading(per_arm: dict[str, dict]) -> list[str]:
    from phonclip.eval.plots import save_figure
    from phonclip.models.early_exit import best_exit_table, exit_curve

    save_figure(exit_curve(per_arm), "exit_curve", Path(config.load("early_exit")[0][1].run_root) / "early_exit")
    return [("Best exit layer per unseen language (PER mean ± std over the seeds; the curve: "
            "`runs/early_exit/plots/exit_curve.png`, and in TensorBoard under `runs/early_exit/exit_curve`):"), "",
            *best_exit_table(per_arm)]


READINGS = {"layer_probe": _probe_reading, "early_exit": _exit_reading}  # what the tables mean, from the numbers


def write(all_results: dict[str, dict[str, dict]], command: str) -> str:
    """Rewrite the sections of the experiments in ``all_results`` (and their target rows); keep the others."""
    old = sections(DOC.read_text(encoding="utf-8")).get("Targets", "") if DOC.exists() else ""
    kept = [line for line in old.splitlines()
            if line.startswith("| ") and line.split("|")[1].strip() in REPORTED
            and line.split("|")[1].strip() not in all_results]
    by_experiment = {name: [r for r in kept + target_rows(all_results) if r.split("|")[1].strip() == name]
                     for name in REPORTED}
    targets = ["| experiment | target | measured | goal | met |", "|---|---|---|---|---|"]
    targets += [row for name in REPORTED for row in by_experiment[name]]
    preamble = (
        "# Results\n\n"
        'Regenerated by `make report` (every experiment) or `make report ARGS="--experiments <name> ..."`\n'
        "(those experiments; the others stay as measured, each section with its date and machine). Every\n"
        "number below was measured by the runs under `runs/` (trained by `make train`, or by this command\n"
        "where an arm had no results); chance levels in parentheses. Per-run details:\n"
        "`runs/<experiment>/<arm>/results.md`, plots in `.../plots/`."
    )
    new = {"Targets": "\n".join(targets)}
    new |= {name: experiment_section(name, per_arm, command) for name, per_arm in all_results.items()}
    return write_merged(DOC, preamble, new, ["Targets", *REPORTED])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m phonclip.report", description=__doc__)
    parser.add_argument("--rerun", action="store_true", help="retrain even where runs/ has results")
    parser.add_argument("--experiments", nargs="*", default=list(REPORTED), choices=REPORTED)
    parser.add_argument("overrides", nargs="*", help="dotted overrides applied to every experiment")
    args = parser.parse_args(argv)
    results = {name: collect(name, args.rerun, args.overrides) for name in args.experiments}
    command = "make report" + (f" ARGS='{' '.join(argv)}'" if argv else "")
    print(write(results, command))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

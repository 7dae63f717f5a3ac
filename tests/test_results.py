"""Result tables: chance levels beside their metrics, arms side by side, targets judged from measured values."""

from phonclip import report
from phonclip.results import flatten, side_by_side, to_markdown, with_chance


def _metrics(hit1: float, hard_auc: float) -> dict:
    return {
        "test_seen": {
            "phone→speech": {"hit@1": hit1, "chance_hit@1": 0.002},
            "kws": {"hard_auc": hard_auc},
            "per_language": {"en": {"hit@1": hit1, "chance_hit@1": 0.01}},
        },
        "test_unseen": {"phone→speech": {"hit@1": hit1 / 2, "chance_hit@1": 0.002}, "kws": {"hard_auc": 0.5}},
    }


def _results(arm: str, hit1: float, hard_auc: float = 0.8) -> dict:
    return {"experiment": "x", "arm": arm, "date": "2026-01-01T00:00:00", "steps": 3, "train_seconds": 60.0,
            "eval_seconds": 30.0, "corpus_seconds": 30.0, "metrics": _metrics(hit1, hard_auc),
            "data_quality": {"dropped_train": {"corrupt_audio": 2}}}


def test_chance_folds_into_metric_cell():
    cells = with_chance(flatten({"a": {"hit@1": 0.5, "chance_hit@1": 0.25}, "n": 3}))
    assert cells == {"a/hit@1": "0.500 (0.250)", "n": "3"}


def test_markdown_has_test_sets_as_rows_and_per_language_table():
    md = to_markdown(_results("main", 0.9))
    assert "| test_seen | 0.900 (0.002) |" in md
    assert "| en (test_seen) |" in md
    assert "| dropped_train/corrupt_audio | 2 |" in md


def test_side_by_side_has_one_column_per_arm():
    table = side_by_side({"on": _results("on", 0.9), "off": _results("off", 0.7)})
    assert table.splitlines()[0] == "| metric | on | off |"
    assert "| test_seen/phone→speech/hit@1 | 0.900 (0.002) | 0.700 (0.002) |" in table


def test_each_branch_of_conditions_gets_its_own_table():
    metrics = {"test_seen": {"hit@1": 0.9, "noise": {"clean": {"score": 0.7}, "alpha=0.5": {"score": 0.6}}},
               "test_unseen": {"hit@1": 0.5, "noise": {"clean": {"score": 0.4}}}}
    md = to_markdown({**_results("main", 0.9), "metrics": metrics})
    assert "| test set | hit@1 |" in md and "noise/" not in md
    assert "| noise | score |" in md
    assert "| alpha=0.5 (test_seen) | 0.600 |" in md and "| clean (test_unseen) | 0.400 |" in md


def test_side_by_side_keeps_only_the_rows_asked_for():
    table = side_by_side({"on": _results("on", 0.9), "off": _results("off", 0.7)}, keep=("test_unseen/*",))
    assert [line.split(" | ")[0] for line in table.splitlines()[2:]] == [
        "| test_unseen/phone→speech/hit@1", "| test_unseen/kws/hard_auc"]


def test_report_judges_targets_from_measured_values(tmp_path, monkeypatch):
    monkeypatch.setattr(report, "DOC", tmp_path / "RESULTS.md")
    doc = report.write(
        {
            "clap_ipa": {"main": _results("main", 0.95)},
            "ablation_hardneg": {"hardneg_off": _results("hardneg_off", 0.9, 0.80),
                                 "hardneg_on": _results("hardneg_on", 0.9, 0.82)},
        },
        "make report",
    )
    assert "| clap_ipa | phone→speech Hit@1, seen languages, held-out words | 0.950 | ≥ 0.90 | yes |" in doc
    assert "unseen languages (mixed gallery) | 0.475 | ≥ 0.65 | **no** |" in doc
    assert "| 1.500 | ≥ 15 |" not in doc and "| 1.500 | ≤ 15 | yes |" in doc  # its corpus inside training
    assert "(points) | 2.000 | ≥ 3 | **no** |" in doc


def test_minutes_count_data_generation_once():
    trained = _results("main", 0.9)  # 60 s training, its 30 s of corpus generation inside them, 30 s eval
    untrained = {**trained, "steps": 0, "train_seconds": 0.0}  # generation before evaluation
    cached = {**untrained, "corpus_seconds": None}  # found its data: no generation to count
    assert report._minutes({"main": trained}) == 1.5
    assert report._arm_minutes({"a": trained, "b": untrained, "c": cached}) == 1.5 + 1.0 + 0.5
    assert report._minutes({"main": {**trained, "corpus_seconds": None}}) is None  # the budget needs a fresh run


def test_report_of_one_experiment_keeps_the_others_as_measured(tmp_path, monkeypatch):
    monkeypatch.setattr(report, "DOC", tmp_path / "RESULTS.md")
    hardneg = {"hardneg_off": _results("hardneg_off", 0.9, 0.80), "hardneg_on": _results("hardneg_on", 0.9, 0.82)}
    report.write({"clap_ipa": {"main": _results("main", 0.95)}, "ablation_hardneg": hardneg}, "make report")
    doc = report.write({"clap_ipa": {"main": _results("main", 0.85)}}, "make report")
    assert "| clap_ipa | phone→speech Hit@1, seen languages, held-out words | 0.850 | ≥ 0.90 | **no** |" in doc
    assert "0.950" not in doc.split("## ablation_hardneg")[0]
    assert "(points) | 2.000 | ≥ 3 | **no** |" in doc  # the hard-negative row and section stay
    assert doc.index("| clap_ipa |") < doc.index("| ablation_hardneg |") < doc.index("## clap_ipa")
    assert doc.count("## ablation_hardneg") == 1 and doc.count("## Targets") == 1

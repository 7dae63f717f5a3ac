"""Every YAML in experiments/ trains (fast_dev_run) and evaluates end to end on tiny data, so none can break."""

import json
from pathlib import Path

import pytest
from tiny import (
    TINY_CORPUS,
    TINY_IPA_CLIP,
    TINY_PARALLEL,
    TINY_PRONUNCIATIONS,
    TINY_SEMANTIC_AWE,
    TINY_SPOKEN_WORDS,
    TinyClip,
    TinyRun,
    corpus_overrides,
    write_tiny_whisper,
)
from transformers import BertConfig, BertModel

from data_modules.synthetic import SyntheticConfig, generate_corpus, shards
from phonclip import config, runner

TINY_MODEL = [
    "model.embed_dim=32",
    "model.phone.hidden_size=32",
    "model.phone.num_layers=1",
    "model.phone.num_heads=2",
    "model.phone.intermediate_size=64",
    "model.eval.gallery_size=40",
]


@pytest.fixture(scope="module")
def tiny_corpus() -> Path:
    return generate_corpus(SyntheticConfig(**TINY_CORPUS), progress=False)


@pytest.fixture(scope="module")
def tiny_pretrained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Tiny Whisper and BERT checkpoints saved the way the hub stores them, to exercise from_pretrained."""
    root = tmp_path_factory.mktemp("pretrained")
    write_tiny_whisper(root / "whisper", encoder_layers=3)  # three: the early-exit arms cut it after 1, 2, 3
    bert = BertConfig(vocab_size=120, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                      intermediate_size=64, max_position_embeddings=128)
    BertModel(bert).save_pretrained(root / "bert")
    return {"whisper": root / "whisper", "bert": root / "bert"}


def _data_overrides(name: str, corpus: Path, pretrained: dict[str, Path]) -> list[str]:
    (_, cfg), *_ = config.load(name)
    if cfg.data.name == "synthetic":
        return corpus_overrides("data.corpus", TINY_CORPUS) + ["data.num_workers=0"]
    if cfg.data.name == "ipapack":
        def split(name: str) -> str:
            return "[" + ",".join(map(str, shards(corpus, name))) + "]"

        tests = [f"data.test.{test}={split('test_seen')}" for test in cfg.data.test]
        return [
            f"data.train={split('train')}",
            f"data.valid={split('valid')}",
            *tests,
            "data.num_workers=0",
            "data.max_batch_seconds=20",
            "data.epoch_batches=null",
            f"model.speech.pretrained={pretrained['whisper']}",
            f"model.phone.pretrained={pretrained['bert']}",
            "model.phone.max_positions=128",
        ]
    if cfg.data.name == "pronunciations":
        return corpus_overrides("data", TINY_PRONUNCIATIONS)
    if cfg.data.name == "spoken_words":
        return corpus_overrides("data.corpus", TINY_CORPUS) + corpus_overrides("data", TINY_SPOKEN_WORDS)
    if cfg.data.name == "parallel_speech":
        return corpus_overrides("data", TINY_PARALLEL)
    raise AssertionError(f"add tiny-data overrides for data.name={cfg.data.name}")


def _model_overrides(name: str, tiny_run: TinyRun, tiny_clip: TinyClip, pretrained: dict[str, Path]) -> list[str]:
    (_, cfg), *_ = config.load(name)
    if cfg.model.name == "clap_ipa":
        return TINY_MODEL
    if cfg.model.name == "aligner":
        return [f"model.init_from={tiny_run.path}", "model.eval.max_clips=8"]
    if cfg.model.name == "scraps":
        return [*TINY_MODEL, "model.integrator.input_size=16", "model.eval.max_clips=40",
                "model.eval.intelligibility_pairs=3"]
    if cfg.model.name == "ipa_clip":
        tiny = corpus_overrides("model", TINY_IPA_CLIP)
        if cfg.model.teacher.kind == "clip":  # the paper's CLIP teacher and ImageNet: tiny stand-ins
            tiny += [f"model.teacher.name_or_path={tiny_clip.model}", f"model.teacher_dim={tiny_clip.dim}",
                     f"model.eval.imagenet.root={tiny_clip.images}", f"model.eval.imagenet.tower={tiny_clip.model}"]
        return tiny
    if cfg.model.name == "semantic_awe":  # an ablation's stage 1 is trained here rather than read from a run
        return corpus_overrides("model", TINY_SEMANTIC_AWE) + ["model.init_from=null"]
    if cfg.model.name == "layer_probe":  # a saved Whisper, as a hub checkpoint would be read
        return [f"model.speech.source={pretrained['whisper']}", "model.control.min_distractors=1",
                "model.control.min_queries=1", "model.control.threshold=0.3", "model.control.tolerance=0.5"]
    if cfg.model.name == "early_exit":
        return [f"model.speech.source={pretrained['whisper']}", "model.probe.steps=3", "model.probe.seeds=[0,1]"]
    raise AssertionError(f"add tiny-model overrides for model.name={cfg.model.name}")


def _check_metrics(model: str, row: dict) -> None:
    """The headline numbers of each model's suite are there and in range."""
    if model == "clap_ipa":
        assert 0.0 <= row["phone→speech"]["hit@1"] <= 1.0
        assert 0.0 <= row["kws"]["easy_auc"] <= 1.0
    elif model == "scraps":
        assert 0.0 <= row["phone→speech"]["hit@1"] <= 1.0
        assert 0.0 <= row["sensitivity"]["random@0.2"]["drop"] <= 1.0
        assert -1.0 <= row["intelligibility"]["spearman"] <= 1.0
    elif model == "ipa_clip":
        assert row.get("mse", 0.0) >= 0.0 and -1.0 <= row.get("s_Cv", 0.0) <= 1.0
        assert {"mse", "s_Cv", "shared", "pronunciation"} & set(row), f"unexpected section {sorted(row)}"
    elif model == "semantic_awe":
        assert 0.0 <= row.get("average_precision", 0.0) <= 1.0
        assert -1.0 <= row.get("spearman_averaged", 0.0) <= 1.0
        assert {"average_precision", "spearman_averaged", "segments"} & set(row), f"unexpected section {sorted(row)}"
    elif model == "layer_probe":
        assert 0.0 <= row["uncontrolled"]["hit@1"] <= 1.0 and row["uncontrolled"]["pairs"] > 0
    elif model == "early_exit":
        assert row["per"] >= 0.0 and row["per_language"] and 1 <= row["exit_layer"] <= 3
    else:
        assert 0.0 <= row["phone"]["f1@20"] <= 1.0 and row["phone"]["boundaries"] > 0


PLOTS = {"clap_ipa": "similarity_matrix.png", "aligner": "alignment_0.png", "scraps": "noise.png",
         "ipa_clip": "nonwords.png", "semantic_awe": "word_map_{}.png", "layer_probe": "layer_probe.png"}


@pytest.mark.parametrize("name", config.experiment_names())
def test_experiment_runs_end_to_end(
    name: str, tmp_path: Path, tiny_corpus: Path, tiny_pretrained: dict, tiny_run: TinyRun, tiny_clip: TinyClip
) -> None:
    overrides = [f"run_root={tmp_path}", "trainer.fast_dev_run=1",
                 *_model_overrides(name, tiny_run, tiny_clip, tiny_pretrained)]
    overrides += _data_overrides(name, tiny_corpus, tiny_pretrained)
    results = runner.train(name, overrides)
    arms = config.load(name)
    assert list(results) == [arm for arm, _ in arms]
    for arm, cfg in arms:
        run_dir = tmp_path / name / arm
        saved = json.loads((run_dir / "results.json").read_text())
        assert saved["metrics"], f"{name}/{arm} evaluated nothing"
        for row in saved["metrics"].values():
            _check_metrics(cfg.model.name, row)
        assert (run_dir / "results.md").read_text().startswith(f"# {name} / {arm}")
        assert (run_dir / "config.yaml").exists()
        if cfg.model.name in PLOTS:  # early exit draws its curve across arms (make report)
            assert (run_dir / "plots" / PLOTS[cfg.model.name].format(cfg.model.get("strategies", [""])[-1])).exists()

"""Train / evaluate every arm of an experiment and write ``results.json`` + ``results.md`` per arm."""

from __future__ import annotations

import datetime as dt
import json
import shutil
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch
from omegaconf import DictConfig, OmegaConf

from phonclip import config, registry
from phonclip.results import side_by_side, to_markdown
from phonclip.trainer import DropTotals, build_trainer, latest_checkpoint


def run_dir_for(cfg: DictConfig, arm: str) -> Path:
    return Path(cfg.run_root) / cfg.name / arm


def build_tokenizer(units: str) -> Any:
    return registry.tokenizers.cls(units)()


def build(cfg: DictConfig) -> tuple[L.LightningModule, L.LightningDataModule]:
    """The model and DataModule an experiment config describes, sharing one tokenizer."""
    tokenizer = build_tokenizer(cfg.model.units)
    data_cfg = cfg.data.copy()
    data_cfg.units = cfg.model.units  # the model decides the units; the reader tokenises accordingly
    datamodule = registry.datamodules.cls(cfg.data.name)(data_cfg, tokenizer=tokenizer)
    model = registry.models.cls(cfg.model.name)(cfg.model, tokenizer=tokenizer, seed=cfg.seed)
    return model, datamodule


def train(name: str, overrides: list[str] | None = None) -> dict[str, dict]:
    """Train then evaluate each arm; print one side-by-side table; return ``{arm: results}``."""
    return _each_arm(name, overrides, fit=True)


def evaluate(name: str, overrides: list[str] | None = None) -> dict[str, dict]:
    """Evaluate each arm's latest checkpoint (trained by ``train``); print one side-by-side table."""
    return _each_arm(name, overrides, fit=False)


def _each_arm(name: str, overrides: list[str] | None, fit: bool) -> dict[str, dict]:
    results = {}
    for arm, cfg in config.load(name, overrides):
        results[arm] = run_arm(cfg, arm, fit=fit)
    table = side_by_side(results)
    print(f"\n## {name}\n\n{table}\n")
    return results


def run_arm(cfg: DictConfig, arm: str, fit: bool = True) -> dict:
    """Train (optionally) and evaluate one arm in ``runs/<exp>/<arm>``; returns the results written there."""
    run_dir = run_dir_for(cfg, arm)
    if fit and not cfg.resume and run_dir.exists():
        archived = run_dir.with_name(f"{arm}.{dt.datetime.now():%Y%m%d-%H%M%S}")
        shutil.move(str(run_dir), str(archived))
        print(f"[{arm}] resume=false: previous run moved to {archived}")
    run_dir.mkdir(parents=True, exist_ok=True)
    OmegaConf.save(cfg, run_dir / "config.yaml")
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    model, datamodule = build(cfg)
    drops = DropTotals()
    trainer = build_trainer(cfg, run_dir, drops)
    started = time.time()
    checkpoint = latest_checkpoint(run_dir)
    steps = None  # what the evaluated weights were trained for
    if cfg.trainer.max_steps == 0:
        print(f"[{arm}] trainer.max_steps=0: evaluating the model as built (no training)")
    elif fit:
        resume_from = checkpoint if cfg.resume else None
        if resume_from:
            print(f"[{arm}] resuming from {resume_from}")
        trainer.fit(model, datamodule=datamodule, ckpt_path=resume_from)
    elif checkpoint is not None:
        model = type(model).load_from_checkpoint(checkpoint, map_location="cpu", tokenizer=model.tokenizer)
        steps = int(torch.load(checkpoint, map_location="cpu", weights_only=False)["global_step"])
    else:
        raise FileNotFoundError(f"no checkpoint in {run_dir}/checkpoints; run `make train EXP={cfg.name}` first")
    train_seconds = round(time.time() - started, 1) if fit else _trained_seconds(run_dir)
    steps = int(trainer.global_step) if steps is None else steps
    if trainer.global_rank != 0:
        return {}
    datamodule.setup("test")
    model.trainer = trainer  # evaluation plots reach TensorBoard also when nothing was fitted
    loaders_before = len(datamodule.loaders)
    eval_started = time.time()
    metrics = model.evaluate(datamodule, run_dir)
    eval_seconds = time.time() - eval_started
    eval_drops = _sum_drops(datamodule.loaders[loaders_before:])
    results = {
        "experiment": cfg.name,
        "arm": arm,
        "date": dt.datetime.now().isoformat(timespec="seconds"),
        "steps": steps,
        "train_seconds": train_seconds,
        "eval_seconds": round(eval_seconds, 1),
        "corpus_seconds": getattr(datamodule, "generation_seconds", None),
        "metrics": metrics,
        "data_quality": {
            "dropped_train": dict(sorted(drops.totals.items())),
            "dropped_eval": eval_drops,
            **_tokenizer_unknowns(model),
        },
    }
    (run_dir / "results.json").write_text(json.dumps(results, indent=2, ensure_ascii=False))
    (run_dir / "results.md").write_text(to_markdown(results))
    print(to_markdown(results))
    return results


def _trained_seconds(run_dir: Path) -> float | None:
    """What training this run cost, as its last results.json says (re-evaluating does not retrain)."""
    path = run_dir / "results.json"
    return json.loads(path.read_text()).get("train_seconds") if path.exists() else None


def _sum_drops(loaders: list) -> dict[str, int]:
    totals: dict[str, int] = {}
    for loader in loaders:
        for kind, n in loader.drop_totals.items():
            totals[kind] = totals.get(kind, 0) + n
    return dict(sorted(totals.items()))


def _tokenizer_unknowns(model: L.LightningModule) -> dict[str, Any]:
    unknown = getattr(getattr(model, "tokenizer", None), "unknown", None)
    return {"unknown_symbols": dict(unknown.most_common(20))} if unknown else {}


"""Experiment configuration: base.yaml + experiments/<name>.yaml + CLI overrides, validated against dataclasses.

Every section is a dataclass, so an unknown key or a wrong type fails at load time with an error that
names the key (and the nearest valid one) instead of deep inside a training run. The ``data`` and
``model`` sections are validated against the config class of the DataModule / LightningModule that
their ``name`` selects (see ``phonclip.registry``).
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigAttributeError, ConfigKeyError, OmegaConfBaseException

from phonclip import registry

EXPERIMENTS_DIR = Path(__file__).resolve().parent.parent / "experiments"


class ConfigError(ValueError):
    """A configuration mistake, phrased for the person who wrote the YAML."""


@dataclass
class TrainerConfig:
    """Arguments of ``lightning.Trainer`` that experiments may set; ``auto`` values are resolved per machine."""

    accelerator: str = "auto"
    devices: Any = "auto"
    strategy: str = "auto"  # auto: DDP when more than one device or node
    num_nodes: int = 1
    precision: str = "auto"  # auto: bf16-mixed on CUDA, 32-true on CPU
    max_steps: int = -1
    max_epochs: int | None = None
    max_time: str | None = None  # "DD:HH:MM:SS"
    val_check_interval: Any = None
    check_val_every_n_epoch: int | None = None
    limit_val_batches: float = 1.0
    num_sanity_val_steps: int = 0
    log_every_n_steps: int = 20
    gradient_clip_val: float | None = 1.0
    accumulate_grad_batches: int = 1
    fast_dev_run: Any = False
    deterministic: Any = False
    enable_progress_bar: bool = True


@dataclass
class CheckpointConfig:
    """When to write checkpoints; ``last.ckpt`` is always kept so a killed run resumes."""

    every_n_train_steps: int = 100
    save_top_k: int = 0


@dataclass
class AveragingConfig:
    """An exponential moving average of the weights, updated every step, is what validation, checkpoints and
    evaluation see (Lightning's ``EMAWeightAveraging``); 0 trains and evaluates the last weights."""

    ema_decay: float = 0.0


@dataclass
class ExperimentConfig:
    """One experiment; ``arms`` maps an arm name to dotted overrides applied on top of the rest."""

    name: str = ""
    description: str = ""
    seed: int = 0
    run_root: str = "runs"
    resume: bool = True  # continue from last.ckpt when the run directory has one
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    averaging: AveragingConfig = field(default_factory=AveragingConfig)
    data: Any = field(default_factory=dict)
    model: Any = field(default_factory=dict)
    arms: dict[str, Any] = field(default_factory=dict)


def experiment_names() -> list[str]:
    """Names of the runnable experiments (every YAML in experiments/ except base)."""
    return sorted(p.stem for p in EXPERIMENTS_DIR.glob("*.yaml") if p.stem != "base")


def load(name: str, overrides: list[str] | None = None) -> list[tuple[str, DictConfig]]:
    """Load experiment ``name`` and return ``(arm, config)`` pairs, one per arm (``("main", cfg)`` without arms)."""
    raw = OmegaConf.merge(
        OmegaConf.load(EXPERIMENTS_DIR / "base.yaml"),
        _read_experiment(name, ()),
        OmegaConf.from_dotlist(list(overrides or [])),
    )
    raw.name = name
    base = _validate(raw, ExperimentConfig, "")
    arms = OmegaConf.to_container(base.arms) or {"main": {}}
    configs = []
    for arm, arm_overrides in arms.items():
        if not isinstance(arm_overrides, dict):
            raise ConfigError(f"arms.{arm} must map dotted keys to values, got {arm_overrides!r}")
        arm_raw = raw.copy()
        arm_raw.arms = {}
        for key, value in arm_overrides.items():
            OmegaConf.update(arm_raw, key, value, merge=True, force_add=True)
        configs.append((arm, _validate(arm_raw, ExperimentConfig, "")))
    return configs


def _read_experiment(name: str, children: tuple[str, ...]) -> DictConfig:
    """``experiments/<name>.yaml`` merged over the experiment it names in ``extends`` (if any), so an
    ablation restates only what it changes."""
    path = EXPERIMENTS_DIR / f"{name}.yaml"
    if not path.exists():
        hint = _nearest(name, experiment_names())
        raise ConfigError(f"no experiment {name!r} in experiments/{hint}; known: {', '.join(experiment_names())}")
    raw = OmegaConf.load(path)
    parent = raw.pop("extends", None)
    if parent is None:
        return raw
    if parent == name or parent in children:
        chain = " -> ".join((*children, name, parent))
        raise ConfigError(f"experiments/{name}.yaml: extends {parent!r} makes a cycle ({chain})")
    return OmegaConf.merge(_read_experiment(parent, (*children, name)), raw)


def from_yaml(path: str | Path) -> DictConfig:
    """Re-validate a resolved config saved in a run directory."""
    return _validate(OmegaConf.load(path), ExperimentConfig, "")


def _validate(raw: DictConfig, schema: type, prefix: str) -> DictConfig:
    """Merge ``raw`` into the structured schema, then validate the data/model sections by their name."""
    cfg = _merge_checked(schema, raw, prefix)
    if schema is ExperimentConfig:
        cfg.data = _validate_section(cfg.data, "data", registry.datamodules)
        cfg.model = _validate_section(cfg.model, "model", registry.models)
    return cfg


def _validate_section(section: Any, key: str, lookup: registry.Registry) -> DictConfig:
    if not isinstance(section, DictConfig) or "name" not in section:
        raise ConfigError(f"{key}.name is required (one of: {', '.join(lookup.known())})")
    try:
        schema = lookup.config(section.name)
    except KeyError:
        hint = _nearest(str(section.name), lookup.known())
        raise ConfigError(f"{key}.name={section.name!r} is unknown{hint}; known: {', '.join(lookup.known())}") from None
    return _merge_checked(schema, section, f"{key}.")


def _merge_checked(schema: type, raw: DictConfig, prefix: str) -> DictConfig:
    structured = OmegaConf.structured(schema)
    try:
        merged = OmegaConf.merge(structured, raw)
    except (ConfigKeyError, ConfigAttributeError) as err:
        full_key = prefix + str(err.full_key)
        raise ConfigError(f"unknown config key {full_key!r}{_hint_for(schema, str(err.full_key), prefix)}") from None
    except OmegaConfBaseException as err:
        full_key = prefix + str(getattr(err, "full_key", "") or "")
        raise ConfigError(f"bad value for {full_key!r}: {_first_line(err)}") from None
    OmegaConf.set_struct(merged, True)
    return merged


def _hint_for(schema: type, dotted: str, prefix: str) -> str:
    """'; did you mean ...' for the last component of ``dotted`` within the dataclass tree."""
    parts = dotted.split(".")
    node: Any = schema
    for part in parts[:-1]:
        sub = {f.name: f for f in fields(node)}.get(part) if is_dataclass(node) else None
        if sub is None:
            return ""
        default = sub.default_factory() if callable(sub.default_factory) else sub.default
        node = type(default) if is_dataclass(default) else None
    if not is_dataclass(node):
        return ""
    valid = [f.name for f in fields(node)]
    close = difflib.get_close_matches(parts[-1], valid, n=1, cutoff=0.5)
    parent = prefix + "".join(f"{p}." for p in parts[:-1])
    return f"; did you mean '{parent}{close[0]}'?" if close else f"; valid keys here: {', '.join(valid)}"


def _nearest(word: str, candidates: list[str]) -> str:
    close = difflib.get_close_matches(word, candidates, n=1, cutoff=0.5)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _first_line(err: Exception) -> str:
    return str(err).strip().splitlines()[0]

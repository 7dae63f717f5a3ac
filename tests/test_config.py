"""Config loading: base + experiment + overrides, arms, and errors that name the bad key."""

import pytest

from phonclip import config
from phonclip.config import ConfigError


def test_every_experiment_loads():
    for name in config.experiment_names():
        arms = config.load(name)
        assert arms and all(cfg.name == name for _, cfg in arms)


def test_overrides_reach_the_trainer():
    (_, cfg), *_ = config.load("clap_ipa", ["trainer.max_steps=7", "model.embed_dim=64"])
    assert cfg.trainer.max_steps == 7 and cfg.model.embed_dim == 64


def test_unknown_top_level_key_names_key_and_suggestion():
    with pytest.raises(ConfigError, match=r"trainer\.max_step'.*trainer\.max_steps"):
        config.load("clap_ipa", ["trainer.max_step=5"])


def test_unknown_model_key_names_key_and_suggestion():
    with pytest.raises(ConfigError, match=r"model\.embed_dimm'.*model\.embed_dim"):
        config.load("clap_ipa", ["model.embed_dimm=5"])


def test_unknown_nested_key_names_full_path():
    with pytest.raises(ConfigError, match=r"model\.speech\.sizee'.*model\.speech\.size"):
        config.load("clap_ipa", ["model.speech.sizee=tiny"])


def test_wrong_type_names_key():
    with pytest.raises(ConfigError, match=r"trainer\.max_steps"):
        config.load("clap_ipa", ["trainer.max_steps=many"])
    with pytest.raises(ConfigError, match=r"model\.embed_dim"):
        config.load("clap_ipa", ["model.embed_dim=wide"])


def test_unknown_model_name_suggests():
    with pytest.raises(ConfigError, match="clap_ipa"):
        config.load("clap_ipa", ["model.name=clap_ip"])


def test_unknown_experiment_lists_known():
    with pytest.raises(ConfigError, match="clap_ipa"):
        config.load("clap_ipx")


def test_arms_expand_with_their_overrides():
    arms = dict(config.load("ablation_hardneg"))
    assert len(arms) == 2
    rates = sorted(cfg.model.hard_negatives.rate for cfg in arms.values())
    assert rates[0] == 0 and rates[1] > 0
    assert all(not cfg.arms for cfg in arms.values())


def test_ablations_extend_the_default_recipe():
    (_, default), *_ = config.load("clap_ipa")
    for name in ("ablation_hardneg", "ablation_text_vs_phone"):
        for _, cfg in config.load(name):
            assert cfg.model.phone == default.model.phone
            assert cfg.model.hop_length == default.model.hop_length
            assert cfg.data == default.data


def _write_experiments(tmp_path, monkeypatch, **yamls: str) -> None:
    (tmp_path / "base.yaml").write_text("seed: 0\n")
    for name, text in yamls.items():
        (tmp_path / f"{name}.yaml").write_text(text)
    monkeypatch.setattr(config, "EXPERIMENTS_DIR", tmp_path)


def test_extends_merges_parent_then_child_then_overrides(tmp_path, monkeypatch):
    _write_experiments(
        tmp_path, monkeypatch,
        parent="trainer: {max_steps: 10, log_every_n_steps: 5}\ndata: {name: synthetic}\nmodel: {name: clap_ipa, embed_dim: 64}\n",
        child="extends: parent\ntrainer: {max_steps: 20}\n",
        grandchild="extends: child\nmodel: {embed_dim: 32}\n",
    )  # fmt: skip
    (_, cfg), *_ = config.load("grandchild", ["trainer.log_every_n_steps=7"])
    assert (cfg.trainer.max_steps, cfg.trainer.log_every_n_steps, cfg.model.embed_dim) == (20, 7, 32)
    assert "extends" not in cfg


def test_extends_cycle_and_missing_parent_are_named(tmp_path, monkeypatch):
    _write_experiments(tmp_path, monkeypatch, a="extends: b\n", b="extends: a\n", c="extends: nowhere\n")
    with pytest.raises(ConfigError, match="cycle"):
        config.load("a")
    with pytest.raises(ConfigError, match="nowhere"):
        config.load("c")

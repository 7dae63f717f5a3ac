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

"""Shared test setup: caches in a temp dir, deterministic hypothesis without a database in the repo, and one
tiny CLAP-IPA run per session that the CLI, API and aligner tests start from; a tiny CLIP with images."""

import os

import pytest
from hypothesis import settings
from omegaconf import DictConfig
from tiny import (
    RUN_CORPUS,
    RUN_MODEL,
    TinyClip,
    TinyRun,
    corpus_overrides,
    write_image_folder,
    write_tiny_clip,
)

from phonclip import runner

settings.register_profile("phonclip", database=None, derandomize=True, deadline=None)
settings.load_profile("phonclip")


@pytest.fixture(scope="session", autouse=True)
def _cache_dir(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Never touch the user's cache: every test session gets its own PHONCLIP_CACHE unless one is set."""
    if "PHONCLIP_CACHE" not in os.environ:
        os.environ["PHONCLIP_CACHE"] = str(tmp_path_factory.mktemp("phonclip_cache"))


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> TinyRun:
    """CLAP-IPA trained 2 steps on a tiny corpus by the real runner; the trained module is kept."""
    root = tmp_path_factory.mktemp("runs")
    overrides = [
        f"run_root={root}",
        "trainer.max_steps=2",
        "trainer.enable_progress_bar=false",
        "checkpoint.every_n_train_steps=1",
        "data.num_workers=0",
        "data.max_batch_seconds=8",
        *corpus_overrides("data.corpus", RUN_CORPUS),
        *(f"model.{k}={v}" for k, v in RUN_MODEL.items()),
    ]
    built: list = []
    build = runner.build

    def keep_model(cfg: DictConfig) -> tuple:
        model, datamodule = build(cfg)
        built.append(model)
        return model, datamodule

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(runner, "build", keep_model)
        results = runner.train("clap_ipa", overrides)
    assert results["main"]["steps"] == 2
    return TinyRun(root / "clap_ipa" / "main", built[0])


@pytest.fixture(scope="session")
def tiny_clip(tmp_path_factory: pytest.TempPathFactory) -> TinyClip:
    """A tiny random CLIP (the paper's teacher and image tower) and a 4-class ImageFolder, saved once."""
    model = write_tiny_clip(tmp_path_factory.mktemp("tiny_clip"))
    images = write_image_folder(tmp_path_factory.mktemp("imagenet") / "val")
    return TinyClip(model=model, images=images, dim=16)

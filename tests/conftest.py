"""Shared test setup: caches in a temp dir, deterministic hypothesis without a database in the repo."""

import os

import pytest
from hypothesis import settings

settings.register_profile("phonclip", database=None, derandomize=True, deadline=None)
settings.load_profile("phonclip")


@pytest.fixture(scope="session", autouse=True)
def _cache_dir(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Never touch the user's cache: every test session gets its own PHONCLIP_CACHE unless one is set."""
    if "PHONCLIP_CACHE" not in os.environ:
        os.environ["PHONCLIP_CACHE"] = str(tmp_path_factory.mktemp("phonclip_cache"))

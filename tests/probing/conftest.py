"""Fixtures of the engine tests: a private synthetic-data cache (subprocesses inherit it)."""

import os

import pytest


@pytest.fixture(scope="session")
def synthetic_cache(tmp_path_factory):
    """Renders the smoke datasets once per session into a private folder."""
    path = tmp_path_factory.mktemp("synthetic")
    old = os.environ.get("WALT_PROBE_SYNTHETIC_CACHE")
    os.environ["WALT_PROBE_SYNTHETIC_CACHE"] = str(path)
    yield path
    if old is None:
        os.environ.pop("WALT_PROBE_SYNTHETIC_CACHE", None)
    else:
        os.environ["WALT_PROBE_SYNTHETIC_CACHE"] = old

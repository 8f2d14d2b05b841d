"""Shared fixtures: the offline data root (read-only) and a per-session cache directory."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def data_root() -> Path:
    return Path(os.environ.get("OOD_BENCH_DATA_ROOT", REPO.parent / "shared" / "data")).resolve()


@pytest.fixture(scope="session")
def root() -> Path:
    r = data_root()
    if not (r / "MNIST" / "raw").exists():
        pytest.skip(f"offline datasets not found at {r} (set OOD_BENCH_DATA_ROOT)")
    return r


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cache")

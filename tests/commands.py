"""The console scripts as a user runs them (fresh processes), on small real subsets."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

SMALL = [
    "data.train_size=4000", "data.fit_size=2000", "data.calibration_size=1000",
    "data.max_id_test=600", "data.max_ood=400", "backbone.recipe.epochs=1",
]


def run_module(module: str, args: list[str], cache: Path | None = None,
               root: Path | None = None, env: dict[str, str] | None = None,
               timeout: float = 900) -> subprocess.CompletedProcess:
    """``python -m <module> <args>`` with the cache and data root set (cwd: the repository)."""
    full = {**os.environ, **(env or {})}
    if cache is not None:
        full["OOD_BENCH_CACHE"] = str(cache)
    if root is not None:
        full["OOD_BENCH_DATA_ROOT"] = str(root)
    return subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True,
                          env=full, timeout=timeout, cwd=REPO)


def ood_bench(args: list[str], cache: Path, root: Path | None = None,
              env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return run_module("benchmark.cli", args, cache, root, env)

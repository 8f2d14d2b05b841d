"""Shared fixtures: the offline data root (read-only), a per-session cache, the test world
(one tiny MNIST LeNet for every adapter test) and the optional libraries.

``OOD_BENCH_REQUIRE`` (comma-separated: ``data``, ``openood``, ``oodeel``, ``examples``,
``timm``, ``launchers``)
turns a skip for want of that resource into a failure; CI sets it, so a missing dataset or
library install cannot pass silently.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# every run a test makes appends to the results store: one per test session, never the
# repository's outputs/ (tests that read a store set their own)
os.environ["OOD_BENCH_STORE"] = tempfile.mkdtemp(prefix="ood-bench-test-store-")
REQUIRED = {r.strip() for r in os.environ.get("OOD_BENCH_REQUIRE", "").split(",") if r.strip()}


def unavailable(resource: str, reason: str) -> None:
    """Skip the test for want of ``resource`` (``data``, ``openood``, ``oodeel``, ...), or fail
    when it is required here (``OOD_BENCH_REQUIRE``)."""
    if resource in REQUIRED:
        pytest.fail(f"{reason} (required: OOD_BENCH_REQUIRE={','.join(sorted(REQUIRED))})")
    pytest.skip(reason)


def data_root() -> Path:
    return Path(os.environ.get("OOD_BENCH_DATA_ROOT", REPO.parent / "shared" / "data")).resolve()


@pytest.fixture(scope="session")
def root() -> Path:
    r = data_root()
    for folder in ("MNIST/raw", "FashionMNIST/raw", "notMNIST/raw", "cifar10"):
        if not (r / folder).exists():
            unavailable("data", f"offline datasets not found at {r} (no {folder}; set "
                        "OOD_BENCH_DATA_ROOT)")
    return r


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="session")
def world(root, tmp_path_factory):
    """The tiny MNIST LeNet and its representations, built once for every adapter test."""
    from tests.world import build_world

    w = build_world(root, tmp_path_factory.mktemp("world-cache"))
    assert w.accuracy > 0.85, f"test LeNet too weak ({w.accuracy:.3f}); check the training"
    return w


@pytest.fixture(scope="session")
def openood():
    """The OpenOOD adapter module (OpenOOD installed), else skipped (or failed if required)."""
    try:
        import openood as _  # noqa: F401
    except ImportError:
        unavailable("openood", "OpenOOD is not installed (not on PyPI): see README, 'Installing "
                    "OpenOOD' (CI installs it from ../shared/wheels)")
    from adapters.openood import adapter
    from adapters.openood.compat import ensure_importable

    ensure_importable()  # numpy 2: imgaug placeholder (see compat.py)
    return adapter


@pytest.fixture(scope="session")
def oodeel():
    """Oodeel (installed without its declared numpy<=1.26.4), else skipped (or failed if
    required)."""
    try:
        import oodeel.methods as methods
    except ImportError as exc:
        unavailable("oodeel", f"Oodeel is not installed ({exc}): pip install -e '.[oodeel]' "
                    "&& pip install --no-deps 'oodeel==0.4.0' (README, 'Installing Oodeel')")
    return methods


SWEEP_SMALL = [
    "data.train_size=3000", "data.fit_size=1000", "data.calibration_size=1000",
    "data.max_id_test=300", "data.max_ood=300", "backbone.recipe.epochs=1",
]
SWEEP_DETECTORS = ["pytorch_ood_msp", "pytorch_ood_energy"]


@pytest.fixture(scope="session")
def sweep(root, tmp_path_factory) -> Path:
    """A real two-job multirun (MSP, Energy) on small subsets, for reports and studies."""
    from tests.commands import ood_bench

    out = tmp_path_factory.mktemp("report-sweep")
    proc = ood_bench(["-m", "detector=pytorch_ood/msp,pytorch_ood/energy", *SWEEP_SMALL,
                      f"hydra.sweep.dir={out}"], tmp_path_factory.mktemp("sweep-cache"), root)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out

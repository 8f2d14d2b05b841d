"""The results store: runs append their rows and scores as they finish; reports and paper
tables read them back, from several runs at once, without the run folders."""

from __future__ import annotations

import os
import shutil

import pandas as pd
import pytest

from benchmark import store
from benchmark.studies.paper_tables import TableError, build
from tests.commands import run_module
from tests.conftest import SWEEP_SMALL

SPEC = {
    "name": "tiny", "metric": "auroc",
    "runs": {"m": {"overrides": ["pair=mnist_neuralfp", "backbone=lenet"]}},
    "detectors": {"MSP": "pytorch_ood/msp", "Energy": "pytorch_ood/energy"},
    "columns": [{"run": "m", "ood": "cifar10", "label": "MNIST / CIFAR-10"},
                {"run": "m", "ood": "fashionmnist", "label": "MNIST / Fashion-MNIST"}],
}


def test_a_table_from_two_sweep_jobs_in_the_store_equals_the_table_run_at_once(
        root, tmp_path, monkeypatch) -> None:
    cache = tmp_path / "cache"
    monkeypatch.setenv("OOD_BENCH_CACHE", str(cache))
    monkeypatch.setenv("OOD_BENCH_DATA_ROOT", str(root))
    monkeypatch.setenv("OOD_BENCH_STORE", str(tmp_path / "store-a"))
    build("tiny", SWEEP_SMALL, out_root=tmp_path / "direct", spec=SPEC,
          runs_root=tmp_path / "runs")
    direct = pd.read_csv(tmp_path / "direct" / "tiny.csv")
    assert direct.ours.notna().all()
    # the same detectors as two jobs of a sweep, into another store
    proc = run_module("benchmark.cli", [
        "-m", "detector=pytorch_ood/msp,pytorch_ood/energy", "pair=mnist_neuralfp",
        "backbone=lenet", *SWEEP_SMALL, f"hydra.sweep.dir={tmp_path / 'sweep'}"], cache, root,
        env={"OOD_BENCH_STORE": str(tmp_path / "store-b")})
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = store.query(tmp_path / "store-b")
    assert rows.run_id.nunique() == 2 and set(rows.detector) == {"pytorch_ood_msp",
                                                                 "pytorch_ood_energy"}
    shutil.rmtree(tmp_path / "sweep")  # the store alone is enough
    build("tiny", SWEEP_SMALL, out_root=tmp_path / "stored", spec=SPEC,
          runs_root=tmp_path / "runs-unused", store_dir=tmp_path / "store-b")
    assert not (tmp_path / "runs-unused").exists()  # nothing ran
    pd.testing.assert_frame_equal(direct, pd.read_csv(tmp_path / "stored" / "tiny.csv"),
                                  check_exact=True)
    # another setting is not silently taken from the store
    with pytest.raises(TableError, match="no run of pytorch_ood_msp, pytorch_ood_energy"):
        build("tiny", [*SWEEP_SMALL, "data.fit_size=900"], out_root=tmp_path / "x", spec=SPEC,
              store_dir=tmp_path / "store-b")


def _from_summary(report) -> str:
    return report.read_text().split("## Summary by criterion")[1]


def test_report_from_the_store_equals_the_report_from_the_folders(sweep, tmp_path) -> None:
    """The session's store holds every test's runs: --where picks the sweep's."""
    store_dir = os.environ["OOD_BENCH_STORE"]
    where = f"run_folder LIKE '{sweep.resolve()}/%'"
    assert store.query(store_dir, where).run_id.nunique() == 2
    folders = run_module("benchmark.report", [str(sweep), "--out", str(tmp_path / "a")])
    stored = run_module("benchmark.report", ["--store", store_dir, "--where", where,
                                                 "--out", str(tmp_path / "b")])
    assert folders.returncode == 0 and stored.returncode == 0, stored.stderr[-3000:]
    assert _from_summary(tmp_path / "a" / "report.md") == _from_summary(
        tmp_path / "b" / "report.md")
    for args in (["--store", str(tmp_path / "none"), "--out", str(tmp_path / "c")],
                 ["--store", store_dir, "--where", "no_such_column = 1", "--out",
                  str(tmp_path / "c")],
                 ["--store", store_dir, str(sweep)]):
        proc = run_module("benchmark.report", args)
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, (args, proc.stderr)

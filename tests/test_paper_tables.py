"""Paper tables: our numbers from real runs beside published ones; missing sets say so."""

from __future__ import annotations

import pandas as pd
import pytest

from benchmark.paper_tables import build, load_table

SMALL = ["data.train_size=3000", "data.fit_size=1000", "data.calibration_size=1000",
         "data.max_id_test=300", "data.max_ood=300", "backbone.recipe.epochs=1"]


def test_committed_table_configs_load() -> None:
    spec = load_table("neuralfp")
    assert len(spec["columns"]) == 6
    assert spec["published"]["NeuralFP (in-house reimplementation)"][0] == 0.9826


def test_unknown_table_lists_valid_ones() -> None:
    with pytest.raises(SystemExit, match="Valid: .*neuralfp"):
        load_table("nope")


def test_table_from_a_real_run(root, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("OOD_BENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("OOD_BENCH_DATA_ROOT", str(root))
    spec = {
        "name": "tiny", "metric": "auroc",
        "runs": {"m": {"overrides": ["pair=mnist_neuralfp", "backbone=lenet"]}},
        "detectors": {"MSP": "pytorch_ood/msp", "Energy": "pytorch_ood/energy"},
        "columns": [{"run": "m", "ood": "cifar10", "label": "MNIST / CIFAR-10"},
                    {"run": "m", "ood": "svhn", "label": "MNIST / SVHN"}],
        "published": {"MSP": [0.9, 0.8]},
    }
    md = build("tiny", SMALL, out_root=tmp_path / "tables", spec=spec,
               runs_root=tmp_path / "runs")
    long = pd.read_csv(tmp_path / "tables" / "tiny.csv")
    msp = long[(long.row == "MSP") & (long.column == "MNIST / CIFAR-10")].iloc[0]
    run_rows = pd.read_csv(tmp_path / "tables" / "tiny_runs" / "m" / "metrics.csv")
    ours = run_rows[(run_rows.detector == "pytorch_ood_msp")
                    & (run_rows.ood_dataset == "cifar10")].auroc.iloc[0]
    assert msp.ours == pytest.approx(ours) and msp.difference == pytest.approx(ours - 0.9)
    svhn = long[long.column == "MNIST / SVHN"]
    if "svhn" not in set(run_rows.ood_dataset):  # offline: the set is skipped, never invented
        assert svhn.ours.isna().all() and svhn.status.str.startswith("missing").all()
    text = md.read_text()
    assert "MNIST / CIFAR-10" in text and "manifest.json" in text
    assert (tmp_path / "tables" / "tiny.tex").read_text().count(r"\\") == 3

"""One command over backbone seeds, one report with mean ± sd (real runs, small subsets)."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from tests.commands import ood_bench, run_module
from tests.conftest import SWEEP_SMALL


def test_a_seed_sweep_is_reported_as_mean_and_sd(root, tmp_path) -> None:
    sweep = tmp_path / "seeds"
    proc = ood_bench(["-m", "backbone.recipe.seed=0,1",
                      "detector=pytorch_ood/msp,pytorch_ood/energy",
                      *SWEEP_SMALL, f"hydra.sweep.dir={sweep}"], tmp_path / "cache", root)
    assert proc.returncode == 0, proc.stderr[-3000:]
    shas = {json.loads(p.read_text())["backbone"]["sha256"]
            for p in sweep.rglob("manifest.json")}
    assert len(shas) == 2  # two seeds, two different networks
    out = tmp_path / "report"
    proc = run_module("benchmark.report", [str(sweep), "--out", str(out)])
    assert proc.returncode == 0, proc.stderr[-3000:]
    table = pd.read_csv(out / "sweep.csv").set_index("label")
    assert sorted(table.index) == ["pytorch_ood_energy", "pytorch_ood_msp"]
    assert (table["replicates"] == 2).all()
    assert (table["auroc_all_sd"] > 0).all()
    rows = pd.read_csv(out / "sweep_rows.csv")
    for det, grp in rows.groupby("detector"):
        per_seed = grp.groupby("backbone_seed").auroc.mean()
        assert sorted(per_seed.index) == [0, 1]
        assert table.loc[det, "auroc_all"] == pytest.approx(per_seed.mean(), abs=1e-12)
    md = (out / "sweep.md").read_text()
    assert f"{table.loc['pytorch_ood_msp', 'auroc_all']:.4f} ± " in md.replace("**", "")
    report = (out / "report.md").read_text()
    assert "### Best detectors" in report and "p (Holm)" in report


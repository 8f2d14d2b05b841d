"""ood-bench-report on a tiny real sweep: tables equal the runs' rows, means, LaTeX, plots,
timing arithmetic, robustness verdicts (ok / error / changed) and measured ease of use."""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from adapters import registry
from adapters.base import LogitDetector
from benchmark import report_ease
from benchmark.report_robustness import PROBES, ProbeSettings, probe_detectors, run_config
from benchmark.report_sweep import collect

SMALL = [
    "data.train_size=3000", "data.fit_size=1000", "data.calibration_size=1000",
    "data.max_id_test=300", "data.max_ood=300", "backbone.recipe.epochs=1",
]
DETECTORS = ["pytorch_ood_msp", "pytorch_ood_energy"]


@pytest.fixture(scope="module")
def sweep(root, tmp_path_factory) -> Path:
    """A real two-job multirun (MSP, Energy) on small subsets."""
    cache = tmp_path_factory.mktemp("report-cache")
    out = tmp_path_factory.mktemp("report-sweep")
    env = {**os.environ, "OOD_BENCH_CACHE": str(cache), "OOD_BENCH_DATA_ROOT": str(root)}
    proc = subprocess.run(
        [sys.executable, "-m", "benchmark.cli", "-m", "detector=pytorch_ood/msp,pytorch_ood/energy",
         *SMALL, f"hydra.sweep.dir={out}"],
        capture_output=True, text=True, env=env, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


@pytest.fixture(scope="module")
def report(sweep, tmp_path_factory) -> Path:
    """The real console command (no ease/robustness: those have their own tests)."""
    out = tmp_path_factory.mktemp("report-out")
    proc = subprocess.run([sys.executable, "-m", "benchmark.report", str(sweep), "--out",
                           str(out)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "report.md" in proc.stdout
    return out


def _run_rows(sweep: Path) -> pd.DataFrame:
    frames = [pd.read_csv(p) for p in sorted(sweep.rglob("metrics.csv"))]
    assert len(frames) == 2
    return pd.concat(frames, ignore_index=True)


def test_aggregated_table_equals_every_run_row(sweep, report) -> None:
    rows = _run_rows(sweep)
    table = pd.read_csv(report / "sweep.csv").set_index("label")
    assert sorted(table.index) == sorted(DETECTORS)
    assert len(rows) == 2 * 3
    for _, r in rows.iterrows():
        assert r.status == "ok", r.error
        for metric in ("auroc", "fpr95tpr", "aupr_in", "aupr_out"):
            assert table.loc[r.detector, f"{metric}_{r.ood_dataset}"] == r[metric]
    raw = pd.read_csv(report / "sweep_rows.csv")
    assert len(raw) == len(rows) and set(raw.run.str.split("/").str[0]) == {
        p.name for p in sweep.iterdir() if p.is_dir()}


def test_near_far_and_overall_means(sweep, report) -> None:
    rows = _run_rows(sweep)
    table = pd.read_csv(report / "sweep.csv").set_index("label")
    assert set(rows.ood_group) == {"near", "far"}
    for det, grp in rows.groupby("detector"):
        for metric in ("auroc", "fpr95tpr"):
            near = grp[grp.ood_group == "near"][metric].tolist()
            far = grp[grp.ood_group == "far"][metric].tolist()
            assert len(near) == 2 and len(far) == 1
            assert math.isclose(table.loc[det, f"{metric}_near"], sum(near) / 2, rel_tol=1e-12)
            assert math.isclose(table.loc[det, f"{metric}_far"], far[0], rel_tol=1e-12)
            assert math.isclose(table.loc[det, f"{metric}_all"], sum(near + far) / 3,
                                rel_tol=1e-12)
    md = (report / "sweep.md").read_text()
    assert "higher = more OOD" in md and "near mean" in md


def test_latex_is_a_plausible_booktabs_tabular(report) -> None:
    tex = (report / "sweep.tex").read_text()
    assert tex.count("\\begin{tabular}") == tex.count("\\end{tabular}") == 2  # AUROC, FPR@95
    for block in re.findall(r"\\begin\{tabular\}\{(\w+)\}(.*?)\\end\{tabular\}", tex, re.S):
        spec, body = block
        header, data = body.split("\\midrule")
        data = data.split("\\bottomrule")[0]
        lines = [ln for ln in data.strip().splitlines() if ln.strip()]
        assert len(lines) == len(DETECTORS)
        ncols = len(spec)
        assert ncols == 2 + 3 + 3  # detector, library, 3 OOD sets, near/far/all
        for ln in [header.split("\\toprule")[1].strip(), *lines]:
            assert ln.endswith("\\\\") and ln.count("&") == ncols - 1
        assert "pytorch\\_ood\\_msp" in data and "\\textbf{" in data
    code = "\n".join(ln for ln in tex.splitlines() if not ln.startswith("%"))
    assert not re.search(r"(?<!\\)_", code)  # every underscore escaped


def test_report_links_every_part_and_plots_are_pngs(report) -> None:
    text = (report / "report.md").read_text()
    for heading in ("Summary by criterion", "1. Sweep", "2. Timing", "3. Ease of use",
                    "4. Robustness", "5. Plots"):
        assert heading in text
    assert "ood-bench -m" in text and "ood-bench-report" in text  # the commands
    links = re.findall(r"\]\(([^)]+)\)", text)
    assert links
    for link in links:
        assert (report / link).is_file(), link
    plots = {p.name for p in (report / "plots").glob("*.png")}
    expected = {"auroc_bar.png", "roc_fashionmnist.png", "roc_notmnist.png", "roc_cifar10.png"}
    expected |= {f"hist_{d}.png" for d in DETECTORS}
    assert expected <= plots
    for name in expected:
        data = (report / "plots" / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000, name


def test_timing_per_1000_and_extraction_share(sweep, report) -> None:
    timing = pd.read_csv(report / "timing.csv").set_index("label")
    for det, grp in _run_rows(sweep).groupby("detector"):
        seconds = grp.score_seconds.sum() + grp.id_score_seconds.iloc[0]
        n = grp.n_ood.sum() + grp.n_id.iloc[0]
        assert n == 300 * 4
        assert math.isclose(timing.loc[det, "score_s_per_1000"], 1000 * seconds / n,
                            rel_tol=1e-9)
        assert timing.loc[det, "fit_seconds"] == grp.fit_seconds.iloc[0]
        assert timing.loc[det, "peak_memory_mb"] == grp.peak_memory_mb.iloc[0]
        run_dir = next(p.parent for p in sweep.rglob("metrics.csv")
                       if det in pd.read_csv(p).detector.values)
        t = json.loads((run_dir / "manifest.json").read_text())["timings"]
        assert math.isclose(timing.loc[det, "extraction_share"],
                            t["extraction_seconds"] / t["total_seconds"], rel_tol=1e-9)


# --------------------------------------------------------------------------- robustness


class _NaNScores(LogitDetector):
    """Deliberately broken: NaN for every sample."""

    def fit(self, id_fit, network):
        return self

    def score(self, split, network):
        return np.full(len(split), np.nan)


class _BatchDependent(LogitDetector):
    """Max logit minus the mean of its chunk: depends on which batch a sample lands in."""

    def fit(self, id_fit, network):
        return self

    def score(self, split, network):
        top = split.logits.max(axis=1).astype(np.float64)
        out = np.empty_like(top)
        for start in range(0, len(top), network.batch_size):
            chunk = top[start:start + network.batch_size]
            out[start:start + network.batch_size] = chunk - chunk.mean()
        return out


class _Unseeded(LogitDetector):
    """Max logit plus fresh noise on every fit: two identical runs differ."""

    def fit(self, id_fit, network):
        self.offset_ = np.random.default_rng().normal()
        return self

    def score(self, split, network):
        return -split.logits.max(axis=1) + self.offset_


@pytest.fixture
def fake_library(monkeypatch):
    module = types.ModuleType("fake_report_adapter")
    kinds = {"nan": _NaNScores, "batch": _BatchDependent, "unseeded": _Unseeded}
    module.build = lambda name, params: kinds[name](name, **params)
    module.available = lambda: sorted(kinds)
    monkeypatch.setitem(sys.modules, "fake_report_adapter", module)
    monkeypatch.setitem(registry.ADAPTER_MODULES, "fake", "fake_report_adapter")


def test_robustness_matrix_ok_error_changed(sweep, fake_library) -> None:
    coll = collect(sweep)
    settings = ProbeSettings(n_id=100, n_ood=100, fit_cap=300, n_perturbed=12,
                             n_constant_each=4)
    specs = {
        "msp": {"library": "pytorch_ood", "name": "MaxSoftmax", "params": {}},
        "broken": {"library": "fake", "name": "nan", "params": {}},
        "batchy": {"library": "fake", "name": "batch", "params": {}},
        "unseeded": {"library": "fake", "name": "unseeded", "params": {}},
        "unknown": {"library": "pytorch_ood", "name": "NoSuchDetector", "params": {}},
    }
    results = probe_detectors(run_config(coll.runs[0], settings), specs, settings)
    m = {(r.label, r.probe): r for r in results}
    assert len(results) == len(specs) * len(PROBES)
    for p in PROBES:
        assert m["broken", p].status == "error" and "NaN" in m["broken", p].detail
        assert m["unknown", p].status == "error" and "NoSuchDetector" in m["unknown", p].detail
    for p in ("constant_images", "tiny_fit", "missing_class", "batch_invariance",
              "determinism"):
        assert m["msp", p].status == "ok", (p, m["msp", p].detail)
    assert "AUROC" in m["msp", "tiny_fit"].detail
    assert m["msp", "determinism"].detail == "bit-identical"
    assert m["batchy", "batch_invariance"].status == "changed"
    assert m["batchy", "determinism"].status == "ok"
    assert m["unseeded", "determinism"].status == "changed"
    assert m["unseeded", "batch_invariance"].status == "ok"
    # NaN pixels go through the real extraction: MSP of NaN logits is NaN
    assert m["msp", "nan_inf_pixels"].status == "error"


# --------------------------------------------------------------------------- ease of use


def test_code_lines_skip_blanks_comments_and_docstrings() -> None:
    src = '"""Module doc\n\nmore."""\n\n# comment\nx = 1  # trailing\n\n\ndef f(a):\n' \
          '    """Doc."""\n    return (a +\n            1)\n'
    assert report_ease.code_lines(src) == 4  # x = 1, def, return (2 lines)


def test_workaround_counts() -> None:
    dets = ["a", "b", "c"]
    assert report_ease.workaround_counts(None, dets) == (None, [])
    assert report_ease.workaround_counts(["shim .cuda()"], dets) == (0, ["all: shim .cuda()"])
    n, items = report_ease.workaround_counts({"b": ["x", "y"]}, dets)
    assert n == 2 and items == ["b: x", "b: y"]


def test_ease_measures_pytorch_ood_by_code(tmp_path, monkeypatch) -> None:
    from adapters import pytorch_ood

    rec = report_ease.measure_library("pytorch_ood", {}, repeats=1, check_pypi=False)
    assert rec["installed"] and rec["version"] == "0.4.0"
    assert "torch" in rec["declared"].split(", ") and rec["n_declared"] >= 3
    assert "scipy" in rec["needed"] and rec["import_seconds"] > 0
    assert rec["detectors"] == len(pytorch_ood.available())
    src = Path(pytorch_ood.__file__).read_text()
    assert rec["adapter_loc"] == report_ease.code_lines(src)
    assert 0 < rec["adapter_loc"] < len(src.splitlines())
    assert rec["public_functions"] > 10 and 0 <= rec["docstring_share"] <= 1
    assert rec["ruff_per_1000_lines"] is not None and rec["source_lines"] > 1000
    assert rec["cpu_out_of_box"] == rec["detectors"]  # pytorch-ood declares no CPU workaround

    # a new adapter appears by itself, and is reported as not installed rather than guessed
    (tmp_path / "fake_new_adapter.py").write_text(
        "import numpy as np\n\n\ndef available():\n    return ['x']\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(registry.ADAPTER_MODULES, "newlib", "fake_new_adapter")
    frame = report_ease.write_ease(tmp_path, repeats=1, check_pypi=False,
                                   libraries=["newlib"])
    row = frame.set_index("library").loc["newlib"]
    assert not row["installed"] and row["adapter_loc"] == 3
    assert "not installed here" in (tmp_path / "ease_of_use.md").read_text()


def test_overall_mean_covers_near_and_far_only() -> None:
    """Covariate-shifted and synthetic sets get their own means, outside the headline ``all``."""
    from benchmark.report_sweep import wide_table

    sets = [("tin", "near", 0.8), ("mnist", "far", 0.9), ("blur", "covariate", 0.6),
            ("noise", "synthetic", 1.0)]
    rows = pd.DataFrame([{"label": "d", "library": "x", "detector": "d", "method": "m",
                          "ood_dataset": n, "ood_group": g, "status": "ok", "auroc": a}
                         for n, g, a in sets])
    t = wide_table(rows).loc["d"]
    assert t["all"] == pytest.approx(0.85)
    assert (t["near"], t["far"], t["covariate"], t["synthetic"]) == (0.8, 0.9, 0.6, 1.0)
    assert list(t.index[3:7]) == ["tin", "mnist", "blur", "noise"]  # near, far, covariate, ...
    only_shifts = wide_table(rows[rows.ood_group == "covariate"]).loc["d"]
    assert only_shifts["all"] == pytest.approx(0.6)  # no semantic set: all sets


def test_scrub_paths_makes_committed_text_portable(tmp_path) -> None:
    from benchmark.report import scrub_paths

    repo = Path(__file__).resolve().parents[1]
    (tmp_path / "r.md").write_text(f"{repo}/results/x {Path.home()}/.cache/y /tmp/pytest-1/z "
                                   "results/tmp/keep\n")
    scrub_paths(tmp_path)
    assert (tmp_path / "r.md").read_text() == "./results/x ~/.cache/y <tmp> results/tmp/keep\n"

"""ood-bench-report on a tiny real sweep: tables equal the runs' rows (CSV and rendered
Markdown, cell by cell), means, LaTeX, plots, timing arithmetic, and the study parts rendered
from their CSVs."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pandas as pd
import pytest

from benchmark.report.sweep import wide_table
from tests import markdown
from tests.commands import run_module
from tests.conftest import SWEEP_DETECTORS as DETECTORS


@pytest.fixture(scope="module")
def report(sweep, tmp_path_factory) -> Path:
    """The real console command (no ease/robustness: those have their own tests)."""
    out = tmp_path_factory.mktemp("report-out")
    proc = run_module("benchmark.report", [str(sweep), "--out", str(out)])
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


def test_sweep_md_shows_the_csv_cell_by_cell(report) -> None:
    """Each rendered cell sits under the header of its own set / mean (AUROC then FPR@95)."""
    table = pd.read_csv(report / "sweep.csv").set_index("label")
    auroc_md, fpr_md = markdown.tables((report / "sweep.md").read_text())
    for metric, rows in (("auroc", auroc_md), ("fpr95tpr", fpr_md)):
        assert sorted(r["detector"] for r in rows) == sorted(DETECTORS)
        for row in rows:
            for header, cell in row.items():
                if header in ("detector", "library"):
                    continue
                if header == "n":  # one run per detector here: no replicates
                    assert cell == "1"
                    continue
                column = header.split(" (")[0].removesuffix(" mean")
                r = table.loc[row["detector"]]
                text = f"{r[f'{metric}_{column}']:.4f}"
                if " mean" not in header:  # an OOD set: the run's bootstrap interval follows
                    lo, hi = r[f"{metric}_{column}_lo"], r[f"{metric}_{column}_hi"]
                    assert lo <= r[f"{metric}_{column}"] <= hi or metric == "fpr95tpr"
                    text += f" [{lo:.3f}, {hi:.3f}]"
                assert cell.replace("**", "") == text, (metric, row["detector"], header)
        headers = list(rows[0])
        assert headers.index("near mean") < headers.index("far mean") < headers.index("all mean")


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


def test_sweep_tex_shows_the_csv_cell_by_cell(report) -> None:
    """Each LaTeX cell is its CSV value in percent, under its own column (AUROC, then FPR@95)."""
    table = pd.read_csv(report / "sweep.csv").set_index("label")
    tex = (report / "sweep.tex").read_text()
    blocks = re.findall(r"\\toprule\n(.*?) \\\\\n\\midrule\n(.*?)\\bottomrule", tex, re.S)
    assert len(blocks) == 2
    for metric, (header, body) in zip(("auroc", "fpr95tpr"), blocks, strict=True):
        heads = [h.strip() for h in header.split("&")]
        columns = [h.replace("\\_", "_").split(" (")[0].removesuffix(" mean").lower()
                   for h in heads[2:]]
        assert columns[-3:] == ["near", "far", "all"]
        for line in body.strip().splitlines():
            cells = [c.strip() for c in line.removesuffix("\\\\").split("&")]
            label = cells[0].replace("\\_", "_")
            for column, cell in zip(columns, cells[2:], strict=True):
                value, _, interval = cell.partition(" {\\scriptsize ")
                value = float(re.sub(r"\\textbf\{(.*)\}", r"\1", value))
                if column not in ("near", "far", "all"):  # an OOD set: its interval follows
                    lo = 100 * table.loc[label, f"{metric}_{column}_lo"]
                    assert interval.startswith(f"[{lo:.1f}, "), (metric, label, column)
                assert value == pytest.approx(100 * table.loc[label, f"{metric}_{column}"],
                                              abs=0.005), (metric, label, column)


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


def test_roc_curves_in_the_plots_are_the_runs_curves() -> None:
    """The plotted curve (scikit-learn, on the saved scores) has the AUROC the run reported,
    ties and infinite scores included."""
    import numpy as np

    from benchmark.pipeline.metrics import compute_metrics
    from benchmark.report.plots import roc_points

    fpr, tpr = roc_points(np.array([0.0, 1.0]), np.array([1.0, 2.0]))
    assert fpr.tolist() == [0.0, 0.0, 0.5, 1.0] and tpr.tolist() == [0.0, 0.5, 1.0, 1.0]
    rng = np.random.default_rng(0)
    id_scores = np.round(rng.normal(0, 1, 300), 1)
    ood_scores = np.r_[np.round(rng.normal(1, 1, 200), 1), np.inf]
    id_scores[0] = -np.inf  # (tied infinities are the metrics' own open question)
    fpr, tpr = roc_points(id_scores, ood_scores)
    area = float(np.sum((fpr[1:] - fpr[:-1]) * (tpr[1:] + tpr[:-1]) / 2))
    assert area == pytest.approx(compute_metrics(id_scores, ood_scores)["auroc"], abs=1e-12)
    with pytest.raises(ValueError):
        roc_points(np.array([np.nan]), np.array([1.0]))


def test_overall_mean_covers_near_and_far_only() -> None:
    """Covariate-shifted and synthetic sets get their own means, outside the headline ``all``."""
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

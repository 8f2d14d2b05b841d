"""The real command on a small real subset: tables, manifest, caches, clear errors."""

from __future__ import annotations

import json
import time

import pandas as pd
import pytest

from benchmark.runner.tables import COLUMNS
from tests import markdown
from tests.commands import SMALL, ood_bench


@pytest.fixture(scope="module")
def first_run(root, tmp_path_factory):
    cache = tmp_path_factory.mktemp("e2e-cache")
    out = tmp_path_factory.mktemp("e2e-run")
    t0 = time.perf_counter()
    proc = ood_bench([*SMALL, f"hydra.run.dir={out}"], cache, root)
    return proc, out, cache, time.perf_counter() - t0


def test_default_run_writes_contract_tables(first_run) -> None:
    proc, out, _, _ = first_run
    assert proc.returncode == 0, proc.stderr[-3000:]
    frame = pd.read_csv(out / "metrics.csv", keep_default_na=False)
    assert list(frame.columns[: len(COLUMNS)]) == COLUMNS
    assert set(frame.ood_dataset) == {"fashionmnist", "notmnist", "cifar10"}
    assert set(frame.ood_group) == {"near", "far"}
    ok = frame[frame.status == "ok"]
    assert len(ok) == len(frame), frame[frame.status != "ok"][["detector", "error"]]
    for col in ["auroc", "aupr_in", "aupr_out", "fpr95tpr", "id_accuracy"]:
        values = ok[col].astype(float)
        assert values.between(0, 1).all(), col
    # a LeNet trained for one epoch on 4k images still separates MNIST from CIFAR-10
    msp = ok[(ok.detector == "pytorch_ood_msp") & (ok.ood_dataset == "cifar10")]
    assert float(msp.auroc.iloc[0]) > 0.9
    assert "higher = more OOD" in (out / "metrics.md").read_text()
    assert "tables:" in proc.stdout and "metrics.md" in proc.stdout
    assert set(frame.library) >= {"pytorch_ood", "inhouse"}


def test_metrics_md_shows_the_csv_cell_by_cell(first_run) -> None:
    """Every metric under its own header, for every row (AUPR-In and -Out differ here)."""
    _, out, _, _ = first_run
    frame = pd.read_csv(out / "metrics.csv", keep_default_na=False)
    (rows,) = markdown.tables((out / "metrics.md").read_text())
    assert len(rows) == len(frame)
    assert (frame.aupr_in.astype(float) != frame.aupr_out.astype(float)).any()
    for cells, (_, r) in zip(rows, frame.iterrows(), strict=True):
        assert (cells["detector"], cells["ood_dataset"], cells["ood_group"]) == (
            r.detector, r.ood_dataset, r.ood_group)
        for col in ("auroc", "fpr95tpr", "aupr_in", "aupr_out"):
            lo, hi = float(r[f"{col}_lo"]), float(r[f"{col}_hi"])
            assert lo <= float(r[col]) <= hi or col == "fpr95tpr", (r.detector, col)
            assert cells[col] == f"{float(r[col]):.4f} [{lo:.3f}, {hi:.3f}]", (
                r.detector, r.ood_dataset, col)
        assert cells["fit_seconds"] == f"{float(r.fit_seconds):.2f}"
        assert cells["status"] == r.status


def test_rows_report_the_false_alarm_rate_at_each_detectors_own_level(first_run) -> None:
    """A detector with its own decision rule (conformal p <= alpha) gets the realised ID
    false-alarm and OOD detection rates at decision_alpha; one without gets none."""
    _, out, _, _ = first_run
    frame = pd.read_csv(out / "metrics.csv")
    conformal = frame[frame.detector == "inhouse_stat_mean"]
    assert (conformal.alpha == 0.05).all()
    # the same ID test rows for every OOD set; calibrated: near alpha (a few hundred ID rows)
    assert conformal.fpr_at_alpha.nunique() == 1
    assert 0.0 <= conformal.fpr_at_alpha.iloc[0] <= 0.05 + 0.05
    assert (conformal.tpr_at_alpha > 0.5).all()
    for rate in ("fpr_at_alpha", "tpr_at_alpha"):  # exact binomial intervals around them
        assert (conformal[f"{rate}_lo"] <= conformal[rate]).all()
        assert (conformal[rate] <= conformal[f"{rate}_hi"]).all()
    assert frame[frame.library == "pytorch_ood"].fpr_at_alpha.isna().all()


def test_inhouse_analyses_are_written_next_to_the_tables(first_run) -> None:
    _, out, _, _ = first_run
    text = (out / "analysis_inhouse.md").read_text()
    assert "## inhouse_stat_mean" in text and "| 0.05 |" in text  # a section with its rows
    calib = pd.read_csv(out / "inhouse" / "inhouse_stat_mean" / "calibration.csv")
    assert calib.split.str.startswith("resplit").sum() >= 20 * 8  # >= 20 resplits x alphas
    # conformal p-values are calibrated: over random resplits the ID false-alarm rate is alpha
    resplits = calib[calib.method == "conformal (resplit)"].groupby("alpha").fpr.mean()
    for alpha in (0.05, 0.1):
        assert abs(resplits[alpha] - alpha) < 0.25 * alpha, resplits[alpha]
    run = calib[calib.method == "conformal (run split)"]
    assert set(run.verdict) <= {"valid", "conservative", "anti-conservative"} and len(run) == 8
    assert run.p_anti.between(0, 1).all() and (run.expected_fpr <= run.alpha + 1e-9).all()
    assert "resplits (code check)" in text and "Exchangeability of calibration" in text
    folder = out / "inhouse" / "inhouse_grouped"
    per_class = pd.read_csv(folder / "per_class_fpr.csv")
    assert set(per_class.calibration) == {"pooled", "per class"}
    assert per_class.predicted_class.nunique() == 10
    sizes = pd.read_csv(folder / "calibration_size.csv")
    assert sizes.n_calibration.min() == 100 and (sizes.law_q05 <= sizes.law_q95).all()
    mis = pd.read_csv(folder / "misclassification.csv").set_index("set")
    assert mis.loc["ID test", "MSP_misclassification_auroc"] > 0.7
    screen = pd.read_csv(folder / "screening.csv")
    assert set(screen.ood_share) == {0.01, 0.1, 0.5} and screen.power.between(0, 1).all()
    # most confident failures, one picture per OOD set
    assert (folder / "failures_fashionmnist.png").stat().st_size > 10_000
    assert "Splits: model:" in text
    layers = pd.read_csv(out / "inhouse" / "inhouse_stat_mean" / "layers_auroc.csv")
    assert {"conv1/mean", "conv2/mean", "fc1/mean"} <= set(layers.columns)
    assert (out / "inhouse" / "inhouse_stat_mean" / "calibration.png").stat().st_size > 10_000


def test_manifest_records_what_reproduces_the_run(first_run) -> None:
    _, out, _, _ = first_run
    m = json.loads((out / "manifest.json").read_text())
    assert len(m["backbone"]["sha256"]) == 64 and m["backbone"]["trained_this_run"]
    assert m["datasets"]["fit"]["n"] == 2000 and m["datasets"]["id_test"]["n"] == 600
    assert m["seeds"]["split"] == 0
    for pkg in ["python", "torch", "torchvision", "pytorch-ood", "hydra-core", "numpy"]:
        assert m["versions"][pkg], pkg
    assert "git_commit" in m and m["config"]["pair"]["name"] == "mnist"
    # what the bits depend on beyond the seeds: threads, CPU kernels, oneDNN
    assert m["compute"]["threads"] == m["config"]["compute"]["threads"] == 2
    assert m["compute"]["cpu_capability"] and "onednn_enabled" in m["compute"]
    training = m["backbone"]["training"]
    assert training["sha256"] == m["backbone"]["sha256"] and training["compute"]["threads"] == 2
    assert m["timings"]["bootstrap_seconds"] > 0


def test_a_rerun_in_a_fresh_cache_gives_identical_metrics(first_run, root, tmp_path) -> None:
    """Same command, fresh cache: the backbone is retrained and every number comes back bit
    for bit (timing columns aside)."""
    _, out1, _, _ = first_run
    proc = ood_bench([*SMALL, f"hydra.run.dir={tmp_path}"], tmp_path / "cache", root)
    assert proc.returncode == 0, proc.stderr[-3000:]
    m1 = json.loads((out1 / "manifest.json").read_text())
    m2 = json.loads((tmp_path / "manifest.json").read_text())
    assert m2["backbone"]["trained_this_run"]
    assert m1["backbone"]["sha256"] == m2["backbone"]["sha256"]
    timing = [c for c in pd.read_csv(out1 / "metrics.csv").columns
              if c.endswith(("seconds", "_mb")) or c == "from_cache"]
    a = pd.read_csv(out1 / "metrics.csv").drop(columns=timing)
    b = pd.read_csv(tmp_path / "metrics.csv").drop(columns=timing)
    pd.testing.assert_frame_equal(a, b, check_exact=True)


def test_second_run_reuses_every_cache(first_run, root, tmp_path) -> None:
    _, out1, cache, first_seconds = first_run
    t0 = time.perf_counter()
    proc = ood_bench([*SMALL, f"hydra.run.dir={tmp_path}"], cache, root)
    seconds = time.perf_counter() - t0
    assert proc.returncode == 0, proc.stderr[-3000:]
    m = json.loads((tmp_path / "manifest.json").read_text())
    assert not m["backbone"]["trained_this_run"]
    assert all(r["from_cache"] for r in m["representations"].values())
    frame = pd.read_csv(tmp_path / "metrics.csv")
    ok = frame[frame.status == "ok"]
    assert ok.from_cache.all()
    # which split does what, even when the grouped detector's scores came from the cache
    roles = m["detector_fits"]["inhouse_grouped"]["split_roles"]
    assert roles == json.loads((out1 / "manifest.json").read_text())["detector_fits"][
        "inhouse_grouped"]["split_roles"] and "calibration-split" in roles["reference"]
    before = pd.read_csv(out1 / "metrics.csv")
    assert before.auroc.fillna(-1).tolist() == frame.auroc.fillna(-1).tolist()
    assert seconds < first_seconds


def test_failing_detector_is_a_row_not_a_crash(root, tmp_path) -> None:
    cache = tmp_path / "cache"
    proc = ood_bench([*SMALL, "detector=pytorch_ood/msp",
                      "+detectors.broken={library: pytorch_ood, name: NoSuchDetector, params: {}}",
                      f"hydra.run.dir={tmp_path / 'run'}"], cache, root)
    assert proc.returncode == 0, proc.stderr[-3000:]
    frame = pd.read_csv(tmp_path / "run" / "metrics.csv")
    broken = frame[frame.detector == "broken"]
    assert (broken.status == "failed").all() and broken.error.str.contains("NoSuchDetector").all()
    assert (frame[frame.detector == "pytorch_ood_msp"].status == "ok").all()


def test_wrong_group_name_lists_options_without_traceback(tmp_path) -> None:
    proc = ood_bench(["pair=nope"], tmp_path)
    assert proc.returncode == 2
    assert "Valid pair options: " in proc.stderr and "mnist" in proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout


def test_missing_dataset_says_where_to_put_it(tmp_path) -> None:
    """A fresh machine (no mirror): the message lists every root it tried, absolute."""
    (tmp_path / "empty-root").mkdir()
    proc = ood_bench([*SMALL, "data.mirrors=[]", f"hydra.run.dir={tmp_path / 'run'}"],
                     tmp_path / "cache", root=tmp_path / "empty-root")
    assert proc.returncode == 2
    assert "MNIST/raw" in proc.stderr and "data=download" in proc.stderr
    assert f"under {tmp_path / 'empty-root'}, {tmp_path / 'cache' / 'datasets'}" in proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout

"""Analyses written next to the metric tables when a run includes an in-house detector.

- calibration: empirical ID false-alarm rate vs alpha (0.001 ... 0.2) with Clopper-Pearson 95 %
  bands, on the run's own calibration/test split and over random resplits of calibration + ID
  test (exchangeable by construction), beside the invalid chi-square reading of Fisher's T;
- per layer: AUROC of each (layer, reduction) test's -log p alone per OOD set, and the mean
  share of the statistic on ID vs each OOD set;
- TPR (OOD flagged) at alpha = 0.01, 0.05, 0.1 per OOD set.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from tqdm.auto import tqdm

from adapters.inhouse import InhouseDetector, extra_arrays
from benchmark.inhouse import NeuralFP, StatisticalDetector
from benchmark.inhouse.conformal import ConformalCalibrator
from benchmark.inhouse.diagnostics import DEFAULT_ALPHAS, fpr_curve
from benchmark.pipeline.metrics import compute_metrics
from benchmark.render import frame_markdown
from benchmark.representations import Representations
from benchmark.results import ID_TEST, OOD_PREFIX

log = logging.getLogger(__name__)

ALPHAS = DEFAULT_ALPHAS
DECISION_ALPHAS = (0.01, 0.05, 0.1)
TITLE = ("# In-house detectors: calibration, per-layer evidence, decisions\n\n"
         "p-values are conformal: flag OOD iff p <= alpha; on ID data exchangeable with the "
         "calibration split the false-alarm rate is at most alpha (marginally).\n\n")


def _fpr_rows(pvalues: np.ndarray, method: str, split: str) -> list[dict[str, Any]]:
    c = fpr_curve(pvalues, ALPHAS)
    return [{"method": method, "split": split, "alpha": float(a), "fpr": float(f), "n": int(n),
             "cp_low": float(lo), "cp_high": float(hi), "alpha_in_band": bool(lo <= a <= hi),
             "valid": bool(f <= hi and a >= lo)}
            for a, f, n, lo, hi in zip(c["alpha"], c["fpr"], c["n"], c["lower"], c["upper"],
                                       strict=True)]


def _resplit_pvalues(inner: Any, pooled: Representations, n_cal: int, rng: np.random.Generator,
                     stat_all: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """p-values of a random test part after calibrating on a random part of ``pooled``."""
    perm = rng.permutation(len(pooled))
    cal, test = np.sort(perm[:n_cal]), np.sort(perm[n_cal:])
    preds = pooled.predictions
    if isinstance(inner, StatisticalDetector) and stat_all is not None:
        calib = ConformalCalibrator(inner.calibrate_per_class, inner.min_class_calibration)
        calib.fit(stat_all[cal], preds[cal])
        return calib.pvalues(stat_all[test], preds[test]), test
    det = copy.deepcopy(inner)
    det.calibrate(pooled.subset(cal).layer_stats)
    return det.pvalues(pooled.subset(test).layer_stats), test


def calibration_analysis(adapter: Any, reps: dict[str, Representations], n_resplits: int,
                         seed: int) -> pd.DataFrame:
    inner = adapter.detector
    id_test = reps[ID_TEST]
    rows = _fpr_rows(adapter.pvalues(id_test), "conformal (run split)", ID_TEST)
    if isinstance(inner, StatisticalDetector):
        naive = inner.naive_pvalues(id_test.layer_stats, id_test.predictions, extra_arrays(id_test))
        rows += _fpr_rows(naive, f"naive {inner.across} tail (invalid)", ID_TEST)
    pooled = reps["calibration"].concat(id_test, name="calibration+test")
    stat_all = (inner.statistic(pooled.layer_stats, pooled.predictions, extra_arrays(pooled))
                if isinstance(inner, StatisticalDetector) else None)
    rng = np.random.default_rng(seed)
    for r in tqdm(range(n_resplits), desc="calibration resplits", leave=False):
        p, _ = _resplit_pvalues(inner, pooled, len(reps["calibration"]), rng, stat_all)
        for row in _fpr_rows(p, "conformal (resplit)", f"resplit {r}"):
            rows.append(row)
    return pd.DataFrame(rows)


def layer_analysis(adapter: Any, reps: dict[str, Representations]) -> tuple[pd.DataFrame,
                                                                           pd.DataFrame]:
    inner = adapter.detector
    oods = {k.removeprefix(OOD_PREFIX): r for k, r in reps.items() if k.startswith(OOD_PREFIX)}
    id_test = reps[ID_TEST]

    def logp(r: Representations) -> np.ndarray:
        return inner.test_log_pvalues(r.layer_stats, r.predictions, extra_arrays(r))

    id_logp = logp(id_test)
    auroc_rows, share_rows = [], []
    id_expl = adapter.explain(id_test)
    share_rows.append({"set": "ID (test)", **{t: float(id_expl.shares[:, j].mean())
                                              for j, t in enumerate(id_expl.tests)}})
    for name, r in oods.items():
        ood_logp = logp(r)
        row = {"ood_dataset": name}
        for j, test in enumerate(inner.test_names):
            row[test] = compute_metrics(-id_logp[:, j], -ood_logp[:, j])["auroc"]
        auroc_rows.append(row)
        expl = adapter.explain(r)
        share_rows.append({"set": name, **{t: float(expl.shares[:, j].mean())
                                           for j, t in enumerate(expl.tests)}})
    return pd.DataFrame(auroc_rows), pd.DataFrame(share_rows)


def tpr_at_alpha(adapter: Any, reps: dict[str, Representations]) -> pd.DataFrame:
    rows = []
    id_p = adapter.pvalues(reps[ID_TEST])
    for key, r in reps.items():
        if not key.startswith(OOD_PREFIX):
            continue
        p = adapter.pvalues(r)
        for a in DECISION_ALPHAS:
            rows.append({"ood_dataset": key.removeprefix(OOD_PREFIX), "alpha": a,
                         "tpr": float((p <= a).mean()), "id_fpr": float((id_p <= a).mean())})
    return pd.DataFrame(rows)


def _plot_calibration(frame: pd.DataFrame, title: str, path: Path) -> None:
    fig = Figure(figsize=(5.5, 4.5))
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    a = np.array(ALPHAS)
    resplit = frame[frame.method == "conformal (resplit)"]
    for _, grp in resplit.groupby("split"):
        ax.plot(grp.alpha, grp.fpr, color="tab:blue", alpha=0.15, lw=0.8)
    mean = resplit.groupby("alpha").fpr.mean()
    ax.plot(mean.index, mean.values, color="tab:blue", lw=2,
            label=f"conformal, mean of {resplit.split.nunique()} resplits")
    run = frame[frame.method == "conformal (run split)"]
    ax.errorbar(run.alpha, run.fpr, yerr=[run.fpr - run.cp_low, run.cp_high - run.fpr],
                fmt="o", color="tab:green", ms=4, capsize=2,
                label="conformal, run split (Clopper-Pearson 95 %)")
    naive = frame[frame.method.str.startswith("naive")]
    if len(naive):
        ax.plot(naive.alpha, naive.fpr, "s--", color="tab:red", ms=4,
                label=naive.method.iloc[0])
    ax.plot(a, a, "k:", lw=1, label="y = alpha")
    ax.set(xscale="log", yscale="log", xlabel="alpha", ylabel="empirical ID false-alarm rate",
           title=title)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def _plot_layers(auroc: pd.DataFrame, shares: pd.DataFrame, title: str, path: Path) -> None:
    tests = [c for c in auroc.columns if c != "ood_dataset"]
    fig = Figure(figsize=(11, 4))
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 2)
    x = np.arange(len(tests))
    width = 0.8 / max(1, len(auroc))
    for i, (_, row) in enumerate(auroc.iterrows()):
        axes[0].bar(x + i * width, [row[t] for t in tests], width, label=row.ood_dataset)
    axes[0].set(xticks=x + width * (len(auroc) - 1) / 2, ylabel="AUROC of -log p (test alone)",
                ylim=(0.5, 1.0), title="per-layer AUROC")
    axes[0].set_xticklabels(tests, rotation=60, ha="right", fontsize=7)
    axes[0].legend(fontsize=7, loc="lower right")
    width = 0.8 / max(1, len(shares))
    for i, (_, row) in enumerate(shares.iterrows()):
        axes[1].bar(x + i * width, [row[t] for t in tests], width, label=row["set"])
    axes[1].set(xticks=x + width * (len(shares) - 1) / 2, ylabel="mean share of the statistic",
                title="where the evidence comes from")
    axes[1].set_xticklabels(tests, rotation=60, ha="right", fontsize=7)
    axes[1].legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def analyse(det_id: str, adapter: InhouseDetector, reps: dict[str, Representations],
            folder: Path, link: str, settings: Mapping[str, Any]) -> str:
    """Every analysis of one fitted in-house detector into ``folder``; a Markdown section.

    ``settings``: ``resplits`` (random calibration/test resplits, default 20) and ``seed``.
    """
    n_resplits, seed = int(settings.get("resplits", 20)), int(settings.get("seed", 0))
    calib = calibration_analysis(adapter, reps, n_resplits, seed)
    calib.to_csv(folder / "calibration.csv", index=False)
    _plot_calibration(calib, det_id, folder / "calibration.png")
    tpr = tpr_at_alpha(adapter, reps)
    tpr.to_csv(folder / "tpr_at_alpha.csv", index=False)
    lines = [f"## {det_id}", "", f"![calibration]({link}/calibration.png)", "",
             "Empirical ID false-alarm rate at the decision levels (run split: calibration on "
             "held-out training images, test on the ID test set; resplits: calibration and ID "
             "test pooled and split at random):", "",
             "| alpha | run split FPR [CP 95 %] | alpha in band | resplits mean (min-max) | "
             "naive chi-square FPR |", "|---|---|---|---|---|"]
    run = calib[calib.method == "conformal (run split)"].set_index("alpha")
    res = calib[calib.method == "conformal (resplit)"].groupby("alpha").fpr
    naive = calib[calib.method.str.startswith("naive")].set_index("alpha")
    for a in DECISION_ALPHAS:
        r = run.loc[a]
        nv = f"{naive.loc[a].fpr:.4f}" if a in naive.index else "n/a"
        lines.append(f"| {a} | {r.fpr:.4f} [{r.cp_low:.4f}, {r.cp_high:.4f}] | "
                     f"{'yes' if r.alpha_in_band else 'NO'} | {res.mean()[a]:.4f} "
                     f"({res.min()[a]:.4f}-{res.max()[a]:.4f}) | {nv} |")
    lines += ["", "TPR (OOD flagged) at alpha:", "",
              frame_markdown(tpr.pivot_table(index="ood_dataset", columns="alpha",
                                                values="tpr")), ""]
    if isinstance(adapter.detector, StatisticalDetector):
        auroc, shares = layer_analysis(adapter, reps)
        auroc.to_csv(folder / "layers_auroc.csv", index=False)
        shares.to_csv(folder / "layers_share.csv", index=False)
        _plot_layers(auroc, shares, det_id, folder / "layers.png")
        lines += ["Per-layer AUROC of each test's -log p alone:", "",
                  frame_markdown(auroc.set_index("ood_dataset")), "",
                  f"![layers]({link}/layers.png)", ""]
    elif isinstance(adapter.detector, NeuralFP):
        lines += ["(NeuralFP: per-layer bands; no per-test AUROC breakdown.)", ""]
    return "\n".join(lines)

"""Analyses written next to the metric tables when a run includes an in-house detector.

Per detector, into ``inhouse/<detector>/`` (CSV + PNG) and one section of
``analysis_inhouse.md``:

1. validity (:mod:`.validity`): the run split's FPR at each alpha tested against the
   beta-binomial law (valid / conservative / anti-conservative, with p-values), 20 fresh
   half-size calibration draws, resplits as a code check, the calibration-vs-ID-test
   two-sample test; per predicted class with pooled and class-conditional calibration; FPR
   spread against the law for calibration sizes 100 ... 5000 (plot);
2. evidence (:mod:`.evidence`): each test's (group's) AUROC alone and its share of the
   statistic; TPR at alpha;
3. failures (:mod:`.failures`): galleries of the most confident failures per OOD set; shift vs
   failure (misclassification AUROC and AURC beside MSP's on ID test and covariate shifts);
4. batch screening (:mod:`.batch`): Benjamini-Hochberg FDR and power on ID/OOD mixtures.

(The ablation table over design choices is the ``inhouse_ablation`` paper table.)
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from adapters.inhouse import InhouseDetector
from benchmark.render import frame_markdown
from benchmark.representations import Representations

from . import batch, evidence, failures, validity
from .common import DECISION_ALPHAS, has_statistic, inner

log = logging.getLogger(__name__)

ALPHAS = validity.ALPHAS
TITLE = ("# In-house detectors: validity, evidence, failures, screening\n\n"
         "p-values are conformal: flag OOD iff p <= alpha; on ID data exchangeable with the "
         "calibration split the false-alarm rate is at most alpha (marginally). Scores are "
         "-log p (higher = more OOD; OOD is the positive class).\n\n")


def _plot_calibration(frame: pd.DataFrame, title: str, path: Path) -> None:
    fig = Figure(figsize=(5.5, 4.5))
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    a = np.array(ALPHAS)
    resplit = frame[frame.method == "conformal (resplit)"]
    for _, grp in resplit.groupby("split"):
        ax.plot(grp.alpha, grp.fpr, color="tab:blue", alpha=0.15, lw=0.8)
    if len(resplit):
        mean = resplit.groupby("alpha").fpr.mean()
        ax.plot(mean.index, mean.values, color="tab:blue", lw=2,
                label=f"resplits (code check), mean of {resplit.split.nunique()}")
    run = frame[frame.split == "id_test"].iloc[: len(ALPHAS)]
    ax.errorbar(run.alpha, run.fpr, yerr=[run.fpr - run.cp_low, run.cp_high - run.fpr],
                fmt="o", color="tab:green", ms=4, capsize=2,
                label=f"{run.method.iloc[0]} (Clopper-Pearson 95 %)")
    naive = frame[frame.method.str.startswith("naive")]
    if len(naive):
        ax.plot(naive.alpha, naive.fpr, "s--", color="tab:red", ms=4, label=naive.method.iloc[0])
    ax.plot(a, a, "k:", lw=1, label="y = alpha")
    ax.set(xscale="log", yscale="log", xlabel="alpha", ylabel="empirical ID false-alarm rate",
           title=title)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def _plot_sizes(frame: pd.DataFrame, title: str, path: Path) -> None:
    fig = Figure(figsize=(4 * len(DECISION_ALPHAS), 3.8))
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(DECISION_ALPHAS), squeeze=False)[0]
    for ax, a in zip(axes, DECISION_ALPHAS, strict=True):
        part = frame[frame.alpha == a]
        law = part.groupby("n_calibration")[["law_mean", "law_q05", "law_q95"]].first()
        ax.fill_between(law.index, law.law_q05, law.law_q95, color="tab:orange", alpha=0.25,
                        label="beta-binomial law, 5-95 %")
        ax.plot(law.index, law.law_mean, color="tab:orange", lw=1.5, label="law mean")
        ax.scatter(part.n_calibration * np.exp(np.random.default_rng(0).normal(0, 0.04,
                                                                                len(part))),
                   part.fpr, s=5, color="tab:blue", alpha=0.5, label="resplits")
        ax.axhline(a, color="k", ls=":", lw=1)
        ax.set(xscale="log", xlabel="calibration size", ylabel="ID false-alarm rate",
               title=f"alpha = {a}")
        ax.legend(fontsize=6)
    fig.suptitle(f"{title}: one calibration draw moves the realised rate", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def _validity_lines(calib: pd.DataFrame, exchange: dict[str, Any] | None) -> list[str]:
    run = calib[calib.split == "id_test"].drop_duplicates("alpha").set_index("alpha")
    fresh = calib[calib.method == "conformal (fresh calibration draw)"]
    res = calib[calib.method == "conformal (resplit)"].groupby("alpha").fpr
    naive = calib[calib.method.str.startswith("naive")].set_index("alpha")
    lines = ["| alpha | run split FPR [CP 95 %] | expected (law) | verdict (one-sided p) | "
             f"{len(fresh.split.unique())} fresh half-size draws: mean FPR, anti-conservative | "
             "resplits (code check) mean (min-max) | naive FPR |", "|---|---|---|---|---|---|---|"]
    for a in DECISION_ALPHAS:
        r = run.loc[a]
        p = r.p_anti if r.verdict != "conservative" else r.p_conservative
        f = fresh[fresh.alpha == a]
        fresh_txt = (f"{f.fpr.mean():.4f}, {int((f.verdict == 'anti-conservative').sum())} of "
                     f"{len(f)}" if len(f) else "n/a")
        res_txt = (f"{res.mean()[a]:.4f} ({res.min()[a]:.4f}-{res.max()[a]:.4f})"
                   if a in res.mean().index else "n/a")
        nv = f"{naive.loc[a].fpr:.4f}" if a in naive.index else "n/a"
        lines.append(f"| {a} | {r.fpr:.4f} [{r.cp_low:.4f}, {r.cp_high:.4f}] | "
                     f"{r.expected_fpr:.4f} | {r.verdict} (p {p:.3f}) | {fresh_txt} | "
                     f"{res_txt} | {nv} |")
    lines.append("")
    lines.append("The verdict tests the run's false-alarm count against the law one calibration "
                 "draw gives (beta-binomial per calibration group; p < 0.05 one-sided). Resplits "
                 "pool calibration and ID test and split them at random, which makes them "
                 "exchangeable by construction: they check the code, not the data.")
    if exchange is not None:
        lines.append(f"Exchangeability of calibration and ID test statistics (the question "
                     f"validity rests on): KS p = {exchange['ks_p']:.3g}, one-sided "
                     f"Mann-Whitney p (test larger) = {exchange['mwu_greater_p']:.3g}, "
                     f"P(T_test > T_cal) = {exchange['p_test_above_cal']:.4f} (0.5 when "
                     "exchangeable).")
    return lines + [""]


def _per_class_lines(frame: pd.DataFrame) -> list[str]:
    part = frame[frame.alpha == 0.05]
    wide = part.pivot_table(index="predicted_class", columns="calibration", values="fpr")
    n = part.groupby("predicted_class").n_test.first()
    lo = part.pivot_table(index="predicted_class", columns="calibration", values="cp_low")
    hi = part.pivot_table(index="predicted_class", columns="calibration", values="cp_high")
    lines = ["FPR at alpha = 0.05 per predicted class (CP 95 %): pooled vs class-conditional "
             "calibration (classes with too few calibration inputs calibrated together):", "",
             "| predicted class | n test | pooled | per class |", "|---|---|---|---|"]
    for cls in wide.index:
        cells = [f"{wide.loc[cls, c]:.4f} [{lo.loc[cls, c]:.4f}, {hi.loc[cls, c]:.4f}]"
                 for c in ("pooled", "per class")]
        lines.append(f"| {cls} | {n[cls]} | {cells[0]} | {cells[1]} |")
    return lines + [""]


def analyse(det_id: str, adapter: InhouseDetector, reps: dict[str, Representations],
            folder: Path, link: str, settings: Mapping[str, Any]) -> str:
    """Every analysis of one fitted in-house detector into ``folder``; a Markdown section.

    ``settings``: ``resplits`` (random calibration/test resplits, default 20) and ``seed``.
    """
    n_resplits, seed = int(settings.get("resplits", 20)), int(settings.get("seed", 0))
    lines = [f"## {det_id}", ""]
    roles = getattr(inner(adapter), "split_roles", None)
    if callable(roles):
        lines += ["Splits: " + "; ".join(f"{k}: {v}" for k, v in roles().items()) + ".", ""]
    calib, exchange = validity.calibration_analysis(adapter, reps, n_resplits, seed)
    calib.to_csv(folder / "calibration.csv", index=False)
    _plot_calibration(calib, det_id, folder / "calibration.png")
    lines += [f"![calibration]({link}/calibration.png)", "", "### Validity", "",
              *_validity_lines(calib, exchange)]
    if has_statistic(adapter):
        per_class = validity.per_class_analysis(adapter, reps)
        per_class.to_csv(folder / "per_class_fpr.csv", index=False)
        sizes = validity.size_analysis(adapter, reps, seed)
        sizes.to_csv(folder / "calibration_size.csv", index=False)
        if len(sizes):
            _plot_sizes(sizes, det_id, folder / "calibration_size.png")
            lines += [f"![calibration size]({link}/calibration_size.png)", ""]
        lines += _per_class_lines(per_class)
    tpr = evidence.tpr_at_alpha(adapter, reps)
    tpr.to_csv(folder / "tpr_at_alpha.csv", index=False)
    lines += ["### Evidence", "", "TPR (OOD flagged) at alpha:", "",
              frame_markdown(tpr.pivot_table(index="ood_dataset", columns="alpha",
                                             values="tpr")), ""]
    if hasattr(inner(adapter), "test_log_pvalues") and hasattr(adapter, "explain"):
        auroc, shares = evidence.layer_analysis(adapter, reps)
        auroc.to_csv(folder / "layers_auroc.csv", index=False)
        shares.to_csv(folder / "layers_share.csv", index=False)
        evidence.plot_layers(auroc, shares, det_id, folder / "layers.png")
        lines += ["AUROC of each test's (group's) -log p alone:", "",
                  frame_markdown(auroc.set_index("ood_dataset")), "",
                  f"![layers]({link}/layers.png)", ""]
    lines += ["### Failures", ""]
    for name in failures.galleries(adapter, reps, folder):
        lines += [f"![{name}]({link}/{name})", ""]
    mis = failures.misclassification(adapter, reps)
    mis.to_csv(folder / "misclassification.csv", index=False)
    lines += ["Shift vs failure: does the detector flag what the classifier gets wrong? "
              "(misclassification AUROC: the score predicting a wrong prediction; AURC: area "
              "under the risk-coverage curve, lower = better; MSP beside):", "",
              frame_markdown(mis.set_index("set")), ""]
    screen = batch.screening(adapter, reps, seed)
    screen.to_csv(folder / "screening.csv", index=False)
    batch.plot(screen, det_id, folder / "screening.png")
    at_q = screen[screen.q == 0.1].assign(
        fdr=lambda f: [f"{m:.4f} ± {sd / np.sqrt(batch.DRAWS):.4f}"
                       for m, sd in zip(f.fdr, f.fdr_sd, strict=True)])
    lines += ["### Batch screening", "",
              f"Benjamini-Hochberg over batches of {batch.BATCH} at q = 0.1: realised FDR (mean "
              f"± its standard error over {batch.DRAWS} draws) and power. A conformal p-value "
              "is never below 1 / (n_cal + 1), so with few OOD inputs in a batch BH may flag "
              "none (it needs p <= q k / m).", "",
              frame_markdown(at_q.set_index(["ood_dataset", "ood_share"])[["fdr", "power"]]),
              "", f"![screening]({link}/screening.png)", ""]
    return "\n".join(lines)

"""Plots (PNG, matplotlib's Agg canvas): ROC per OOD set, ID-vs-OOD score histograms, AUROC bars.

Scores come from each run's ``scores/<detector>.npz`` (read through :mod:`benchmark.results`);
AUROC values from the metric rows. Nothing is recomputed from a model.
"""

from __future__ import annotations

import re
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from sklearn.metrics import roc_curve
from tqdm.auto import tqdm

from benchmark.report.sweep import ood_order, wide_table
from benchmark.results import ID_TEST, OOD_PREFIX, Collection

LIBRARY_COLOURS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2",
                   "#7f7f7f"]
LINESTYLES = ["-", "--", ":", "-."]


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", str(text)).strip("_")[:120] or "x"


def library_colours(libraries: list[str]) -> dict[str, str]:
    return {lib: LIBRARY_COLOURS[i % len(LIBRARY_COLOURS)]
            for i, lib in enumerate(sorted(set(libraries)))}


def load_scores(coll: Collection) -> dict[str, dict[str, np.ndarray]]:
    """``{label: {"id_test": ..., "<ood name>": ...}}`` for every detector that saved scores."""
    out: dict[str, dict[str, np.ndarray]] = {}
    for (label, det, rel), _ in coll.rows.groupby(["label", "detector", "run"], sort=False):
        scores = coll.run(rel).scores(det)
        if scores:
            out[label] = {k.removeprefix(OOD_PREFIX): v for k, v in scores.items()}
    return out


def roc_points(id_scores: np.ndarray, ood_scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(FPR, TPR) at every distinct score, OOD positive (the curve behind the run's AUROC)."""
    if np.isnan(id_scores).any() or np.isnan(ood_scores).any() or not (
            len(id_scores) and len(ood_scores)):
        raise ValueError("no ROC curve for empty or NaN scores")
    scores = np.r_[id_scores, ood_scores]
    finite = scores[np.isfinite(scores)]
    if len(finite) < len(scores):  # same order, finite values (sklearn refuses infinities)
        lo, hi = (finite.min() - 1, finite.max() + 1) if len(finite) else (-1.0, 1.0)
        scores = np.where(scores == np.inf, hi, np.where(scores == -np.inf, lo, scores))
    is_ood = np.r_[np.zeros(len(id_scores)), np.ones(len(ood_scores))]
    fpr, tpr, _ = roc_curve(is_ood, scores, drop_intermediate=False)
    return fpr, tpr


def _figure(width: float, height: float, ncols: int = 1) -> tuple[Figure, object]:
    """A figure on the Agg canvas (no pyplot, no global backend switch)."""
    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    return fig, fig.subplots(1, ncols)


def _save(fig: Figure, path: Path) -> Path:
    fig.savefig(path, dpi=110, bbox_inches="tight")
    return path


def roc_plot(scores: dict[str, dict[str, np.ndarray]], aurocs: pd.DataFrame, ood: str,
             group: str, libs: dict[str, str], colours: dict[str, str], title: str,
             path: Path, zoom_fpr: float = 0.2) -> Path | None:
    """Full ROC (left) and its low-FPR corner (right); one colour per detector, one line
    style per library."""
    fig, (ax, zoom) = _figure(12, 5.6, ncols=2)
    lib_style = {lib: LINESTYLES[i % len(LINESTYLES)] for i, lib in enumerate(colours)}
    cmap = matplotlib.colormaps["tab20"]
    curves = []
    for label in (lbl for lbl in aurocs.index if lbl in scores):
        s = scores[label]
        if ood not in s or ID_TEST not in s or pd.isna(aurocs.loc[label, ood]):
            continue
        try:
            curves.append((label, *roc_points(s[ID_TEST], s[ood])))
        except ValueError:
            continue
    if not curves:
        return None
    low = 1.0
    for i, (label, fpr, tpr) in enumerate(curves):
        kw = {"color": cmap(i % 20), "linestyle": lib_style[libs[label]], "lw": 1.4,
              "alpha": 0.9}
        ax.plot(fpr, tpr, label=f"{label} ({aurocs.loc[label, ood]:.3f})", **kw)
        zoom.plot(fpr, tpr, **kw)
        low = min(low, float(np.interp(zoom_fpr, fpr, tpr)))
    ax.plot([0, 1], [0, 1], color="grey", lw=0.8, ls=":")
    ax.set(xlabel="FPR (ID flagged as OOD)", ylabel="TPR (OOD detected)", xlim=(0, 1),
           ylim=(0, 1.01), title=f"ROC, {title} vs {ood} ({group})")
    zoom.set(xlabel="FPR", xlim=(0, zoom_fpr), ylim=(max(0.0, low - 0.05), 1.005),
             title=f"low-FPR corner (FPR <= {zoom_fpr:g})")
    zoom.axvline(0.05, color="grey", lw=0.6, ls=":")
    styles = ", ".join(f"{lib}: '{st}'" for lib, st in lib_style.items())
    zoom.legend(*ax.get_legend_handles_labels(), fontsize=7, loc="center left",
                bbox_to_anchor=(1.02, 0.5), title=f"detector (AUROC); line {styles}",
                title_fontsize=7)
    return _save(fig, path)


def _bins(arrays: list[np.ndarray], n: int = 60) -> np.ndarray:
    finite = np.concatenate([a[np.isfinite(a)] for a in arrays])
    lo, hi = np.percentile(finite, [0.5, 99.5]) if len(finite) else (0.0, 1.0)
    if not hi > lo:
        lo, hi = lo - 0.5, hi + 0.5
    return np.linspace(lo, hi, n + 1)


def histogram_plot(label: str, s: dict[str, np.ndarray], groups: dict[str, str], title: str,
                   path: Path) -> Path | None:
    if ID_TEST not in s:
        return None
    names = [n for n in groups if n in s]
    arrays = [s[ID_TEST]] + [s[n] for n in names]
    if not any(np.isfinite(a).any() for a in arrays):
        return None
    bins = _bins(arrays)
    fig, ax = _figure(7, 4.2)
    ax.hist(np.clip(s[ID_TEST], bins[0], bins[-1]), bins=bins, density=True, alpha=0.45,
            color="black", label=f"ID test (n={len(s[ID_TEST])})")
    cmap = matplotlib.colormaps["tab10"]
    for i, n in enumerate(names):
        ax.hist(np.clip(s[n], bins[0], bins[-1]), bins=bins, density=True, histtype="step",
                lw=1.6, color=cmap(i), label=f"{n} ({groups[n]}, n={len(s[n])})")
    ax.set(xlabel="score (higher = more OOD; 0.5-99.5 % range, tails clipped)",
           ylabel="density", title=f"{label}: ID vs OOD scores ({title})")
    ax.legend(fontsize=8)
    return _save(fig, path)


def auroc_bar_plot(table: pd.DataFrame, colours: dict[str, str], title: str,
                   path: Path) -> Path | None:
    t = table.dropna(subset=["all"]).sort_values("all")
    if t.empty:
        return None
    fig, ax = _figure(8, 0.32 * len(t) + 1.6)
    y = np.arange(len(t))
    ax.barh(y, t["all"], color=[colours[lib] for lib in t["library"]], alpha=0.85)
    for g, marker in (("near", "o"), ("far", "s")):
        if g in t and t[g].notna().any():
            ax.scatter(t[g], y, marker=marker, color="black", s=14, zorder=3,
                       label=f"{g}-OOD mean")
    ax.set_yticks(y, t.index, fontsize=8)
    lo = max(0.0, float(np.nanmin(t[["all"] + [g for g in ("near", "far") if g in t]].values))
             - 0.05)
    ax.set_xlim(lo, 1.0)
    ax.set(xlabel="AUROC (mean over OOD sets; higher = better)", title=f"AUROC, {title}")
    present = [lib for lib in colours if lib in set(t["library"])]
    handles = [Rectangle((0, 0), 1, 1, color=colours[lib]) for lib in present]
    marks, mlabels = ax.get_legend_handles_labels()
    ax.legend(handles + marks, present + mlabels, fontsize=8, loc="lower right")
    return _save(fig, path)


def write_plots(coll: Collection, out: Path) -> list[Path]:
    """Every plot for every (ID dataset, backbone) setting; returns the files written."""
    folder = out / "plots"
    folder.mkdir(parents=True, exist_ok=True)
    scores = load_scores(coll)
    rows = coll.rows
    libs = dict(zip(rows["label"], rows["library"], strict=False))
    colours = library_colours(list(rows["library"].astype(str)))
    settings = coll.groups()
    written: list[Path] = []
    for id_ds, bb in settings:
        sub = rows[(rows["id_dataset"] == id_ds) & (rows["backbone"] == bb)]
        title = f"ID {id_ds}, {bb}"
        tag = "" if len(settings) == 1 else f"{slug(id_ds)}_{slug(bb)}_"
        groups = dict(ood_order(sub))
        aurocs = wide_table(sub, "auroc")
        jobs = [("bar", None)] + [("roc", n) for n in groups] + [
            ("hist", lbl) for lbl in aurocs.index if lbl in scores]
        for kind, what in tqdm(jobs, desc=f"plots {id_ds}/{bb}", leave=False, mininterval=1):
            if kind == "bar":
                p = auroc_bar_plot(aurocs, colours, title, folder / f"{tag}auroc_bar.png")
            elif kind == "roc":
                p = roc_plot(scores, aurocs, what, groups[what], libs, colours, title,
                             folder / f"{tag}roc_{slug(what)}.png")
            else:
                p = histogram_plot(what, scores[what], groups, title,
                                   folder / f"{tag}hist_{slug(what)}.png")
            if p is not None:
                written.append(p)
    return written

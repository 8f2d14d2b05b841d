"""Sweep tables: every run's rows pivoted to detectors x OOD sets, with per-group means.

:func:`wide_table` pivots one metric to detectors x OOD sets with the near / far / overall
means; :func:`write_sweep_tables` writes ``sweep.csv``, ``sweep.md``, ``sweep.tex`` and the raw
concatenation ``sweep_rows.csv``.

Means: ``near`` / ``far`` are the unweighted mean of the metric over the OOD sets of that group,
``all`` over every near and far set. A mean is left empty when any set it averages failed or is
missing for that detector (a mean over the sets that happened to work would not be comparable).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd

from benchmark.render import CONVENTION, format_cell, latex_tabular, markdown_table, tex_escape
from benchmark.results import GROUP_ORDER, Collection

METRICS = ("auroc", "fpr95tpr", "aupr_in", "aupr_out")
HIGHER_IS_BETTER = {"auroc": True, "fpr95tpr": False, "aupr_in": True, "aupr_out": True}
METRIC_NAMES = {"auroc": "AUROC", "fpr95tpr": "FPR@95TPR", "aupr_in": "AUPR-In",
                "aupr_out": "AUPR-Out"}
MEANS = ("near", "far", "covariate", "synthetic", "all")
SEMANTIC = ("near", "far")  # ``all`` averages these (new classes); covariate shift is apart


def ood_order(rows: pd.DataFrame) -> list[tuple[str, str]]:
    """(ood_dataset, group) with near sets first, then far, each in order of appearance."""
    pairs = list(dict.fromkeys(zip(rows["ood_dataset"].astype(str),
                                   rows["ood_group"].astype(str), strict=True)))
    rank = {g: i for i, g in enumerate(GROUP_ORDER)}
    return sorted(pairs, key=lambda p: rank.get(p[1], len(rank)))


def _mean(values: Iterable[float]) -> float:
    vals = list(values)
    if not vals or any(v is None or (isinstance(v, float) and math.isnan(v)) for v in vals):
        return float("nan")
    return float(sum(vals) / len(vals))


def wide_table(rows: pd.DataFrame, metric: str = "auroc") -> pd.DataFrame:
    """Detectors (rows, by label) x OOD sets for one metric, plus per-group means.

    ``all`` is the mean over the near and far sets (semantic OOD) when there are any, so
    covariate-shifted ID images and synthetic noise do not blur the headline number.

    Cells of failed rows are NaN. Index: label; leading columns ``library``, ``detector``,
    ``method``; sorted by the ``all`` mean (best first, failures last).
    """
    order = ood_order(rows)
    out = []
    for label, grp in rows.groupby("label", sort=False):
        first = grp.iloc[0]
        rec: dict[str, Any] = {"label": label, "library": first["library"],
                               "detector": first["detector"], "method": first.get("method", "")}
        ok = grp[grp["status"] == "ok"].set_index("ood_dataset")[metric]
        for name, _ in order:
            rec[name] = float(ok[name]) if name in ok.index else float("nan")
        for g in GROUP_ORDER:
            members = [n for n, grp_name in order if grp_name == g]
            rec[g] = _mean(rec[n] for n in members) if members else float("nan")
        semantic = [n for n, g in order if g in SEMANTIC] or [n for n, _ in order]
        rec["all"] = _mean(rec[n] for n in semantic)
        out.append(rec)
    table = pd.DataFrame(out).set_index("label")
    ascending = not HIGHER_IS_BETTER.get(metric, True)
    return table.sort_values("all", ascending=ascending, na_position="last", kind="mergesort")


def sweep_csv_frame(rows: pd.DataFrame) -> pd.DataFrame:
    """One row per (setting, detector): every metric per OOD set and its means (``sweep.csv``)."""
    parts = []
    for (id_ds, bb), sub in rows.groupby(["id_dataset", "backbone"], sort=False):
        tables = {m: wide_table(sub, m) for m in METRICS}
        base = tables["auroc"][["library", "detector", "method"]].copy()
        base.insert(0, "backbone", bb)
        base.insert(0, "id_dataset", id_ds)
        acc = sub.groupby("label")["id_accuracy"].first()
        base["id_accuracy"] = acc.reindex(base.index)
        failed = sub[sub["status"] != "ok"].groupby("label")["ood_dataset"].apply(
            lambda s: ";".join(map(str, s)))
        base["failed_on"] = failed.reindex(base.index).fillna("")
        for m, t in tables.items():
            cols = [c for c in t.columns if c not in ("library", "detector", "method")]
            for c in cols:
                base[f"{m}_{c}"] = t[c].reindex(base.index)
        parts.append(base)
    frame = pd.concat(parts)
    frame.index.name = "label"
    return frame.reset_index()


# --------------------------------------------------------------------------- formatting




def _best(table: pd.DataFrame, metric: str, cols: list[str]) -> dict[str, float]:
    best = {}
    for c in cols:
        s = table[c].dropna()
        if len(s):
            best[c] = s.max() if HIGHER_IS_BETTER.get(metric, True) else s.min()
    return best


def _columns(table: pd.DataFrame, groups: dict[str, str]) -> list[str]:
    """The OOD sets in group order, then the means that have a value."""
    sets = [c for c in table.columns if c in groups]
    return sets + [m for m in MEANS if m in table.columns and not table[m].isna().all()]


def pivot_markdown(table: pd.DataFrame, metric: str, groups: dict[str, str]) -> str:
    """A Markdown pivot: the best value per column in bold, failures as ``—``."""
    cols = _columns(table, groups)
    best = _best(table, metric, cols)
    head = ["detector", "library"] + [
        f"{c} ({groups[c]})" if c in groups else f"**{c} mean**" for c in cols]
    rows = []
    for label, r in table.iterrows():
        cells = [str(label), str(r["library"])]
        for c in cols:
            text = format_cell(r[c])
            if c in best and not pd.isna(r[c]) and math.isclose(r[c], best[c]):
                text = f"**{text}**"
            cells.append(text)
        rows.append(cells)
    return markdown_table(head, rows, right=range(2, 2 + len(cols)))


def pivot_latex(table: pd.DataFrame, metric: str, groups: dict[str, str], caption: str) -> str:
    """A booktabs ``tabular`` (one row per detector, values in percent); best per column bold."""
    cols = _columns(table, groups)
    best = _best(table, metric, cols)
    head = ["Detector", "Library"] + [tex_escape(f"{c} ({groups[c]})") if c in groups
                                      else f"{c.capitalize()} mean" for c in cols]
    rows = []
    for label, r in table.iterrows():
        cells = [tex_escape(label), tex_escape(r["library"])]
        for c in cols:
            v = r[c]
            if pd.isna(v):
                cells.append("--")
                continue
            text = f"{100 * v:.2f}"
            if c in best and math.isclose(v, best[c]):
                text = f"\\textbf{{{text}}}"
            cells.append(text)
        rows.append(cells)
    return latex_tabular(head, rows, "ll" + "r" * len(cols), comments=[caption, CONVENTION])


def failures(rows: pd.DataFrame) -> list[str]:
    failed = rows[rows["status"] != "ok"]
    out = []
    for label, grp in failed.groupby("label", sort=False):
        out.append(f"- **{label}** ({', '.join(map(str, grp['ood_dataset']))}): "
                   f"{grp['error'].iloc[0] or 'no error text'}")
    return out


def write_sweep_tables(coll: Collection, out: Path) -> dict[str, Any]:
    """Write ``sweep.csv``, ``sweep_rows.csv``, ``sweep.md`` and ``sweep.tex``.

    Returns ``{"auroc": {(id, backbone): wide table}, "fpr95tpr": {...}, "markdown": text}``.
    """
    out.mkdir(parents=True, exist_ok=True)
    rows = coll.rows
    rows.to_csv(out / "sweep_rows.csv", index=False)
    sweep_csv_frame(rows).to_csv(out / "sweep.csv", index=False)
    md = ["# Sweep: detectors x OOD sets", "", f"> {CONVENTION}", "",
          "Near / far / all = unweighted mean over the OOD sets of that group (empty when any "
          "of them failed). Best value per column in bold.", "",
          f"Runs: {len(coll.runs)} under {', '.join(f'`{r}`' for r in coll.roots)}; "
          f"rows: {len(rows)} ({int((rows['status'] == 'ok').sum())} ok).", ""]
    tex = ["% Sweep tables generated by ood-bench-report; needs \\usepackage{booktabs}", ""]
    result: dict[str, Any] = {"auroc": {}, "fpr95tpr": {}}
    for id_ds, bb in coll.groups():
        sub = rows[(rows["id_dataset"] == id_ds) & (rows["backbone"] == bb)]
        groups = dict(ood_order(sub))
        acc = sub["id_accuracy"].dropna()
        acc_text = f"; ID test accuracy {acc.iloc[0]:.4f}" if len(acc) else ""
        md += [f"## ID {id_ds}, backbone {bb}{acc_text}", ""]
        for metric in ("auroc", "fpr95tpr"):
            table = wide_table(sub, metric)
            result[metric][(id_ds, bb)] = table
            arrow = "higher" if HIGHER_IS_BETTER[metric] else "lower"
            md += [f"### {METRIC_NAMES[metric]} ({arrow} = better)", "",
                   pivot_markdown(table, metric, groups), ""]
            caption = (f"{METRIC_NAMES[metric]} in percent ({arrow} is better), ID {id_ds}, "
                       f"backbone {bb}")
            tex += [pivot_latex(table, metric, groups, caption), ""]
        fails = failures(sub)
        if fails:
            md += ["### Failures", "", *fails, ""]
    (out / "sweep.md").write_text("\n".join(md))
    (out / "sweep.tex").write_text("\n".join(tex))
    result["markdown"] = "\n".join(md)
    return result

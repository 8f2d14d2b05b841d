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


def column_sets(order: list[tuple[str, str]], column: str) -> list[str]:
    """The OOD sets a table column averages: one set, a group's sets, or ``all`` (near + far
    when there are any, else every set)."""
    names = [n for n, _ in order]
    if column in names:
        return [column]
    if column == "all":
        return [n for n, g in order if g in SEMANTIC] or names
    return [n for n, g in order if g == column]


def _replicate_values(grp: pd.DataFrame, metric: str, order: list[tuple[str, str]]
                      ) -> dict[str, float]:
    """One replicate (run) of one detector: the metric per OOD set and per-group means."""
    ok = grp[grp["status"] == "ok"].set_index("ood_dataset")[metric]
    rec: dict[str, float] = {}
    for name, _ in order:
        rec[name] = float(ok[name]) if name in ok.index else float("nan")
    for g in (*GROUP_ORDER, "all"):
        members = column_sets(order, g)
        rec[g] = _mean(rec[n] for n in members) if members else float("nan")
    return rec


def wide_table(rows: pd.DataFrame, metric: str = "auroc") -> pd.DataFrame:
    """Detectors (rows, by label) x OOD sets for one metric, plus per-group means.

    ``all`` is the mean over the near and far sets (semantic OOD) when there are any, so
    covariate-shifted ID images and synthetic noise do not blur the headline number.

    A label seen in several runs (replicates: other seeds or checkpoints of the same setting)
    gets the mean over them, ``<column>_sd`` their standard deviation (ddof 1) and
    ``replicates`` their count; a label from one run gets ``<set>_lo`` / ``<set>_hi``, the
    run's bootstrap interval, where metrics.csv has one.

    Cells of failed rows are NaN. Index: label; leading columns ``library``, ``detector``,
    ``method``; sorted by the ``all`` mean (best first, failures last).
    """
    order = ood_order(rows)
    columns = [n for n, _ in order] + list(GROUP_ORDER) + ["all"]
    out = []
    for label, grp in rows.groupby("label", sort=False):
        first = grp.iloc[0]
        rec: dict[str, Any] = {"label": label, "library": first["library"],
                               "detector": first["detector"], "method": first.get("method", "")}
        runs = [g for _, g in grp.groupby("run", sort=False)] if "run" in grp else [grp]
        reps = [_replicate_values(g, metric, order) for g in runs]
        for c in columns:
            values = [r[c] for r in reps]
            rec[c] = _mean(values)
            if len(reps) > 1:
                rec[f"{c}_sd"] = (float(pd.Series(values).std(ddof=1))
                                  if not math.isnan(rec[c]) else float("nan"))
        if len(reps) == 1 and f"{metric}_lo" in grp.columns:
            ok = grp[grp["status"] == "ok"].set_index("ood_dataset")
            for name, _ in order:
                if name in ok.index:
                    rec[f"{name}_lo"] = float(ok.loc[name, f"{metric}_lo"])
                    rec[f"{name}_hi"] = float(ok.loc[name, f"{metric}_hi"])
        rec["replicates"] = len(reps)
        # a tuned run of another detector (tune=true): not that detector's default row
        rec["tuned"] = bool("tuned_from" in grp and grp["tuned_from"].notna().any())
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
        base["replicates"] = tables["auroc"]["replicates"]
        base["tuned"] = tables["auroc"]["tuned"]
        for m, t in tables.items():
            cols = [c for c in t.columns
                    if c not in ("library", "detector", "method", "replicates", "tuned")]
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


def spread(r: pd.Series, c: str, scale: float = 1.0, digits: int = 4) -> str:
    """What follows a cell's value: `` ± sd`` over replicates, `` [lo, hi]`` (the bootstrap
    interval of a single run), or nothing."""
    sd = r.get(f"{c}_sd")
    if sd is not None and not pd.isna(sd):
        return f" ± {scale * sd:.{digits}f}"
    lo, hi = r.get(f"{c}_lo"), r.get(f"{c}_hi")
    if lo is not None and hi is not None and not (pd.isna(lo) or pd.isna(hi)):
        d = max(digits - 1, 1)
        return f" [{scale * lo:.{d}f}, {scale * hi:.{d}f}]"
    return ""


SPREAD_NOTE = ("Cells: value ± sd over replicates (runs that differ only in seeds or "
               "checkpoints; their count in the `n` column), or value [95 % bootstrap interval] "
               "of a single run (OOD-set columns; group means have none).")


def pivot_markdown(table: pd.DataFrame, metric: str, groups: dict[str, str]) -> str:
    """A Markdown pivot: the highest (lowest for FPR) value per column in bold, failures as
    ``—``; each value with its spread (:func:`spread`)."""
    cols = _columns(table, groups)
    best = _best(table, metric, cols)
    head = ["detector", "library", "n"] + [
        f"{c} ({groups[c]})" if c in groups else f"**{c} mean**" for c in cols]
    rows = []
    for label, r in table.iterrows():
        cells = [str(label), str(r["library"]), str(int(r.get("replicates", 1)))]
        for c in cols:
            text = format_cell(r[c])
            if c in best and not pd.isna(r[c]) and math.isclose(r[c], best[c]):
                text = f"**{text}**"
            if not pd.isna(r[c]):
                text += spread(r, c)
            cells.append(text)
        rows.append(cells)
    return markdown_table(head, rows, right=range(2, 3 + len(cols)))


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
            extra = spread(r, c, scale=100, digits=2)
            if extra.startswith(" ±"):
                text += f" $\\pm$ {extra.removeprefix(' ± ')}"
            elif extra:
                text += f" {{\\scriptsize {extra.strip()}}}"
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
          "of them failed). Highest value per column in bold (not a test: see the report's "
          "'best detectors' for which differences are significant).", "", SPREAD_NOTE, "",
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

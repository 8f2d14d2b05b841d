"""The robustness part of the report, rendered from the study's ``robustness.csv``."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pandas as pd

from benchmark.render import markdown_table
from benchmark.studies.robustness import CSV_FILE, ERROR_DEFINITION, PROBES, SETTINGS_FILE


def read(folder: Path) -> pd.DataFrame | None:
    """The study's rows, or None when the folder has none."""
    path = folder / CSV_FILE
    return pd.read_csv(path, keep_default_na=True) if path.exists() else None


def _present(v: Any) -> bool:
    return v is not None and not (isinstance(v, float) and math.isnan(v))


def _cell(row: pd.Series, probe: str, notes: list[str]) -> str:
    status = row["status"]
    if status == "ok":
        if _present(row.get("auroc")):
            return f"ok ({row['auroc']:.3f})"
        if _present(row.get("flagged_share")):
            return f"ok ({row['flagged_share']:.0%} flagged)"
        return "ok"
    detail = str(row["detail"])
    short = detail if len(detail) <= 300 else detail[:297] + "..."
    notes.append(f"{len(notes) + 1}. **{row['label']}**, {PROBES[probe][0]}: {short}")
    how = ""
    if status == "error":
        how = " (raised)" if row.get("raised") is True else " (NaN out)" if (
            "NaN scores" in detail) else ""
    return f"**{status}**{how} [{len(notes)}]"


def _one(rows: pd.DataFrame) -> pd.Series:
    """One cell from a probe's rows: several when the probe ran on several backbones (seeds)
    of the same detector. ok only if every one is ok (its AUROC / flagged share the mean);
    otherwise the first row that is not, its detail saying on how many."""
    if len(rows) == 1:
        return rows.iloc[0]
    bad = rows[rows["status"] != "ok"]
    if bad.empty:
        out = rows.iloc[0].copy()
        for col in ("auroc", "flagged_share"):
            if col in rows:
                out[col] = pd.to_numeric(rows[col], errors="coerce").mean()
        return out
    out = bad.iloc[0].copy()
    out["detail"] = f"{len(bad)} of {len(rows)} backbones: {out['detail']}"
    return out


def markdown(frame: pd.DataFrame) -> str:
    """The matrix (ok / error [n] / changed [n]) and the numbered notes with every message."""
    probes = [p for p in PROBES if p in set(frame["probe"])]
    head = ["detector", "library"] + [PROBES[p][0] for p in probes]
    rows, notes = [], []
    for label, grp in frame.groupby("label", sort=False):
        by = dict(iter(grp.groupby("probe", sort=False)))
        cells = [str(label), str(grp["library"].iloc[0])]
        cells += [_cell(_one(by[p]), p, notes) if p in by else "—" for p in probes]
        rows.append(cells)
    return "\n".join([markdown_table(head, rows)] + ([""] + notes if notes else []))


def summary(frame: pd.DataFrame) -> pd.DataFrame:
    """Per library: probes run, ok, error, changed."""
    if frame.empty:
        return pd.DataFrame()
    t = frame.groupby("library")["status"].value_counts().unstack(fill_value=0)
    for c in ("ok", "error", "changed"):
        if c not in t:
            t[c] = 0
    t["probes"] = t[["ok", "error", "changed"]].sum(axis=1)
    t["ok_share"] = t["ok"] / t["probes"]
    return t[["probes", "ok", "error", "changed", "ok_share"]]


def write_markdown(folder: Path, frame: pd.DataFrame) -> str:
    """``robustness.md`` next to the CSV; returns the matrix for the report."""
    settings_file = folder / SETTINGS_FILE
    settings = json.loads(settings_file.read_text()) if settings_file.exists() else {}
    matrix = markdown(frame)
    text = ["# Robustness under bad or odd inputs", "",
            f"Settings: {settings}. Cells: ok / **error** / **changed**, with the "
            "message in the numbered notes; tiny-fit and missing-class cells show the AUROC "
            "(ID test vs the first OOD set) after that fit; NaN-pixel and constant-image cells "
            "the share of those images scored above the 95th percentile of the ID scores "
            "(flagged as OOD).", "",
            "Probes (the detector is fitted on a seeded subset of the run's fit split, "
            "``fit_cap`` rows):", "",
            *[f"* ``{p}``: {text}" for p, (_, text) in PROBES.items()], "",
            ERROR_DEFINITION, "", matrix, ""]
    (folder / "robustness.md").write_text("\n".join(text))
    return matrix

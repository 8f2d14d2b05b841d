"""Metric tables of one run: ``metrics.csv`` (the contract) and ``metrics.md`` (for people)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from benchmark.paths import display_path
from benchmark.render import CONVENTION, markdown_table

INTERVAL_METRICS = ("auroc", "aupr_in", "aupr_out", "fpr95tpr")
INTERVALS = [f"{m}_{end}" for m in INTERVAL_METRICS for end in ("lo", "hi")]
COLUMNS = [
    "library", "detector", "backbone", "id_dataset", "ood_dataset", "ood_group", "auroc",
    "aupr_in", "aupr_out", "fpr95tpr", *INTERVALS, "id_accuracy", "fit_seconds",
    "score_seconds", "status", "error",
]
MARKDOWN_COLUMNS = ["library", "detector", "ood_dataset", "ood_group", "auroc", "fpr95tpr",
                    "aupr_in", "aupr_out", "fit_seconds", "score_seconds", "status"]


def to_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    frame = pd.DataFrame(rows)
    for col in COLUMNS:
        if col not in frame:
            frame[col] = None
    extra = [c for c in frame.columns if c not in COLUMNS]
    return frame[COLUMNS + extra]


def _cell(column: str, r: pd.Series) -> str:
    v = r[column]
    if isinstance(v, float):
        if pd.isna(v):
            return ""
        if column.endswith("seconds"):
            return f"{v:.2f}"
        return f"{v:.4f}" + interval_text(r.get(f"{column}_lo"), r.get(f"{column}_hi"))
    return str(v)


def interval_text(lo: Any, hi: Any) -> str:
    """`` [lo, hi]`` (three decimals) after a value, or nothing when there is no interval."""
    if lo is None or hi is None or pd.isna(lo) or pd.isna(hi):
        return ""
    return f" [{lo:.3f}, {hi:.3f}]"


def markdown(frame: pd.DataFrame, title: str, skipped: dict[str, str] | None = None) -> str:
    """A readable table with the conventions stated above it (metrics with their 95 %
    bootstrap interval in brackets, when the run computed intervals)."""
    cols = MARKDOWN_COLUMNS
    rows = ([_cell(c, r) for c in cols] for _, r in frame.iterrows())
    lines = [f"# {title}", "", f"> {CONVENTION}", ""]
    if frame[INTERVALS[0]].notna().any():
        lines += ["Brackets: 95 % stratified-bootstrap interval (ID test and OOD rows "
                  "resampled separately; the run's `bootstrap` settings in manifest.json).", ""]
    lines += [markdown_table(cols, rows)]
    failed = frame[frame.status != "ok"]
    if len(failed):
        lines += ["", "## Failures", ""]
        for (_, det), grp in failed.groupby(["library", "detector"]):
            lines.append(f"- **{det}** ({', '.join(grp.ood_dataset)}): "
                         f"{display_path(grp.error.iloc[0])}")
    if skipped:  # the reasons name data roots: written portably (run folders get committed)
        lines += ["", "## OOD sets skipped", ""]
        lines += [f"- **{name}**: {display_path(reason)}" for name, reason in skipped.items()]
    return "\n".join(lines) + "\n"


def write_metric_tables(rows: list[dict[str, Any]], out_dir: Path, title: str,
                        skipped: dict[str, str] | None = None) -> pd.DataFrame:
    frame = to_frame(rows)
    out_dir.mkdir(parents=True, exist_ok=True)
    frame.to_csv(out_dir / "metrics.csv", index=False)
    (out_dir / "metrics.md").write_text(markdown(frame, title, skipped))
    return frame

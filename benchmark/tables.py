"""Metric tables of one run: ``metrics.csv`` (the contract) and ``metrics.md`` (for people)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd

from benchmark.metrics import CONVENTION

COLUMNS = [
    "library", "detector", "backbone", "id_dataset", "ood_dataset", "ood_group", "auroc",
    "aupr_in", "aupr_out", "fpr95tpr", "id_accuracy", "fit_seconds", "score_seconds", "status",
    "error",
]


def to_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    frame = pd.DataFrame(rows)
    for col in COLUMNS:
        if col not in frame:
            frame[col] = None
    extra = [c for c in frame.columns if c not in COLUMNS]
    return frame[COLUMNS + extra]


def markdown(frame: pd.DataFrame, title: str, skipped: dict[str, str] | None = None) -> str:
    """A readable table with the conventions stated above it."""
    lines = [f"# {title}", "", f"> {CONVENTION}", ""]
    cols = ["library", "detector", "ood_dataset", "ood_group", "auroc", "fpr95tpr", "aupr_in",
            "aupr_out", "fit_seconds", "score_seconds", "status"]
    lines.append("| " + " | ".join(cols) + " |")
    lines.append("|" + "---|" * len(cols))
    for _, r in frame.iterrows():
        cells = []
        for c in cols:
            v = r[c]
            if isinstance(v, float):
                cells.append("" if pd.isna(v) else (f"{v:.2f}" if c.endswith("seconds")
                                                     else f"{v:.4f}"))
            else:
                cells.append(str(v))
        lines.append("| " + " | ".join(cells) + " |")
    failed = frame[frame.status != "ok"]
    if len(failed):
        lines += ["", "## Failures", ""]
        for (_, det), grp in failed.groupby(["library", "detector"]):
            lines.append(f"- **{det}** ({', '.join(grp.ood_dataset)}): {grp.error.iloc[0]}")
    if skipped:
        lines += ["", "## OOD sets skipped", ""]
        lines += [f"- **{name}**: {reason}" for name, reason in skipped.items()]
    return "\n".join(lines) + "\n"


def write_metric_tables(rows: list[dict[str, Any]], out_dir: Path, title: str,
                        skipped: dict[str, str] | None = None) -> pd.DataFrame:
    frame = to_frame(rows)
    out_dir.mkdir(parents=True, exist_ok=True)
    frame.to_csv(out_dir / "metrics.csv", index=False)
    (out_dir / "metrics.md").write_text(markdown(frame, title, skipped))
    return frame


def format_cell(v: Any, digits: int = 4) -> str:
    """A table cell: floats to ``digits``, NaN / None as ``—``."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "—"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def frame_markdown(frame: pd.DataFrame, digits: int = 4, index: bool = True) -> str:
    """A plain Markdown table of a frame (floats to ``digits``; NaN as ``—``)."""
    f = frame.reset_index() if index else frame
    head = [str(c) for c in f.columns]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in f.itertuples(index=False):
        lines.append("| " + " | ".join(format_cell(v, digits) for v in row) + " |")
    return "\n".join(lines)

"""Metric tables of one run: ``metrics.csv`` (the contract) and ``metrics.md`` (for people)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from benchmark.render import CONVENTION, markdown_table

COLUMNS = [
    "library", "detector", "backbone", "id_dataset", "ood_dataset", "ood_group", "auroc",
    "aupr_in", "aupr_out", "fpr95tpr", "id_accuracy", "fit_seconds", "score_seconds", "status",
    "error",
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


def _cell(column: str, v: Any) -> str:
    if isinstance(v, float):
        return "" if pd.isna(v) else (f"{v:.2f}" if column.endswith("seconds") else f"{v:.4f}")
    return str(v)


def markdown(frame: pd.DataFrame, title: str, skipped: dict[str, str] | None = None) -> str:
    """A readable table with the conventions stated above it."""
    cols = MARKDOWN_COLUMNS
    rows = ([_cell(c, r[c]) for c in cols] for _, r in frame.iterrows())
    lines = [f"# {title}", "", f"> {CONVENTION}", "", markdown_table(cols, rows)]
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

"""The one table writer: Markdown and LaTeX (booktabs) tables, cells formatted one way.

Every table the harness writes (``metrics.md``, sweep, timing, paper tables, report parts) is
built from string cells by :func:`markdown_table` or :func:`latex_tabular`, and states the
score convention (:data:`CONVENTION`) above it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import pandas as pd

CONVENTION = (
    "Scores: higher = more OOD. OOD is the positive class. "
    "FPR@95TPR = fraction of ID samples flagged as OOD when 95 % of OOD samples are detected. "
    "AUPR-In treats ID as positive, AUPR-Out treats OOD as positive. "
    "Metrics are fractions in [0, 1]."
)
MISSING = "—"

_TEX_ESCAPE = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#",
               "_": r"\_", "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}",
               "^": r"\textasciicircum{}", "|": r"\textbar{}"}


def is_missing(v: Any) -> bool:
    """None or NaN: a cell with nothing to show."""
    return v is None or (isinstance(v, float) and math.isnan(v))


def format_cell(v: Any, digits: int = 4) -> str:
    """A table cell: floats to ``digits``, NaN / None as ``—``."""
    if is_missing(v):
        return MISSING
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def markdown_table(head: Sequence[str], rows: Iterable[Sequence[str]],
                   right: Iterable[int] = ()) -> str:
    """A Markdown table of string cells; columns whose index is in ``right`` align right."""
    right = set(right)
    rule = "|" + "".join("---:|" if i in right else "---|" for i in range(len(head)))
    lines = ["| " + " | ".join(head) + " |", rule]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def frame_markdown(frame: pd.DataFrame, digits: int = 4, index: bool = True) -> str:
    """A plain Markdown table of a frame (floats to ``digits``; NaN as ``—``)."""
    f = frame.reset_index() if index else frame
    return markdown_table([str(c) for c in f.columns],
                          ([format_cell(v, digits) for v in row]
                           for row in f.itertuples(index=False)))


def tex_escape(text: Any) -> str:
    """``text`` with LaTeX's special characters escaped."""
    return "".join(_TEX_ESCAPE.get(ch, ch) for ch in str(text))


def latex_tabular(head: Sequence[str], rows: Iterable[Sequence[str]], align: str,
                  comments: Sequence[str] = ()) -> str:
    """A booktabs ``tabular`` of LaTeX cells (escape text with :func:`tex_escape` first)."""
    lines = [f"% {c}" for c in comments]
    lines += [r"\begin{tabular}{" + align + "}", r"\toprule", " & ".join(head) + r" \\",
              r"\midrule"]
    lines += [" & ".join(row) + r" \\" for row in rows]
    lines += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(lines) + "\n"

"""Exact (Clopper-Pearson) interval of a rate ``k / n``: the realised false-alarm and detection
rates of a detector's own decision rule.

(The in-house package keeps its own copy in ``benchmark/inhouse/diagnostics.py``: it imports
nothing from the harness, by design.)
"""

from __future__ import annotations

from scipy import stats


def clopper_pearson(k: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """The two-sided ``level`` interval of a binomial proportion with ``k`` of ``n``."""
    if n <= 0:
        return float("nan"), float("nan")
    tail = (1.0 - level) / 2.0
    lo = float(stats.beta.ppf(tail, k, n - k + 1)) if k > 0 else 0.0
    hi = float(stats.beta.ppf(1.0 - tail, k + 1, n - k)) if k < n else 1.0
    return lo, hi

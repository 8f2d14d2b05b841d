"""Exact (Clopper-Pearson) interval of a rate ``k / n``: the realised false-alarm and detection
rates of a detector's own decision rule; and the sign test's interval of a median.

(The in-house package keeps its own copy in ``benchmark/inhouse/diagnostics.py``: it imports
nothing from the harness, by design.)
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import stats


def clopper_pearson(k: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """The two-sided ``level`` interval of a binomial proportion with ``k`` of ``n``."""
    if n <= 0:
        return float("nan"), float("nan")
    tail = (1.0 - level) / 2.0
    lo = float(stats.beta.ppf(tail, k, n - k + 1)) if k > 0 else 0.0
    hi = float(stats.beta.ppf(1.0 - tail, k + 1, n - k)) if k < n else 1.0
    return lo, hi


def median_interval(values: Sequence[float], level: float = 0.95) -> tuple[float, float]:
    """Distribution-free ``level`` interval of a median: the order statistics the sign test
    brackets it with (values may be inf, e.g. a stream that never alarmed)."""
    x = np.sort(np.asarray(values, dtype=np.float64))
    n = len(x)
    if n == 0:
        return float("nan"), float("nan")
    # j = the smallest count with P(Binomial(n, 1/2) <= j) >= (1 - level) / 2, so that
    # P(B <= j - 1) < (1 - level) / 2 on each side: [x_(j), x_(n-j+1)]
    j = int(stats.binom.ppf((1.0 - level) / 2.0, n, 0.5))
    if j < 1:
        return float("-inf"), float("inf")
    return float(x[j - 1]), float(x[n - j])

"""Calibration diagnostics: empirical false-alarm rate against alpha, with exact bands.

Used to check the conformal guarantee: on ID test data the fraction with ``p <= alpha`` should
stay within the Clopper-Pearson band around (at most) alpha.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import stats

DEFAULT_ALPHAS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2)


def clopper_pearson(k: int | np.ndarray, n: int, level: float = 0.95) -> tuple:
    """Exact binomial confidence interval for a proportion ``k / n``."""
    k = np.asarray(k)
    tail = (1.0 - level) / 2.0
    lo = np.where(k > 0, stats.beta.ppf(tail, k, n - k + 1), 0.0)
    hi = np.where(k < n, stats.beta.ppf(1.0 - tail, k + 1, n - k), 1.0)
    return lo, hi


def fpr_curve(
    pvalues: np.ndarray, alphas: Sequence[float] = DEFAULT_ALPHAS, level: float = 0.95
) -> dict[str, np.ndarray]:
    """Empirical ``P(p <= alpha)`` on ID data per alpha, with Clopper-Pearson bands."""
    p = np.asarray(pvalues, dtype=np.float64)
    a = np.asarray(alphas, dtype=np.float64)
    k = (p[None, :] <= a[:, None]).sum(axis=1)
    lo, hi = clopper_pearson(k, len(p), level)
    return {
        "alpha": a,
        "fpr": k / len(p),
        "count": k,
        "n": np.full(len(a), len(p)),
        "lower": lo,
        "upper": hi,
    }

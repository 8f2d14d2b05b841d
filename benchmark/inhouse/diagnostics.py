"""Calibration diagnostics: empirical false-alarm rate against alpha, with exact bands.

Clopper-Pearson bands describe the test-sample noise of an FPR. Whether a run's FPR is what valid
conformal calibration gives is a different question: one calibration draw moves the realised
rate too, so the reference is the beta-binomial law of :func:`calibration_law`, tested one-sided
(:func:`run_split_check`). :func:`exchangeability_test` asks the question validity rests on.
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


# --------------------------------------------------------------- is a run's FPR what it should be
VERDICT_LEVEL = 0.05


def calibration_law(n_test: int, n_cal: int, alpha: float) -> np.ndarray:
    """PMF of the ID false-alarm count ``K`` among ``n_test`` inputs, one calibration set of size
    ``n_cal``: the realised FPR is ``Beta(l, n_cal + 1 - l)``, ``l = floor((n_cal + 1) alpha)``
    (Vovk 2012; Angelopoulos & Bates 2023), so ``K ~ BetaBinom(n_test, l, n_cal + 1 - l)``.
    ``l = 0`` (alpha below ``1 / (n_cal + 1)``): nothing can be flagged, ``K = 0``."""
    ell = int(np.floor((n_cal + 1) * alpha + 1e-9))
    if ell <= 0:
        out = np.zeros(n_test + 1)
        out[0] = 1.0
        return out
    return stats.betabinom.pmf(np.arange(n_test + 1), n_test, ell, n_cal + 1 - ell)


def run_split_check(counts: Sequence[int], n_tests: Sequence[int], n_cals: Sequence[int],
                    alpha: float, level: float = VERDICT_LEVEL) -> dict:
    """One-sided tests of a run's ID false-alarm count against the law it must follow.

    One entry per calibration group (pooled: one; per class: each class and the small-classes
    group, whose counts add up as independent beta-binomials). ``p_anti = P(K >= k)`` small
    means more false alarms than valid conformal calibration produces (anti-conservative);
    ``p_conservative = P(K <= k)`` small means fewer (conservative: valid, but power is lost).
    """
    pmf = np.ones(1)
    for n_test, n_cal in zip(n_tests, n_cals, strict=True):
        pmf = np.convolve(pmf, calibration_law(int(n_test), int(n_cal), alpha))
    k = int(sum(counts))
    cdf = np.cumsum(pmf)
    p_anti = float(min(1.0, pmf[k:].sum()))
    p_cons = float(min(1.0, cdf[k]))
    verdict = ("anti-conservative" if p_anti < level
               else "conservative" if p_cons < level else "valid")
    mean = float((np.arange(len(pmf)) * pmf).sum())
    return {"alpha": alpha, "count": k, "n": int(sum(n_tests)), "fpr": k / max(1, sum(n_tests)),
            "expected_fpr": mean / max(1, sum(n_tests)), "p_anti": p_anti,
            "p_conservative": p_cons, "verdict": verdict}


def exchangeability_test(calibration: np.ndarray, test: np.ndarray) -> dict:
    """Are calibration and ID test statistics from one distribution (what validity needs)?

    Kolmogorov-Smirnov (any difference) and a one-sided Mann-Whitney U (test statistics
    larger: the direction that inflates false alarms), with the effect as
    ``P(T_test > T_cal)`` (0.5 when exchangeable)."""
    cal = np.asarray(calibration, dtype=np.float64)
    tst = np.asarray(test, dtype=np.float64)
    ks = stats.ks_2samp(tst, cal)
    mwu = stats.mannwhitneyu(tst, cal, alternative="greater")
    return {"ks_statistic": float(ks.statistic), "ks_p": float(ks.pvalue),
            "mwu_greater_p": float(mwu.pvalue),
            "p_test_above_cal": float(mwu.statistic / (len(tst) * len(cal)))}

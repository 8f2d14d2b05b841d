"""Combining p-values: within a layer (over channels) and across layers.

All functions work on log p-values where it matters, so that strong evidence does not underflow
to ``p = 0`` and ``-log p`` stays finite and ordered. The combined values are *statistics*: they
are only turned into valid p-values by conformal calibration (layer p-values are dependent, so
e.g. Fisher's chi-square tail is not valid here; :func:`naive_chi2_pvalue` exists to show that).
"""

from __future__ import annotations

import math

import numpy as np
from scipy import special

WITHIN = ("simes", "fisher", "bonferroni")
ACROSS = ("fisher", "simes", "cauchy", "minp")
_LOG_TINY = -700.0  # exp() of this is still a normal float64
CAUCHY_MAX_P = 0.99  # cot(p pi) -> -inf as p -> 1: capped so that p = 1 layers cannot swamp T


def check_method(method: str, valid: tuple[str, ...], what: str) -> str:
    if method not in valid:
        raise ValueError(f"unknown {what} combiner {method!r}; valid: {', '.join(valid)}")
    return method


def chi2_logsf_even(x: np.ndarray, df: int) -> np.ndarray:
    """``log P(chi2_df >= x)`` for even ``df``, accurate and without underflow.

    ``sf = Q(df/2, x/2)`` (regularised upper incomplete gamma) where it is representable; far in
    the tail, where it underflows, the closed form ``sf = exp(-x/2) sum_{i<k} (x/2)^i / i!``
    (``k = df/2``) summed in log space around its largest term.
    """
    if df <= 0 or df % 2:
        raise ValueError(f"df must be a positive even integer, got {df}")
    k = df // 2
    y = np.maximum(np.asarray(x, dtype=np.float64), 0.0) / 2.0
    q = special.gammaincc(k, y)
    with np.errstate(divide="ignore"):
        out = np.where(q > 0.5, np.log1p(-special.gammainc(k, y)), np.log(q))
    far = q < 1e-250
    if far.any():
        out[far] = _chi2_logsf_series(y[far], k)
    return out


def _chi2_logsf_series(y: np.ndarray, k: int) -> np.ndarray:
    log_y = np.log(y)  # y > 0 here: only called deep in the tail
    log_factorial = np.array([math.lgamma(i + 1) for i in range(k)])
    peak = np.clip(np.floor(y), 0, k - 1).astype(np.int64)
    log_peak = peak * log_y - log_factorial[peak]
    total = np.zeros_like(y)
    for i in range(k):
        total += np.exp(np.minimum(i * log_y - log_factorial[i] - log_peak, 0.0))
    return -y + log_peak + np.log(total)


def naive_chi2_pvalue(statistic: np.ndarray, num_tests: int) -> np.ndarray:
    """Fisher's textbook p-value ``P(chi2_{2L} >= T)``: valid only for *independent* tests.

    Exposed for the calibration-plot contrast; never used for decisions.
    """
    return np.exp(chi2_logsf_even(statistic, 2 * num_tests))


# ---------------------------------------------------------------- within a layer (p-values)
def simes(pvalues: np.ndarray) -> np.ndarray:
    """Simes over the last axis: ``min_j C * p_(j) / j``, capped at 1."""
    p = np.sort(np.asarray(pvalues, dtype=np.float64), axis=-1)
    c = p.shape[-1]
    return np.minimum(1.0, (c * p / np.arange(1, c + 1)).min(axis=-1))


def bonferroni(pvalues: np.ndarray) -> np.ndarray:
    """Bonferroni over the last axis: ``C * min_j p_j``, capped at 1."""
    p = np.asarray(pvalues, dtype=np.float64)
    return np.minimum(1.0, p.shape[-1] * p.min(axis=-1))


def fisher(pvalues: np.ndarray) -> np.ndarray:
    """Fisher over the last axis with the chi-square tail (a statistic here, see module doc)."""
    p = np.asarray(pvalues, dtype=np.float64)
    stat = -2.0 * np.log(np.maximum(p, np.exp(_LOG_TINY))).sum(axis=-1)
    return np.exp(chi2_logsf_even(stat, 2 * p.shape[-1]))


def within_log_pvalues(counts: np.ndarray, n: int, method: str) -> np.ndarray:
    """Layer log p-values straight from rank tail counts ``t`` (``m x C`` int).

    The channel p-value is ``min(1, 2 t / (n + 1))``, monotone in ``t``, so sorting the integer
    counts is the same as sorting p-values and cheaper.
    """
    c = counts.shape[1]
    scale = 2.0 / (n + 1.0)
    if method == "simes":
        ordered = np.sort(counts, axis=1)
        best = (ordered * (1.0 / np.arange(1, c + 1, dtype=np.float64))).min(axis=1)
        return np.minimum(0.0, np.log(c * scale * best))
    if method == "bonferroni":
        return np.minimum(0.0, np.log(c * scale * counts.min(axis=1)))
    if method == "fisher":
        log_p = np.minimum(0.0, np.log(scale * counts))
        return chi2_logsf_even(-2.0 * log_p.sum(axis=1), 2 * c)
    raise ValueError(f"unknown within-layer combiner {method!r}; valid: {', '.join(WITHIN)}")


# ---------------------------------------------------------------- across layers (statistics)
def across_statistic(log_p: np.ndarray, method: str) -> np.ndarray:
    """Network statistic from ``m x L`` layer log p-values; higher = more OOD.

    fisher: ``-2 sum log p``; simes: ``-log`` Simes p; cauchy: mean of ``tan((1/2 - p) pi)``
    (Liu & Xie 2020), with p capped at ``CAUCHY_MAX_P``; minp: ``-log(L min p)``.
    """
    log_p = np.minimum(np.asarray(log_p, dtype=np.float64), 0.0)
    n_tests = log_p.shape[1]
    if method == "fisher":
        return -2.0 * log_p.sum(axis=1)
    if method == "simes":
        ordered = np.sort(log_p, axis=1)
        terms = ordered + np.log(n_tests / np.arange(1, n_tests + 1))
        return -np.minimum(0.0, terms.min(axis=1))
    if method == "minp":
        return -np.minimum(0.0, math.log(n_tests) + log_p.min(axis=1))
    if method == "cauchy":
        p = np.minimum(np.exp(np.maximum(log_p, _LOG_TINY)), CAUCHY_MAX_P)
        return (1.0 / np.tan(np.pi * p)).mean(axis=1)  # tan((1/2 - p) pi) = cot(p pi)
    raise ValueError(f"unknown across-layer combiner {method!r}; valid: {', '.join(ACROSS)}")


def across_naive_pvalue(statistic: np.ndarray, method: str, n_tests: int) -> np.ndarray:
    """The combiner's own textbook p-value (assumes independence or its own model)."""
    statistic = np.asarray(statistic, dtype=np.float64)
    if method == "fisher":
        return naive_chi2_pvalue(statistic, n_tests)
    if method in ("simes", "minp"):
        return np.exp(-statistic)
    if method == "cauchy":
        return 0.5 - np.arctan(statistic) / np.pi
    raise ValueError(f"unknown across-layer combiner {method!r}; valid: {', '.join(ACROSS)}")

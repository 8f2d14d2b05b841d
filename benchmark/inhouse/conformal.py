"""Conformal p-values (Bates et al. 2023): turn any statistic into a valid p-value.

``p(x) = (1 + #{calibration i : T_i >= T(x)}) / (n_cal + 1)``. If calibration and test ID inputs
are exchangeable, ``P(p(x) <= alpha) <= alpha`` for ID x, whatever T is and however dependent its
ingredients are. Per predicted class, the guarantee holds within each class.
"""

from __future__ import annotations

import numpy as np

from .ranks import upper_tail_pvalues
from .reference import class_groups

DEFAULT_MIN_CLASS_CALIBRATION = 200


class ConformalCalibrator:
    """Sorted calibration statistics, pooled and (optionally) per predicted class.

    A class with fewer than ``min_class_samples`` calibration inputs falls back to the pooled
    calibration set: with n samples no p-value is below ``1 / (n + 1)``, so small classes could not
    reach usual alphas at all.
    """

    def __init__(
        self, per_class: bool = False, min_class_samples: int = DEFAULT_MIN_CLASS_CALIBRATION
    ) -> None:
        self.per_class = per_class
        self.min_class_samples = min_class_samples

    def fit(self, scores: np.ndarray, classes: np.ndarray | None = None) -> ConformalCalibrator:
        """``scores``: calibration statistics (higher = more OOD); ``classes``: predicted ids."""
        scores = np.asarray(scores, dtype=np.float64)
        if scores.ndim != 1 or len(scores) == 0:
            raise ValueError("need a non-empty 1-D array of calibration scores")
        if np.isnan(scores).any():
            raise ValueError("NaN in calibration scores")
        self.pooled_ = np.sort(scores)
        self.by_class_: dict[int, np.ndarray] = {}
        if self.per_class:
            if classes is None:
                raise ValueError("per-class calibration needs the predicted classes")
            order, groups = class_groups(classes)
            for cls, a, b in groups:
                if b - a >= self.min_class_samples:
                    self.by_class_[cls] = np.sort(scores[order[a:b]])
        return self

    @property
    def smallest_n(self) -> int:
        """Size of the smallest calibration set in use (sets the p-value resolution)."""
        return min([len(self.pooled_), *(len(v) for v in self.by_class_.values())])

    def pvalues(self, scores: np.ndarray, classes: np.ndarray | None = None) -> np.ndarray:
        scores = np.asarray(scores, dtype=np.float64)
        if not self.by_class_:
            return upper_tail_pvalues(self.pooled_, scores)
        if classes is None:
            raise ValueError("per-class calibration needs the predicted classes")
        out = np.empty(len(scores))
        order, groups = class_groups(classes)
        for cls, a, b in groups:
            idx = order[a:b]
            out[idx] = upper_tail_pvalues(self.by_class_.get(cls, self.pooled_), scores[idx])
        return out


def benjamini_hochberg(pvalues: np.ndarray, q: float) -> np.ndarray:
    """Boolean rejections controlling the false discovery rate at ``q`` over a batch."""
    p = np.asarray(pvalues, dtype=np.float64)
    m = len(p)
    if m == 0:
        return np.zeros(0, dtype=bool)
    order = np.argsort(p, kind="stable")
    below = p[order] <= q * np.arange(1, m + 1) / m
    k = np.flatnonzero(below).max() + 1 if below.any() else 0
    reject = np.zeros(m, dtype=bool)
    reject[order[:k]] = True
    return reject


def tie_break(primary: np.ndarray, secondary: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """``primary`` plus a shift in ``(-eps, eps)`` that is increasing in ``secondary``.

    Conformal p-values are discrete (every input beyond all calibration points shares
    ``p = 1/(n+1)``); ranking metrics need those ties broken by the raw statistic. Distinct
    values of ``-log p`` with one calibration set of n <= 10^5 differ by more than ``2 eps``, so
    their order is kept.
    """
    s = np.asarray(secondary, dtype=np.float64)
    u = np.sign(s) * np.log1p(np.abs(s))
    return primary + eps * u / (1.0 + np.abs(u))

"""Conformal p-values (Bates et al. 2023): turn any statistic into a valid p-value.

``p(x) = (1 + #{calibration i : T_i >= T(x)}) / (n_cal + 1)``. If calibration and test ID inputs
are exchangeable, ``P(p(x) <= alpha) <= alpha`` for ID x, whatever T is and however dependent its
ingredients are. Per predicted class, the guarantee holds within each calibration group
(a class, or the small classes together).
"""

from __future__ import annotations

import numpy as np

from .ranks import upper_tail_pvalues
from .reference import class_groups

DEFAULT_MIN_CLASS_CALIBRATION = 200


SMALL_CLASSES = -1  # the group key of the classes too small to be calibrated alone


class ConformalCalibrator:
    """Sorted calibration statistics, pooled and (optionally) per predicted class.

    Classes with fewer than ``min_class_samples`` calibration inputs (and classes never seen at
    calibration) are calibrated together, against the calibration points of those small classes
    only (group ``SMALL_CLASSES``). Falling back to the whole pooled set would break the
    per-group guarantee: a rare class whose statistics run high would be flagged far more often
    than alpha. Each group is exchangeable with its own test inputs, so ``P(p <= alpha) <=
    alpha`` holds per group and hence overall.
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
        self.small_classes_: list[int] = []
        self.small_: np.ndarray | None = None
        if self.per_class:
            if classes is None:
                raise ValueError("per-class calibration needs the predicted classes")
            order, groups = class_groups(classes)
            small = []
            for cls, a, b in groups:
                if b - a >= self.min_class_samples:
                    self.by_class_[cls] = np.sort(scores[order[a:b]])
                else:
                    self.small_classes_.append(cls)
                    small.append(scores[order[a:b]])
            if small:
                self.small_ = np.sort(np.concatenate(small))
        return self

    @property
    def smallest_n(self) -> int:
        """Size of the smallest calibration set in use (sets the p-value resolution)."""
        sets = [*self.by_class_.values(), *([self.small_] if self.small_ is not None else [])]
        return min(len(v) for v in sets) if sets else len(self.pooled_)

    def group_of(self, classes: np.ndarray | None, n: int | None = None) -> np.ndarray:
        """The calibration group of each input: its class, ``SMALL_CLASSES``, or 0 (pooled)."""
        if not self.by_class_ and self.small_ is None:
            return np.zeros(n if classes is None else len(classes), dtype=np.int64)
        if classes is None:
            raise ValueError("per-class calibration needs the predicted classes")
        classes = np.asarray(classes, dtype=np.int64)
        return np.where(np.isin(classes, list(self.by_class_)), classes, SMALL_CLASSES)

    def group_sizes(self) -> dict[int, int]:
        """Calibration points per group (the keys of :meth:`group_of`)."""
        if not self.by_class_ and self.small_ is None:
            return {0: len(self.pooled_)}
        out = {c: len(v) for c, v in self.by_class_.items()}
        if self.small_ is not None:
            out[SMALL_CLASSES] = len(self.small_)
        return out

    def _reference(self, group: int) -> np.ndarray:
        if group in self.by_class_:
            return self.by_class_[group]
        # a class unseen at calibration: the small classes' set, or (none) the pooled one
        return self.small_ if self.small_ is not None else self.pooled_

    def pvalues(self, scores: np.ndarray, classes: np.ndarray | None = None) -> np.ndarray:
        scores = np.asarray(scores, dtype=np.float64)
        if not self.by_class_ and self.small_ is None:
            return upper_tail_pvalues(self.pooled_, scores)
        groups_of = self.group_of(classes)
        out = np.empty(len(scores))
        order, groups = class_groups(groups_of)
        for grp, a, b in groups:
            idx = order[a:b]
            out[idx] = upper_tail_pvalues(self._reference(grp), scores[idx])
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
    with np.errstate(invalid="ignore"):
        shift = np.where(np.isinf(u), np.sign(u), u / (1.0 + np.abs(u)))  # T = inf: the top
    return primary + eps * shift


class ConformalScoring:
    """Scoring shared by the detectors whose ``_evaluate(stats, predicted, extra)`` returns
    (test log p-values, statistic T, conformal p-values)."""

    def pvalues(self, stats, predicted: np.ndarray, extra=None) -> np.ndarray:
        """Conformal p-values: valid for ID inputs exchangeable with the calibration split."""
        return self._evaluate(stats, predicted, extra)[2]

    def score(self, stats, predicted: np.ndarray, extra=None) -> np.ndarray:
        """``-log p`` (higher = more OOD), ties in p broken by T (see :func:`tie_break`)."""
        _, t, p = self._evaluate(stats, predicted, extra)
        return tie_break(-np.log(p), t)

    def decide(self, stats, predicted: np.ndarray, alpha: float, extra=None) -> np.ndarray:
        """OOD iff ``p <= alpha``: false alarms on ID data at rate at most alpha."""
        return self.pvalues(stats, predicted, extra) <= alpha

    def _evaluate(self, stats, predicted: np.ndarray, extra):  # pragma: no cover - abstract
        raise NotImplementedError

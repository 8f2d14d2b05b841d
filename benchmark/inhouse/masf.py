"""MaSF as published (Haroush et al., ICLR 2022): the in-house method's own ancestor.

Spatial max per channel, class-conditional empirical p-values against the fit data, Simes within
each layer, Fisher across layers read off its chi-square tail. Nothing is held out: the fit data
both build the references and "calibrate" (the chi-square reading assumes independent layers,
which they are not), so its false-alarm rate at alpha is not controlled. It is here as a
baseline beside the conformal detectors that descend from it.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from .combiners import chi2_logsf_even
from .layout import Stats
from .statistical import StatisticalDetector


class MaSF:
    """Max-Simes-Fisher with the chi-square p-value (no conformal calibration)."""

    def __init__(self, per_class: bool = True, layers: tuple[str, ...] | None = None) -> None:
        self.per_class = per_class
        self.layers = layers

    def fit(self, stats: Stats, predicted: np.ndarray, labels: np.ndarray | None = None,
            extra: Mapping[str, np.ndarray] | None = None) -> MaSF:
        self.detector_ = StatisticalDetector(reductions=("max",), within="simes",
                                             across="fisher", per_class=self.per_class,
                                             layers=self.layers)
        self.detector_.fit(stats, predicted, labels)
        return self

    def log_pvalues(self, stats: Stats, predicted: np.ndarray) -> np.ndarray:
        """``log P(chi2_{2L} >= T)``, accurate deep in the tail."""
        t = self.detector_.statistic(stats, predicted)
        return chi2_logsf_even(t, 2 * len(self.detector_.test_names))

    def pvalues(self, stats: Stats, predicted: np.ndarray) -> np.ndarray:
        return np.exp(self.log_pvalues(stats, predicted))

    def score(self, stats: Stats, predicted: np.ndarray) -> np.ndarray:
        """``-log p`` of the chi-square reading (higher = more OOD)."""
        return -self.log_pvalues(stats, predicted)

    def decide(self, stats: Stats, predicted: np.ndarray, alpha: float) -> np.ndarray:
        return self.pvalues(stats, predicted) <= alpha

"""The lab's statistical OOD detector (MaSF lineage) with conformal calibration.

Per (layer, reduction) test: two-sided rank p-value of every channel statistic against the
predicted class's reference sample, combined over channels (Simes by default) into a layer
p-value; layers (and any extra evidence) are combined into one statistic T (Fisher by default);
T is turned into a valid p-value by conformal calibration on a separate ID split.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from .combiners import (
    ACROSS,
    WITHIN,
    across_naive_pvalue,
    across_statistic,
    check_method,
    within_log_pvalues,
)
from .conformal import (
    DEFAULT_MIN_CLASS_CALIBRATION,
    ConformalCalibrator,
    ConformalScoring,
)
from .evidence import CalibratedEvidence, Evidence, pick_input
from .explanation import Explanation, evidence_shares
from .layout import Stats, Unit, plan_units, stack_units
from .reductions import check_reductions
from .reference import DEFAULT_MIN_CLASS_SAMPLES, ClassReferences

Extra = Mapping[str, np.ndarray] | None
CLASS_SOURCES = ("predicted", "true")


LAYER_SUBSETS = ("all", "early", "late")


def layer_subset(layers: Sequence[str], subset: str) -> list[str]:
    """All layers, the first half ("early") or the rest ("late"); at least one each."""
    if subset not in LAYER_SUBSETS:
        raise ValueError(f"layer_subset must be one of {LAYER_SUBSETS}, got {subset!r}")
    if subset == "all" or len(layers) < 2:
        return list(layers)
    half = len(layers) // 2
    return list(layers[:half] if subset == "early" else layers[half:])


class StatisticalDetector(ConformalScoring):
    """Post-hoc detector giving a conformal p-value per input (scikit-learn style).

    Parameters
    ----------
    reductions: which per-channel statistics to test ("max", "mean"); each is its own test.
    within: channel combiner inside a test: "simes" | "fisher" | "bonferroni".
    across: test combiner: "fisher" | "simes" | "cauchy" | "minp".
    per_class: reference samples per class (else pooled only).
    class_source: classes used to build references at fit: "predicted" or "true" labels
        (scoring always uses the predicted class).
    layers: layer names to use (None = every layer in the statistics, in order).
    layer_subset: "all", "early" (the first half of those layers) or "late" (the rest).
    calibrate_per_class: conformal calibration per predicted class (else pooled).
    min_class_reference / min_class_calibration: below these sizes a class uses the pooled set.
    extra_evidence: objects with ``name, source, fit, score`` (see ``evidence.Evidence``); each is
        fitted on part of the fit split and referenced on the held-out ``evidence_holdout`` part.
    seed: for the evidence split.
    chunk_size: inputs scored per block (bounds memory; results do not depend on it).
    """

    def __init__(
        self,
        reductions: Sequence[str] = ("max",),
        within: str = "simes",
        across: str = "fisher",
        per_class: bool = True,
        class_source: str = "predicted",
        layers: Sequence[str] | None = None,
        layer_subset: str = "all",
        calibrate_per_class: bool = False,
        min_class_reference: int = DEFAULT_MIN_CLASS_SAMPLES,
        min_class_calibration: int = DEFAULT_MIN_CLASS_CALIBRATION,
        extra_evidence: Sequence[Evidence] = (),
        evidence_holdout: float = 0.2,
        seed: int = 0,
        chunk_size: int = 65536,
    ) -> None:
        self.reductions = reductions
        self.within = within
        self.across = across
        self.per_class = per_class
        self.class_source = class_source
        self.layers = layers
        self.layer_subset = layer_subset
        self.calibrate_per_class = calibrate_per_class
        self.min_class_reference = min_class_reference
        self.min_class_calibration = min_class_calibration
        self.extra_evidence = extra_evidence
        self.evidence_holdout = evidence_holdout
        self.seed = seed
        self.chunk_size = chunk_size

    # ------------------------------------------------------------------ fitting
    def fit(
        self,
        stats: Stats,
        predicted: np.ndarray,
        labels: np.ndarray | None = None,
        extra: Extra = None,
    ) -> StatisticalDetector:
        """Build per-class and pooled sorted references from the fit split."""
        check_method(self.within, WITHIN, "within-layer")
        check_method(self.across, ACROSS, "across-layer")
        if self.class_source not in CLASS_SOURCES:
            raise ValueError(f"class_source must be one of {CLASS_SOURCES}")
        if self.class_source == "true" and labels is None:
            raise ValueError("class_source='true' needs the labels")
        if not 0.0 < self.evidence_holdout < 1.0:
            raise ValueError("evidence_holdout must be in (0, 1)")
        layers = layer_subset(list(stats) if self.layers is None else list(self.layers),
                              self.layer_subset)
        self.units_: list[Unit] = plan_units(stats, layers, check_reductions(self.reductions))
        values = stack_units(stats, self.units_)
        classes = np.asarray(predicted if self.class_source == "predicted" else labels)
        if len(classes) != len(values):
            raise ValueError("one class per input is needed")
        self.references_ = ClassReferences(self.per_class, self.min_class_reference).fit(
            values, classes
        )
        self.evidences_ = self._fit_evidence(len(values), extra,
                                             labels if labels is not None else classes)
        self.calibrator_: ConformalCalibrator | None = None
        return self

    def _fit_evidence(self, n: int, extra: Extra, classes: np.ndarray
                      ) -> list[CalibratedEvidence]:
        if not self.extra_evidence:
            return []
        perm = np.random.default_rng(self.seed).permutation(n)
        n_ref = min(n - 1, max(1, round(self.evidence_holdout * n)))
        ref_idx, fit_idx = np.sort(perm[:n_ref]), np.sort(perm[n_ref:])
        fitted = []
        classes = np.asarray(classes)
        for ev in self.extra_evidence:
            x = np.asarray(pick_input(extra, ev.source, ev.name))
            fitted.append(CalibratedEvidence(ev).fit(x[fit_idx], x[ref_idx],
                                                     classes[fit_idx]))
        return fitted

    def calibrate(
        self, stats: Stats, predicted: np.ndarray, extra: Extra = None
    ) -> StatisticalDetector:
        """Conformal calibration on a held-out ID split (never the fit split).

        ``predicted`` are the classifier's classes for the calibration inputs (used when
        ``calibrate_per_class``; scoring always groups by predicted class).
        """
        t = self.statistic(stats, predicted, extra)
        self.calibrator_ = ConformalCalibrator(
            self.calibrate_per_class, self.min_class_calibration
        ).fit(t, predicted)
        # kept for diagnostics (exchangeability with test data, per-class rates)
        self.calibration_statistic_ = t
        self.calibration_classes_ = np.asarray(predicted)
        return self

    # ------------------------------------------------------------------ scoring
    @property
    def test_names(self) -> list[str]:
        """Column names of :meth:`test_log_pvalues`: units then extra evidences."""
        return [u.name for u in self.units_] + [e.name for e in self.evidences_]

    def test_log_pvalues(
        self, stats: Stats, predicted: np.ndarray, extra: Extra = None
    ) -> np.ndarray:
        """``m x L`` log p-values: one per (layer, reduction) and per extra evidence."""
        self._check_fitted()
        values = stack_units(stats, self.units_)
        predicted = np.asarray(predicted)
        if len(predicted) != len(values):
            raise ValueError("one predicted class per input is needed")
        log_p = np.empty((len(values), len(self.units_) + len(self.evidences_)))
        for start in range(0, len(values), self.chunk_size):
            rows = slice(start, start + self.chunk_size)
            log_p[rows, : len(self.units_)] = self._unit_log_pvalues(values[rows], predicted[rows])
        for j, ev in enumerate(self.evidences_, start=len(self.units_)):
            log_p[:, j] = ev.log_pvalues(pick_input(extra, ev.source, ev.name))
        return log_p

    def _unit_log_pvalues(self, values: np.ndarray, predicted: np.ndarray) -> np.ndarray:
        order, groups = self.references_.groups(predicted)
        values = values[order]  # inputs grouped by class
        grouped = np.empty((len(values), len(self.units_)))
        for ref, a, b in groups:
            counts = ref.tail_counts(values[a:b])
            for j, unit in enumerate(self.units_):
                grouped[a:b, j] = within_log_pvalues(counts[:, unit.columns], ref.n, self.within)
        out = np.empty_like(grouped)
        out[order] = grouped
        return out

    def statistic(self, stats: Stats, predicted: np.ndarray, extra: Extra = None) -> np.ndarray:
        """The combined statistic T (higher = more OOD), before calibration."""
        return across_statistic(self.test_log_pvalues(stats, predicted, extra), self.across)

    def _evaluate(self, stats: Stats, predicted: np.ndarray, extra: Extra):
        if self.calibrator_ is None:
            raise RuntimeError("call calibrate() on held-out ID data before scoring")
        log_p = self.test_log_pvalues(stats, predicted, extra)
        t = across_statistic(log_p, self.across)
        return log_p, t, self.calibrator_.pvalues(t, predicted)


    def naive_pvalues(self, stats: Stats, predicted: np.ndarray, extra: Extra = None) -> np.ndarray:
        """The combiner's textbook p-value (e.g. chi-square for Fisher): NOT valid, for contrast."""
        t = self.statistic(stats, predicted, extra)
        return across_naive_pvalue(t, self.across, len(self.test_names))

    def explain(
        self, stats: Stats, predicted: np.ndarray, alpha: float = 0.05, extra: Extra = None
    ) -> Explanation:
        """p-value, decision, class and each test's p-value and share of the evidence."""
        log_p, t, p = self._evaluate(stats, predicted, extra)
        return Explanation(
            pvalue=p,
            decision=p <= alpha,
            predicted=np.asarray(predicted),
            statistic=t,
            tests=self.test_names,
            test_pvalues=np.exp(log_p),
            shares=evidence_shares(log_p),
            alpha=alpha,
        )

    def _check_fitted(self) -> None:
        if not hasattr(self, "references_"):
            raise RuntimeError("call fit() first")

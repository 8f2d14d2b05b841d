"""Evidence groups: a two-level combination that keeps one strong test from being drowned.

Putting k-NN in as one test among ten layer tests inside one Fisher sum lets the many weak
early-layer tests outvote the strong feature-space one near the data. Here tests are grouped
(the layer statistics; feature-space evidences such as k-NN, relative Mahalanobis, class-wise
PPCA; logit evidences such as energy). Each group yields one p-value; the group p-values are
combined (Fisher, weighted Fisher, Cauchy, min-p, Simes) and the result is calibrated once more.

Splits, disjoint by construction (``split_roles`` says which does what):

- *model*: the fit split (training images): layer references, k-NN bank, class Gaussians,
  PPCAs;
- *reference*: each member's statistic and each group's combined statistic are turned into
  p-values against these inputs: by default half of the held-out calibration split (images the
  backbone never trained on behave like ID test images; training images look more typical, which
  would make the group p-values of ID test inputs too small), or a held-out part of the fit
  split (``reference="fit"``);
- *calibration*: the rest of the calibration split: the final conformal p-value.

Only the last step carries the guarantee, ``P(p <= alpha) <= alpha`` on ID inputs exchangeable
with the calibration split, and it holds whatever happens in the first two.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .combiners import (
    _LOG_TINY,
    ACROSS,
    CAUCHY_MAX_P,
    across_naive_pvalue,
    across_statistic,
    check_method,
)
from .conformal import (
    DEFAULT_MIN_CLASS_CALIBRATION,
    ConformalCalibrator,
    ConformalScoring,
)
from .evidence import Evidence, make_evidence, pick_input
from .explanation import Explanation, evidence_shares
from .layout import Stats
from .ranks import upper_tail_pvalues
from .statistical import StatisticalDetector

Extra = Mapping[str, np.ndarray] | None
LAYERS = "layers"
WEIGHTED = ("fisher", "cauchy")  # combiners that take group weights
DEFAULT_GROUPS: dict[str, tuple[str, ...]] = {"layers": (LAYERS,), "features": ("knn", "rmd")}


class _LayersMember:
    """The layer tests of :class:`StatisticalDetector` (Simes within, Fisher across layers)."""

    name = LAYERS

    def __init__(self, params: Mapping[str, Any]) -> None:
        self.detector = StatisticalDetector(**dict(params))

    def fit(self, stats: Stats, predicted: np.ndarray, labels: np.ndarray | None,
            extra: Extra) -> None:
        self.detector.fit(stats, predicted, labels)

    def statistic(self, stats: Stats, predicted: np.ndarray, extra: Extra) -> np.ndarray:
        return self.detector.statistic(stats, predicted)


class _EvidenceMember:
    """A feature/logit evidence; class-aware ones are fitted with labels (else predictions)."""

    def __init__(self, evidence: Evidence) -> None:
        self.evidence = evidence
        self.name = evidence.name

    def _input(self, stats: Stats, extra: Extra):
        if self.evidence.source == "layer_stats":  # evidences over the layer statistics
            return stats
        return np.asarray(pick_input(extra, self.evidence.source, self.name))

    def fit(self, stats: Stats, predicted: np.ndarray, labels: np.ndarray | None,
            extra: Extra) -> None:
        x = self._input(stats, extra)
        if getattr(self.evidence, "needs_classes", False):
            self.evidence.fit(x, labels if labels is not None else predicted)
        else:
            self.evidence.fit(x)

    def statistic(self, stats: Stats, predicted: np.ndarray, extra: Extra) -> np.ndarray:
        return np.asarray(self.evidence.score(self._input(stats, extra)), dtype=np.float64)


TAILS = ("exponential", "none")
REFERENCES = ("calibration", "fit")
TAIL_FRACTION = 0.025  # the share of the reference that fits the exponential tail


def tail_log_pvalues(sorted_ref: np.ndarray, scores: np.ndarray, tail: str = "exponential"
                     ) -> np.ndarray:
    """Conformal log p-values against ``sorted_ref``, extrapolated beyond its largest value.

    Every score above the reference maximum gets the same conformal p-value ``1 / (n + 1)``,
    which caps a group's evidence: an input far outside the ID data would count no more than
    one just outside it. ``tail="exponential"`` continues the p-value past the maximum with an
    exponential tail (peaks over threshold: the mean excess of the top ``TAIL_FRACTION`` of the
    reference over the value below them), so ``log p`` keeps falling with distance. The result
    is a statistic feeding the next combination; validity comes from the final calibration.
    """
    n = len(sorted_ref)
    log_p = np.log(upper_tail_pvalues(sorted_ref, scores))
    if tail == "none" or n < 20:
        return log_p
    k = max(10, int(np.ceil(TAIL_FRACTION * n)))
    threshold = sorted_ref[-k - 1]
    beta = float(np.mean(sorted_ref[-k:] - threshold))
    if not beta > 0:
        return log_p
    beyond = scores > sorted_ref[-1]
    log_p[beyond] = -np.log(n + 1.0) - (scores[beyond] - sorted_ref[-1]) / beta
    return log_p


def _loo_log_pvalues(sorted_ref: np.ndarray, own: np.ndarray) -> np.ndarray:
    """Conformal log p-values of the reference inputs against the others (leave one out):
    ``#{ref >= s_i} / n`` counts the input itself, i.e. ``(1 + #others >= s_i) / n``."""
    n = len(sorted_ref)
    return np.log((n - np.searchsorted(sorted_ref, own, side="left")) / n)


class GroupedDetector(ConformalScoring):
    """Conformal p-values from a two-level combination of evidence groups (scikit-learn style).

    Parameters
    ----------
    groups: ``{group: [member, ...]}``; a member is ``"layers"`` (the layer tests) or an
        evidence name (``knn``, ``rmd``, ``openpcs``, ``energy``). Default: layers, and a
        feature group of k-NN and relative Mahalanobis.
    within_group: combiner of the member p-values inside a group.
    across: combiner of the group p-values.
    weights: ``{group: w}`` for ``across`` in ``fisher`` (``sum w_g (-2 log p_g)``) and
        ``cauchy``; missing groups weigh 1. Pick them on ID data or the validation split only.
    layer_params: parameters of the layer tests (:class:`StatisticalDetector`: reductions,
        within, across, per_class, layers, layer_subset, ...).
    evidence_params: ``{evidence: {param: value}}``, e.g. ``{"knn": {"k": 50}}``.
    reference: which split references member and group p-values: "calibration" (default: a
        ``reference_fraction`` of the held-out calibration split, images the backbone never
        trained on, so ID test inputs look like it; the rest calibrates the final p-value) or
        "fit" (a ``reference_fraction`` of the fit split, whose rest fits the models).
    reference_fraction: the share of that split used as the reference.
    tail: "exponential" extrapolates those p-values past the reference maximum (see
        :func:`tail_log_pvalues`); "none" caps them at ``1 / (n + 1)``.
    calibrate_per_class / min_class_calibration: as in :class:`StatisticalDetector`.
    """

    def __init__(
        self,
        groups: Mapping[str, Sequence[str]] | None = None,
        within_group: str = "fisher",
        across: str = "fisher",
        weights: Mapping[str, float] | None = None,
        layer_params: Mapping[str, Any] | None = None,
        evidence_params: Mapping[str, Mapping[str, Any]] | None = None,
        reference: str = "calibration",
        reference_fraction: float = 0.5,
        tail: str = "exponential",
        calibrate_per_class: bool = False,
        min_class_calibration: int = DEFAULT_MIN_CLASS_CALIBRATION,
        seed: int = 0,
    ) -> None:
        self.groups = groups
        self.within_group = within_group
        self.across = across
        self.weights = weights
        self.layer_params = layer_params
        self.evidence_params = evidence_params
        self.reference = reference
        self.reference_fraction = reference_fraction
        self.tail = tail
        self.calibrate_per_class = calibrate_per_class
        self.min_class_calibration = min_class_calibration
        self.seed = seed

    # ------------------------------------------------------------------ configuration
    def _plan(self) -> dict[str, list[Any]]:
        groups = {str(g): [str(m) for m in ms] for g, ms in
                  (self.groups or DEFAULT_GROUPS).items()}
        if not groups or any(not ms for ms in groups.values()):
            raise ValueError("groups must name at least one group, each with members")
        check_method(self.within_group, ACROSS, "within-group")
        check_method(self.across, ACROSS, "across-group")
        weights = dict(self.weights or {})
        unknown = sorted(set(weights) - set(groups))
        if unknown:
            raise ValueError(f"weights for unknown groups {unknown}; groups: {sorted(groups)}")
        if any(float(w) < 0 for w in weights.values()) or (
                weights and not any(float(weights.get(g, 1.0)) > 0 for g in groups)):
            raise ValueError("group weights must be >= 0 and not all 0")
        if self.across not in WEIGHTED and any(float(w) != 1.0 for w in weights.values()):
            raise ValueError(f"weights need across in {WEIGHTED}, not {self.across!r}")
        if self.reference not in REFERENCES:
            raise ValueError(f"reference must be one of {REFERENCES}, got {self.reference!r}")
        if self.tail not in TAILS:
            raise ValueError(f"tail must be one of {TAILS}, got {self.tail!r}")
        if not 0.0 < self.reference_fraction < 1.0:
            raise ValueError("reference_fraction must be in (0, 1)")
        ev_params = {str(k): dict(v) for k, v in (self.evidence_params or {}).items()}
        plan = {}
        for g, members in groups.items():
            plan[g] = [_LayersMember(self.layer_params or {}) if m == LAYERS
                       else _EvidenceMember(make_evidence(m, **ev_params.get(m, {})))
                       for m in members]
        return plan

    # ------------------------------------------------------------------ fitting
    def fit(self, stats: Stats, predicted: np.ndarray, labels: np.ndarray | None = None,
            extra: Extra = None) -> GroupedDetector:
        """Fit every member's model; with ``reference="fit"`` also reference p-values on a
        held-out part of the fit split (else that happens on part of the calibration split)."""
        self.plan_ = self._plan()
        self.group_names_ = list(self.plan_)
        self.weights_ = np.array([float((self.weights or {}).get(g, 1.0))
                                  for g in self.group_names_])
        predicted = np.asarray(predicted)
        labels = None if labels is None else np.asarray(labels)
        rows = _Rows(stats, predicted, labels, extra)
        if self.reference == "fit":
            ref, model = self._split(len(predicted), self.seed)
        else:
            ref, model = np.zeros(0, dtype=np.int64), np.arange(len(predicted))
        for members in self.plan_.values():
            for m in members:
                m.fit(*rows(model))
        self.split_sizes_ = {"model": len(model), "reference": len(ref)}
        self.calibrator_: ConformalCalibrator | None = None
        if self.reference == "fit":
            self._reference(*rows(ref, labels=False))
        return self

    def _split(self, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
        """Seeded (reference, rest) rows: ``reference_fraction`` of ``n`` for the reference."""
        if n < 2:
            raise ValueError(f"cannot split {n} inputs into reference and rest")
        n_ref = min(n - 1, max(1, round(self.reference_fraction * n)))
        perm = np.random.default_rng(seed).permutation(n)
        return np.sort(perm[:n_ref]), np.sort(perm[n_ref:])

    def _reference(self, stats: Stats, predicted: np.ndarray, extra: Extra) -> None:
        """Sorted member and group statistics of the reference inputs (group level: leave one
        out, so a reference input is not compared with itself)."""
        self.member_refs_: dict[str, list[np.ndarray]] = {}
        self.group_refs_: dict[str, np.ndarray] = {}
        for g, members in self.plan_.items():
            own = [m.statistic(stats, predicted, extra) for m in members]
            self.member_refs_[g] = [np.sort(v) for v in own]
            if len(members) == 1:
                self.group_refs_[g] = self.member_refs_[g][0]
                continue
            loo = np.stack([_loo_log_pvalues(r, v) for r, v in
                            zip(self.member_refs_[g], own, strict=True)], axis=1)
            self.group_refs_[g] = np.sort(across_statistic(loo, self.within_group))

    def calibrate(self, stats: Stats, predicted: np.ndarray,
                  extra: Extra = None) -> GroupedDetector:
        """The final conformal calibration on a held-out ID split (never the fit split); with
        ``reference="calibration"``, a seeded ``reference_fraction`` of it references the member
        and group p-values first and the rest calibrates (disjoint)."""
        self._check_fitted()
        predicted = np.asarray(predicted)
        if self.reference == "calibration":
            rows = _Rows(stats, predicted, None, extra)
            ref, final = self._split(len(predicted), self.seed + 1)
            self._reference(*rows(ref, labels=False))
            stats, predicted, extra = rows(final, labels=False)
            self.split_sizes_["reference"] = len(ref)
        t = self.statistic(stats, predicted, extra)
        self.calibrator_ = ConformalCalibrator(self.calibrate_per_class,
                                               self.min_class_calibration).fit(t, predicted)
        self.split_sizes_["calibration"] = len(t)
        # kept for diagnostics (exchangeability with test data, per-class rates)
        self.calibration_statistic_ = t
        self.calibration_classes_ = np.asarray(predicted)
        return self

    def split_roles(self) -> dict[str, str]:
        """Which split does what (for a run's manifest)."""
        s = self.split_sizes_
        where = "other fit-split" if self.reference == "fit" else "calibration-split"
        return {
            "model": f"{s['model']} fit-split inputs: layer references, evidence models",
            "reference": f"{s['reference']} {where} inputs: member and group p-values",
            "calibration": f"{s.get('calibration', 0)} other calibration-split inputs: the final "
                           "conformal p-value (the only step the guarantee rests on)",
        }

    # ------------------------------------------------------------------ scoring
    @property
    def test_names(self) -> list[str]:
        """Column names of :meth:`test_log_pvalues`: one per group."""
        self._check_fitted()
        return list(self.group_names_)

    def member_statistics(self, stats: Stats, predicted: np.ndarray,
                          extra: Extra = None) -> dict[str, list[np.ndarray]]:
        self._check_fitted()
        predicted = np.asarray(predicted)
        return {g: [m.statistic(stats, predicted, extra) for m in ms]
                for g, ms in self.plan_.items()}

    def test_log_pvalues(self, stats: Stats, predicted: np.ndarray,
                         extra: Extra = None) -> np.ndarray:
        """``m x G`` group log p-values (each against the reference part of the fit split)."""
        members = self.member_statistics(stats, predicted, extra)
        cols = []
        for g in self.group_names_:
            stats_g = members[g]
            if len(stats_g) == 1:
                cols.append(tail_log_pvalues(self.group_refs_[g], stats_g[0], self.tail))
                continue
            log_p = np.stack([tail_log_pvalues(r, s, self.tail) for r, s in
                              zip(self.member_refs_[g], stats_g, strict=True)], axis=1)
            combined = across_statistic(log_p, self.within_group)
            cols.append(tail_log_pvalues(self.group_refs_[g], combined, self.tail))
        return np.stack(cols, axis=1)

    def combine(self, log_p: np.ndarray) -> np.ndarray:
        """Group log p-values to the statistic T (weighted where ``across`` takes weights)."""
        if self.across == "fisher":
            return -2.0 * (np.minimum(log_p, 0.0) * self.weights_).sum(axis=1)
        if self.across == "cauchy":
            w = self.weights_ / self.weights_.sum()
            return (_cauchy_terms(log_p) * w).sum(axis=1)
        return across_statistic(log_p, self.across)

    def statistic(self, stats: Stats, predicted: np.ndarray, extra: Extra = None) -> np.ndarray:
        return self.combine(self.test_log_pvalues(stats, predicted, extra))

    def _evaluate(self, stats: Stats, predicted: np.ndarray, extra: Extra):
        if getattr(self, "calibrator_", None) is None:
            raise RuntimeError("call calibrate() on held-out ID data before scoring")
        log_p = self.test_log_pvalues(stats, predicted, extra)
        t = self.combine(log_p)
        return log_p, t, self.calibrator_.pvalues(t, predicted)


    def naive_pvalues(self, stats: Stats, predicted: np.ndarray, extra: Extra = None
                      ) -> np.ndarray:
        """The across-group combiner's textbook p-value (unweighted): NOT valid, for contrast."""
        log_p = self.test_log_pvalues(stats, predicted, extra)
        return across_naive_pvalue(across_statistic(log_p, self.across), self.across,
                                   log_p.shape[1])

    def explain(self, stats: Stats, predicted: np.ndarray, alpha: float = 0.05,
                extra: Extra = None) -> Explanation:
        log_p, t, p = self._evaluate(stats, predicted, extra)
        return Explanation(pvalue=p, decision=p <= alpha, predicted=np.asarray(predicted),
                           statistic=t, tests=self.test_names, test_pvalues=np.exp(log_p),
                           shares=evidence_shares(log_p * self.weights_), alpha=alpha)

    def _check_fitted(self) -> None:
        if not hasattr(self, "plan_"):
            raise RuntimeError("call fit() first")


def _cauchy_terms(log_p: np.ndarray) -> np.ndarray:
    """Per-group ``tan((1/2 - p) pi)`` with the cap of the unweighted Cauchy combiner."""
    p = np.minimum(np.exp(np.maximum(np.minimum(log_p, 0.0), _LOG_TINY)), CAUCHY_MAX_P)
    return 1.0 / np.tan(np.pi * p)


class _Rows:
    """Row subsets of (stats, predicted, labels, extra) in the members' argument order."""

    def __init__(self, stats: Stats, predicted: np.ndarray, labels: np.ndarray | None,
                 extra: Extra) -> None:
        self.stats, self.predicted, self.labels, self.extra = stats, predicted, labels, extra

    def __call__(self, rows: np.ndarray, labels: bool = True):
        stats = {layer: {r: np.asarray(a)[rows] for r, a in reds.items()}
                 for layer, reds in self.stats.items()}
        extra = None if self.extra is None else {k: np.asarray(v)[rows]
                                                 for k, v in self.extra.items()}
        lab = self.labels[rows] if labels and self.labels is not None else None
        return (stats, self.predicted[rows], lab, extra) if labels else (
            stats, self.predicted[rows], extra)

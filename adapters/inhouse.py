"""Adapter for the lab's in-house detectors (``benchmark.inhouse``, a standalone package).

Both read the cached per-layer channel statistics (``Consumes.LAYER_STATS``). They need a
calibration split disjoint from the fit split: the runner passes it as ``fit(..., calibration=)``;
without one, a seeded 20 % of the fit split is held out (with a warning, since that shrinks the
reference sample and is not how the method is meant to be run).

Names and params (anything else is rejected with the valid list):

* ``Statistical``: reductions, within, across, per_class, class_source, layers, layer_subset,
  calibrate_per_class, min_class_reference, min_class_calibration, extra_evidence (names:
  ``knn``, ``energy``, ``rmd``, ``openpcs``), knn_k, knn_max_bank, energy_temperature,
  evidence_holdout, calibration_fraction, seed.
* ``Grouped``: groups (``{group: [member, ...]}``, members ``layers``, ``knn``, ``rmd``,
  ``openpcs``, ``energy``), within_group, across, weights, layer_params, evidence_params,
  reference, reference_fraction, tail, calibrate_per_class, min_class_calibration,
  calibration_fraction, seed. Without the ``layers`` member it reads features/logits only.
* ``MaSF``: per_class, layers (the published method: chi-square reading, no calibration).
* ``NeuralFP``: reductions, layers, hidden, bottleneck, epochs, batch_size, lr,
  max_fit_samples, calibration_fraction, seed.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from adapters.base import Consumes, DetectorError, LayerStatsDetector, LibraryInfo
from benchmark.inhouse import (
    Explanation,
    GroupedDetector,
    MaSF,
    NeuralFP,
    StatisticalDetector,
    make_evidence,
)
from benchmark.representations import Network, Representations

LIBRARY_INFO = LibraryInfo(
    name="inhouse",
    title="in-house",
    package="benchmark.inhouse",
    distribution=None,
    pinned=None,
    install_hint="it ships with ood-bench; reinstall with pip install -e .",
    workarounds={},  # numpy/torch only: nothing device-specific
    methods={"Statistical": "inhouse_statistical", "Grouped": "inhouse_grouped",
             "MaSF": "masf", "NeuralFP": "neuralfp"},
    analyses="benchmark.studies.inhouse_analysis",
    note="ships inside ood-bench (no own package)",
)
ADAPTER_PARAMS = {"calibration_fraction"}
STATISTICAL_PARAMS = {
    "reductions",
    "within",
    "across",
    "per_class",
    "class_source",
    "layers",
    "layer_subset",
    "calibrate_per_class",
    "min_class_reference",
    "min_class_calibration",
    "extra_evidence",
    "knn_k",
    "knn_max_bank",
    "energy_temperature",
    "evidence_holdout",
    "seed",
}
NEURALFP_PARAMS = {
    "reductions",
    "layers",
    "hidden",
    "bottleneck",
    "epochs",
    "batch_size",
    "lr",
    "max_fit_samples",
    "seed",
}
GROUPED_PARAMS = {
    "groups",
    "within_group",
    "across",
    "weights",
    "layer_params",
    "evidence_params",
    "reference",
    "reference_fraction",
    "tail",
    "calibrate_per_class",
    "min_class_calibration",
    "seed",
}
MASF_PARAMS = {"per_class", "layers"}
EVIDENCE_SOURCES = {"features", "logits"}


def extra_arrays(rep: Representations) -> dict[str, np.ndarray]:
    """The arrays besides layer statistics that the package's evidences read."""
    return {"features": rep.features, "logits": rep.logits}


def _lists(params: dict[str, Any]) -> dict[str, Any]:
    """Hydra hands ListConfig-like sequences; the package wants plain tuples."""
    out = dict(params)
    for key in ("reductions", "layers"):
        if out.get(key) is not None:
            out[key] = tuple(out[key])
    return out


class InhouseDetector(LayerStatsDetector):
    """Shared fit protocol: fit split -> fit, calibration split -> calibrate."""

    library = LIBRARY_INFO.name
    valid_params: set[str] = set()

    def __init__(self, name: str, **params: Any) -> None:
        unknown = sorted(set(params) - self.valid_params - ADAPTER_PARAMS)
        if unknown:
            valid = sorted(self.valid_params | ADAPTER_PARAMS)
            raise DetectorError(f"inhouse {name}: unknown params {unknown}; valid: {valid}")
        super().__init__(name, **params)
        self.calibration_fraction = float(params.get("calibration_fraction", 0.2))
        self.seed = int(params.get("seed", 0))

    def _splits(
        self, id_fit: Representations, calibration: Representations | None
    ) -> tuple[Representations, Representations]:
        if calibration is not None and len(calibration):
            return id_fit, calibration
        n = len(id_fit)
        n_cal = round(self.calibration_fraction * n)
        if not 0 < n_cal < n:
            raise DetectorError(f"inhouse {self.name}: cannot hold out a calibration split of {n}")
        warnings.warn(
            f"inhouse {self.name}: no calibration split given; holding out a seeded "
            f"{self.calibration_fraction:.0%} of the fit split ({n_cal} of {n}, seed {self.seed}) "
            "for conformal calibration",
            stacklevel=3,
        )
        perm = np.random.default_rng(self.seed).permutation(n)
        return id_fit.subset(np.sort(perm[n_cal:])), id_fit.subset(np.sort(perm[:n_cal]))

    def _check(self, rep: Representations) -> None:
        if self.consumes == Consumes.LAYER_STATS and not rep.layer_stats:
            raise DetectorError(f"inhouse {self.name}: the split has no layer statistics")


class InhouseConformal(InhouseDetector):
    """The package's detectors with a conformally calibrated statistic (``self.detector``:
    ``fit(stats, predicted, labels, extra)``, ``calibrate``, ``score``, ``pvalues``,
    ``explain``): one fit protocol, one set of scoring methods."""

    def fit(
        self,
        id_fit: Representations,
        network: Network | None = None,
        calibration: Representations | None = None,
    ) -> InhouseConformal:
        self.fitted_ = False  # a failed refit leaves nothing usable behind
        self._check(id_fit)
        fit, cal = self._splits(id_fit, calibration)
        self.detector.fit(fit.layer_stats, fit.predictions, fit.labels, extra=extra_arrays(fit))
        self.detector.calibrate(cal.layer_stats, cal.predictions, extra=extra_arrays(cal))
        self.fitted_ = True
        return self

    def score(self, split: Representations, network: Network | None = None) -> np.ndarray:
        """``-log p`` of the conformal p-value, higher = more OOD."""
        self.check_fitted()
        self._check(split)
        return self.detector.score(split.layer_stats, split.predictions, extra=extra_arrays(split))

    def pvalues(self, split: Representations) -> np.ndarray:
        self.check_fitted()
        return self.detector.pvalues(split.layer_stats, split.predictions,
                                     extra=extra_arrays(split))

    def level_threshold(self, alpha: float) -> float:
        """``p <= alpha`` (conformal: at most ``alpha`` of ID flagged) is ``-log p >= -log
        alpha``."""
        return float(-np.log(alpha))

    def decide(self, split: Representations, alpha: float) -> np.ndarray:
        return self.pvalues(split) <= alpha

    def explain(self, split: Representations, alpha: float = 0.05) -> Explanation:
        self.check_fitted()
        return self.detector.explain(
            split.layer_stats, split.predictions, alpha=alpha, extra=extra_arrays(split)
        )


class InhouseStatistical(InhouseConformal):
    """``StatisticalDetector``: conformal p-values from per-channel rank tests."""

    valid_params = STATISTICAL_PARAMS

    def __init__(self, name: str = "Statistical", **params: Any) -> None:
        super().__init__(name, **params)
        p = _lists(params)
        evidence = [self._evidence(e, p) for e in p.pop("extra_evidence", None) or []]
        for key in ("knn_k", "knn_max_bank", "energy_temperature", "calibration_fraction"):
            p.pop(key, None)
        try:
            self.detector = StatisticalDetector(**p, extra_evidence=evidence)
        except TypeError as exc:
            raise DetectorError(f"inhouse {name}: {exc}") from exc

    @staticmethod
    def _evidence(spec: Any, p: dict[str, Any]) -> Any:
        name = spec if isinstance(spec, str) else dict(spec).get("name")
        kwargs = (
            {} if isinstance(spec, str) else {k: v for k, v in dict(spec).items() if k != "name"}
        )
        if name == "knn":
            kwargs.setdefault("k", int(p.get("knn_k", 50)))
            kwargs.setdefault("max_bank", p.get("knn_max_bank"))
        elif name == "energy":
            kwargs.setdefault("temperature", float(p.get("energy_temperature", 1.0)))
        try:
            ev = make_evidence(str(name), **kwargs)
        except (ValueError, TypeError) as exc:
            raise DetectorError(f"inhouse Statistical: extra_evidence {spec!r}: {exc}") from exc
        if ev.source not in EVIDENCE_SOURCES:
            raise DetectorError(f"evidence source {ev.source!r} not in {sorted(EVIDENCE_SOURCES)}")
        return ev


def _plain(value: Any) -> Any:
    """Hydra's DictConfig/ListConfig (or plain containers) as plain dicts and lists."""
    if hasattr(value, "items"):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)) or type(value).__name__ == "ListConfig":
        return [_plain(v) for v in value]
    return value


class InhouseGrouped(InhouseConformal):
    """``GroupedDetector``: evidence groups, each one p-value, combined and calibrated again."""

    valid_params = GROUPED_PARAMS

    def __init__(self, name: str = "Grouped", **params: Any) -> None:
        super().__init__(name, **params)
        p = {k: _plain(v) for k, v in params.items() if k != "calibration_fraction"}
        if p.get("layer_params"):
            p["layer_params"] = _lists(p["layer_params"])
        try:
            self.detector = GroupedDetector(**p)
            plan = self.detector._plan()  # bad groups, combiners, weights: an error now
        except (TypeError, ValueError, KeyError) as exc:
            raise DetectorError(f"inhouse {name}: {exc}") from exc
        sources = {getattr(getattr(m, "evidence", None), "source", "layer_stats")
                   for ms in plan.values() for m in ms}  # the layers member reads layer stats
        if "layer_stats" not in sources:
            self.consumes = Consumes.LOGITS if sources == {"logits"} else Consumes.FEATURES

    def fit_report(self) -> dict[str, Any]:
        """Which split does what (the manifest records it)."""
        return {"split_roles": self.detector.split_roles()} if self.fitted_ else {}


class InhouseMaSF(InhouseDetector):
    """``MaSF`` as published: fit data only, chi-square p-values (no level guarantee)."""

    valid_params = MASF_PARAMS

    def __init__(self, name: str = "MaSF", **params: Any) -> None:
        super().__init__(name, **params)
        p = _lists(params)
        p.pop("calibration_fraction", None)
        try:
            self.detector = MaSF(**p)
        except TypeError as exc:
            raise DetectorError(f"inhouse {name}: {exc}") from exc

    def fit(self, id_fit: Representations, network: Network | None = None,
            calibration: Representations | None = None) -> InhouseMaSF:
        """Fits on the fit split alone: the calibration split is not used, as published."""
        self.fitted_ = False
        self._check(id_fit)
        self.detector.fit(id_fit.layer_stats, id_fit.predictions, id_fit.labels)
        self.fitted_ = True
        return self

    def score(self, split: Representations, network: Network | None = None) -> np.ndarray:
        """``-log`` of the chi-square p-value of Fisher's statistic, higher = more OOD."""
        self.check_fitted()
        self._check(split)
        return self.detector.score(split.layer_stats, split.predictions)

    def pvalues(self, split: Representations) -> np.ndarray:
        self.check_fitted()
        return self.detector.pvalues(split.layer_stats, split.predictions)

    def level_threshold(self, alpha: float) -> float:
        return float(-np.log(alpha))

    def decide(self, split: Representations, alpha: float) -> np.ndarray:
        return self.pvalues(split) <= alpha


class InhouseNeuralFP(InhouseDetector):
    """``NeuralFP``: per-layer autoencoders, two-sided conformal error bands."""

    valid_params = NEURALFP_PARAMS

    def __init__(self, name: str = "NeuralFP", **params: Any) -> None:
        super().__init__(name, **params)
        p = _lists(params)
        p.pop("calibration_fraction", None)
        try:
            self.detector = NeuralFP(**p)
        except TypeError as exc:
            raise DetectorError(f"inhouse {name}: {exc}") from exc

    def fit(
        self,
        id_fit: Representations,
        network: Network | None = None,
        calibration: Representations | None = None,
    ) -> InhouseNeuralFP:
        self.fitted_ = False
        self._check(id_fit)
        fit, cal = self._splits(id_fit, calibration)
        self.detector.fit(fit.layer_stats)
        self.detector.calibrate(cal.layer_stats)
        self.fitted_ = True
        return self

    def score(self, split: Representations, network: Network | None = None) -> np.ndarray:
        """``-log`` of the smallest per-layer two-sided p-value, higher = more OOD."""
        self.check_fitted()
        self._check(split)
        return self.detector.score(split.layer_stats)

    def pvalues(self, split: Representations) -> np.ndarray:
        self.check_fitted()
        return self.detector.pvalues(split.layer_stats)

    def decide(self, split: Representations, alpha: float) -> np.ndarray:
        return self.detector.decide(split.layer_stats, alpha)


DETECTORS: dict[str, type[InhouseDetector]] = {
    "Statistical": InhouseStatistical,
    "Grouped": InhouseGrouped,
    "MaSF": InhouseMaSF,
    "NeuralFP": InhouseNeuralFP,
}


def available() -> list[str]:
    return sorted(DETECTORS)


def build(name: str, params: dict[str, Any] | None = None) -> InhouseDetector:
    if name not in DETECTORS:
        raise DetectorError(f"unknown inhouse detector {name!r}; valid: {', '.join(available())}")
    return DETECTORS[name](name, **dict(params or {}))

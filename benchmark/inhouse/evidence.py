"""Extra evidence: any per-input score entering the combination as one more test.

An evidence is a small object with ``name``, ``source`` (which input array it reads, e.g.
``"features"`` or ``"logits"``), ``fit(x)`` and ``score(x)`` (higher = more OOD). The detector turns
its score into a conformal p-value against reference scores from held-out ID inputs, and
combines that p-value with the layer p-values. Validity is kept because the final p-value is
calibrated again on the calibration split, whatever the statistic contains.
"""

from __future__ import annotations

import copy
from typing import Protocol, runtime_checkable

import numpy as np

from .feature_evidence import LayerMahalanobisEvidence, OpenPCSEvidence, RMDEvidence
from .knn import KNNEvidence
from .ranks import upper_tail_pvalues


@runtime_checkable
class Evidence(Protocol):
    """What the detector needs from an extra score."""

    name: str
    source: str

    def fit(self, x: np.ndarray) -> Evidence: ...

    def score(self, x: np.ndarray) -> np.ndarray: ...


class EnergyEvidence:
    """Energy score ``-T logsumexp(logits / T)`` (Liu et al. 2020); needs no fitting."""

    def __init__(self, temperature: float = 1.0, source: str = "logits") -> None:
        self.temperature = temperature
        self.source = source
        self.name = "energy"

    def fit(self, x: np.ndarray) -> EnergyEvidence:
        return self

    def score(self, x: np.ndarray) -> np.ndarray:
        z = np.asarray(x, dtype=np.float64) / self.temperature
        top = z.max(axis=1)
        return -self.temperature * (top + np.log(np.exp(z - top[:, None]).sum(axis=1)))


class CalibratedEvidence:
    """An evidence plus sorted reference scores: gives its one-sided conformal log p-value."""

    def __init__(self, evidence: Evidence) -> None:
        if not isinstance(evidence, Evidence):
            raise TypeError(f"{evidence!r} lacks name/source/fit/score")
        self.evidence = copy.deepcopy(evidence)  # the caller's object stays unfitted

    @property
    def name(self) -> str:
        return self.evidence.name

    @property
    def source(self) -> str:
        return self.evidence.source

    def fit(self, x_fit: np.ndarray, x_reference: np.ndarray,
            classes: np.ndarray | None = None) -> CalibratedEvidence:
        """Fit on ``x_fit`` (with ``classes`` for class-aware evidences); reference scores from
        disjoint ID inputs ``x_reference``."""
        if len(x_reference) == 0:
            raise ValueError(f"evidence {self.name!r} needs held-out reference inputs")
        if getattr(self.evidence, "needs_classes", False):
            self.evidence.fit(x_fit, classes)
        else:
            self.evidence.fit(x_fit)
        self.reference_ = np.sort(np.asarray(self.evidence.score(x_reference), dtype=np.float64))
        return self

    def log_pvalues(self, x: np.ndarray) -> np.ndarray:
        return np.log(upper_tail_pvalues(self.reference_, self.evidence.score(x)))


def pick_input(extra: dict[str, np.ndarray] | None, source: str, name: str) -> np.ndarray:
    if not extra or source not in extra:
        raise KeyError(f"evidence {name!r} needs input {source!r}; pass extra={{{source!r}: ...}}")
    return extra[source]


EVIDENCES = {"knn": KNNEvidence, "energy": EnergyEvidence, "rmd": RMDEvidence,
             "openpcs": OpenPCSEvidence, "layer_mahalanobis": LayerMahalanobisEvidence}


def make_evidence(name: str, **params: object) -> Evidence:
    """Build a named evidence (``knn``, ``energy``, ``rmd``, ``openpcs``) with its parameters."""
    if name not in EVIDENCES:
        raise ValueError(f"unknown evidence {name!r}; valid: {', '.join(sorted(EVIDENCES))}")
    return EVIDENCES[name](**params)  # type: ignore[arg-type]

"""The one detector interface, scikit-learn style, and the record of facts about a library.

Construct with parameters, ``fit`` on the ID fit split (and, for detectors that calibrate, the
held-out calibration split), ``score`` any split. Scores are **higher = more OOD**. What a
detector consumes is visible in its type (as in pytorch-ood's typed bases) and set on the
instance at build time: the runner extracts and caches exactly those representations, and only
detectors that consume ``MODEL`` run the network themselves.

Every adapter module offers ``LIBRARY_INFO`` (a :class:`LibraryInfo`), ``available()`` and
``build(name, params)``; :mod:`adapters.registry` serves them, and no other part of the harness
keeps facts about a library.
"""

from __future__ import annotations

import copy
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from torch import nn

from benchmark.representations import Network, Representations


class Consumes(str, Enum):
    """The representation a detector reads."""

    LOGITS = "logits"
    FEATURES = "features"
    FEATURE_MAPS = "feature_maps"
    LAYER_STATS = "layer_stats"
    MODEL = "model"


class DetectorError(RuntimeError):
    """A detector could not run for a reason worth showing the user verbatim."""


@dataclass(frozen=True)
class LibraryInfo:
    """Facts about one detector library, kept once, next to its adapter.

    ``methods`` maps each detector name of the library to a canonical method id shared across
    libraries ("energy" for pytorch-ood's ``EnergyBased`` and OpenOOD's ``ebo``): "the same
    method in two libraries" is this data. ``workarounds`` maps a detector name (or ``"*"``:
    all) to what it takes to run it on a CPU-only machine. ``analyses`` names a module whose
    ``analyse`` the runner calls with each fitted detector of this library after a run (see
    :mod:`benchmark.runner.analyses`). ``known_deviations`` maps a detector to the contract
    checks (:mod:`adapters.checks`) it cannot pass by the nature of its method, with why.
    ``distribution`` is None for code that ships with ood-bench (its source then versions the
    score cache). ``import_setup`` (``"module:function"``) is what the adapter runs before it
    imports its library (a shim for a broken dependency); the ease study runs it too, so that
    it measures the import the harness really makes.
    """

    name: str
    title: str
    package: str
    distribution: str | None
    pinned: str | None
    install_hint: str
    install_doc: str | None = None
    workarounds: Mapping[str, Sequence[str]] = field(default_factory=dict)
    left_out: Mapping[str, str] = field(default_factory=dict)
    methods: Mapping[str, str] = field(default_factory=dict)
    analyses: str | None = None
    known_deviations: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    note: str = ""
    import_setup: str | None = None

    def method(self, detector: str) -> str:
        """The canonical method id of one of this library's detectors (its own name if none)."""
        return self.methods.get(detector, detector)


def frozen_copy(module: nn.Module, device: torch.device | str) -> nn.Module:
    """A private, eval-mode, gradient-free copy of a model the harness shares between detectors
    (libraries hook, mutate or call ``backward`` on what they are handed; input gradients still
    flow through the copy)."""
    out = copy.deepcopy(module).eval().to(device)
    for p in out.parameters():
        p.requires_grad_(False)
    return out


LabelNeed = Literal["unused", "used", "every class", "correct every class"]


def check_labels(who: str, split: Representations, num_classes: int, need: LabelNeed) -> None:
    """Raise a :class:`DetectorError` naming what is missing when the fit split's labels cannot
    support a detector: ``used`` (labelled rows inside 0..C-1), ``every class`` (and every
    class present), ``correct every class`` (and one correctly classified row per class).
    Rows with a label < 0 are ignored."""
    if need == "unused":
        return
    labels = np.asarray(split.labels)
    known = labels[labels >= 0]
    if known.size == 0:
        raise DetectorError(f"{who} needs labelled ID samples in the fit split; none")
    present = set(np.unique(known).tolist())
    outside = sorted(present - set(range(num_classes)))
    if outside:
        raise DetectorError(f"{who}: fit labels {outside} are outside the model's classes "
                            f"0..{num_classes - 1}")
    if need == "used":
        return
    missing = sorted(set(range(num_classes)) - present)
    if missing:
        raise DetectorError(f"{who} needs every class in the fit split; classes missing: "
                            f"{missing}")
    if need == "correct every class":
        correct = labels[(labels >= 0) & (split.predictions == labels)]
        missing = sorted(set(range(num_classes)) - set(correct.tolist()))
        if missing:
            raise DetectorError(f"{who} needs at least one correctly classified fit row of "
                                f"every class; none for classes {missing}")


class Detector(ABC):
    """Base of every adapter. Subclasses set ``library`` and pick a typed base below."""

    library: ClassVar[str] = "unknown"
    default_consumes: ClassVar[Consumes]

    def __init__(self, name: str, **params: Any) -> None:
        self.name = name
        self.params = dict(params)
        self.consumes: Consumes = self.default_consumes
        self.fitted_ = False

    def get_params(self) -> dict[str, Any]:
        return {"name": self.name, **self.params}

    @abstractmethod
    def fit(self, id_fit: Representations, network: Network,
            calibration: Representations | None = None) -> Detector:
        """Learn whatever the method needs from ID data; returns ``self``.

        ``calibration`` is the held-out ID split (never used to train the classifier nor to
        fit); detectors that calibrate or tune on held-out data use it, the others ignore it.
        A refit starts from fresh state.
        """

    @abstractmethod
    def score(self, split: Representations, network: Network) -> np.ndarray:
        """One float per row of ``split``; higher = more OOD. Before ``fit``: DetectorError."""

    def level_threshold(self, alpha: float) -> float | None:
        """The score at and above which this detector itself flags an input at nominal
        false-alarm level ``alpha`` (a calibrated or parametric p-value rule), or None when it
        claims no level. Read from the parameters only (no fit needed): the runner reports the
        realised ID false-alarm rate at that threshold beside the ranking metrics."""
        return None

    def check_fitted(self) -> None:
        """The harness error for scoring an unfitted detector."""
        if not self.fitted_:
            raise DetectorError(f"{self.library} {self.name}: call fit() before score()")

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params.items())
        return f"{type(self).__name__}({self.name!r}{', ' if args else ''}{args})"


class LogitDetector(Detector):
    default_consumes = Consumes.LOGITS


class FeatureDetector(Detector):
    """Reads penultimate features (and possibly the final layer's weights via ``network.fc``)."""

    default_consumes = Consumes.FEATURES


class FeatureMapDetector(Detector):
    default_consumes = Consumes.FEATURE_MAPS


class LayerStatsDetector(Detector):
    default_consumes = Consumes.LAYER_STATS


class ModelDetector(Detector):
    """Needs the live model on inputs (input perturbation, gradients, dropout sampling)."""

    default_consumes = Consumes.MODEL

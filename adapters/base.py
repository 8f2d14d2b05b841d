"""The one detector interface, scikit-learn style.

Construct with parameters, ``fit`` on the ID fit split, ``score`` any split. Scores are
**higher = more OOD**. What a detector consumes is visible in its type (as in pytorch-ood's
typed bases): the runner extracts and caches exactly those representations, and only
``ModelDetector`` subclasses run the network themselves.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from enum import Enum
from typing import Any, ClassVar

import numpy as np

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


class Detector(ABC):
    """Base of every adapter. Subclasses set ``library`` and pick a typed base below."""

    library: ClassVar[str] = "unknown"
    consumes: ClassVar[Consumes]

    def __init__(self, name: str, **params: Any) -> None:
        self.name = name
        self.params = dict(params)
        self.fitted_ = False

    def get_params(self) -> dict[str, Any]:
        return {"name": self.name, **self.params}

    @abstractmethod
    def fit(self, id_fit: Representations, network: Network) -> Detector:
        """Learn whatever the method needs from ID data; returns ``self``."""

    @abstractmethod
    def score(self, split: Representations, network: Network) -> np.ndarray:
        """One float per row of ``split``; higher = more OOD."""

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params.items())
        return f"{type(self).__name__}({self.name!r}{', ' if args else ''}{args})"


class LogitDetector(Detector):
    consumes = Consumes.LOGITS


class FeatureDetector(Detector):
    """Reads penultimate features (and possibly the final layer's weights via ``network.fc``)."""

    consumes = Consumes.FEATURES


class FeatureMapDetector(Detector):
    consumes = Consumes.FEATURE_MAPS


class LayerStatsDetector(Detector):
    consumes = Consumes.LAYER_STATS


class ModelDetector(Detector):
    """Needs the live model on inputs (input perturbation, gradients, dropout sampling)."""

    consumes = Consumes.MODEL

"""What each Oodeel detector is, reads and needs (importable without Oodeel).

``kind`` says which representation a detector can replay from the harness's cache:

* ``logits``: Oodeel's logit methods (MLS/MSP, Energy, Entropy, GEN) read the head's output
  only; with a ReAct/ASH/SCALE flag they also read the penultimate features the head consumes
  (Oodeel applies the flags as a pre-hook on the head layer), so they replay ``features``.
* ``layers``: feature-based methods (DKNN, Mahalanobis, RMDS, SHE, VIM) read the outputs of the
  layers they are given, average-pooled over space (Oodeel's default post-processing): the
  penultimate features, or the cached ``layer_stats[layer]["mean"]`` of monitored layers,
  which is that same average pool. They need the live model when ``eps > 0`` (Oodeel's
  Mahalanobis, RMDS and SHE default to an ODIN-style input perturbation of 0.0014).
* ``model``: ODIN (input perturbation) and Gram (Gram matrices of raw layer maps) always run
  the live model.

``flags`` are constructor parameters fixed by the harness name (ReAct/ASH/SCALE are Oodeel's
``use_react``/``use_ash``/``use_scale`` on Energy, as in their papers); ``labels`` is what the
fit split must carry (:func:`adapters.base.check_labels`); ``layers`` the default layers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from adapters.base import LabelNeed


@dataclass(frozen=True)
class Spec:
    cls: str
    kind: Literal["logits", "layers", "model"]
    method: str
    flags: dict[str, Any] = field(default_factory=dict)
    labels: LabelNeed = "unused"
    layers: str = "penultimate"


SPECS: dict[str, Spec] = {
    "MLS": Spec("MLS", "logits", "maxlogit"),
    "MSP": Spec("MLS", "logits", "msp", flags={"output_activation": "softmax"}),
    "Energy": Spec("Energy", "logits", "energy"),
    "Entropy": Spec("Entropy", "logits", "entropy"),
    "GEN": Spec("GEN", "logits", "gen"),
    "ReAct": Spec("Energy", "logits", "react", flags={"use_react": True}),
    "ASH": Spec("Energy", "logits", "ash", flags={"use_ash": True}),
    "SCALE": Spec("Energy", "logits", "scale", flags={"use_scale": True}),
    "ODIN": Spec("ODIN", "model", "odin"),
    "DKNN": Spec("DKNN", "layers", "knn"),
    "Mahalanobis": Spec("Mahalanobis", "layers", "mahalanobis", labels="every class"),
    "RMDS": Spec("RMDS", "layers", "rmd", labels="every class"),
    "SHE": Spec("SHE", "layers", "she", labels="correct every class"),
    "VIM": Spec("VIM", "layers", "vim"),
    "Gram": Spec("Gram", "model", "gram", layers="monitored"),
}

# flags that make a logit method read the penultimate features (pre-hooks on the head)
FEATURE_FLAGS = ("use_react", "use_ash", "use_scale")
AGGREGATORS = {"fisher": "FisherAggregator", "mean": "MeanNormalizedAggregator",
               "std": "StdNormalizedAggregator"}

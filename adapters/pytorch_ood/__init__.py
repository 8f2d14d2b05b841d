"""pytorch-ood 0.4.0 behind the harness interface: the facts here, the detectors in ``.adapter``.

Importing this package does not import pytorch-ood; building a detector does.
"""

from __future__ import annotations

from typing import Any

from adapters.base import Detector, LibraryInfo

# pytorch-ood class -> canonical method id, which is also the short name of its config
# (configs/detector/pytorch_ood/<id>.yaml, detector key pytorch_ood_<id>)
METHODS = {
    "MaxSoftmax": "msp", "MaxLogit": "maxlogit", "EnergyBased": "energy", "Entropy": "entropy",
    "GEN": "gen", "WeightedEBO": "webo", "TemperatureScaling": "tempscale", "KLMatching": "klm",
    "OpenMax": "openmax", "Mahalanobis": "mahalanobis", "RMD": "rmd", "GMM": "gmm",
    "KNN": "knn", "ViM": "vim", "DICE": "dice", "SHE": "she", "fDBD": "fdbd", "NCI": "nci",
    "NNGuide": "nnguide", "PNML": "pnml", "LTS": "lts", "ReAct": "react", "ASH": "ash",
    "SCALE": "scale", "VRA": "vra", "RankFeat": "rankfeat", "MultiMahalanobis": "mmahalanobis",
    "Gram": "gram", "MahalanobisODIN": "mahalanobis_odin", "ODIN": "odin",
    "GradNorm": "gradnorm", "GradUncertainty": "graduncertainty", "NACUE": "nacue",
    "MCD": "mcd",
}
LEFT_OUT = {
    "MCM": "needs text embeddings of class prompts from a vision-language model (e.g. CLIP); "
    "the benchmarked classifiers have no text encoder",
}
LIBRARY_INFO = LibraryInfo(
    name="pytorch_ood",
    title="pytorch-ood",
    package="pytorch_ood",
    distribution="pytorch-ood",
    pinned="0.4.0",
    install_hint="pip install 'pytorch-ood==0.4.0'",
    # every supported class runs on CPU unmodified; the traps the adapter handles (OpenMax
    # anchors, fresh TemperatureScaling, no_grad, deep copies) apply on any device
    workarounds={},
    left_out=LEFT_OUT,
    methods=METHODS,
    known_deviations={
        "MCD": {"batch_and_order": "Monte-Carlo dropout: a sample's score averages over the "
                "dropout masks drawn for its batch, so another batching draws other masks "
                "(seeded: the same batching gives the same scores)"},
    },
)


def available() -> list[str]:
    """pytorch-ood class names this adapter supports (MCM is left out, see LEFT_OUT)."""
    return sorted(METHODS)


def build(name: str, params: dict[str, Any] | None = None) -> Detector:
    from adapters.pytorch_ood.adapter import build as build_detector

    return build_detector(name, params)

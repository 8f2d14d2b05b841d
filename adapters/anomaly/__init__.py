"""The anomaly-detection track's detectors (the lab's training-data integrity study, FCDD):
the facts here, the detectors in ``.adapter``, the networks in ``.models``.

OCSVM and LOF are scikit-learn's, on the backbone's features; AE, DAE, VAE and FCDD are
implemented here (torch), trained on the fit split's pixels. Importing this package imports
neither scikit-learn nor torch models; building a detector does.
"""

from __future__ import annotations

from typing import Any

from adapters.base import Detector, LibraryInfo

METHODS = {"OCSVM": "ocsvm", "LOF": "lof", "AE": "ae", "DAE": "dae", "VAE": "vae",
           "FCDD": "fcdd"}
LIBRARY_INFO = LibraryInfo(
    name="anomaly",
    title="anomaly baselines",
    package="adapters.anomaly",
    distribution=None,
    pinned=None,
    install_hint="it ships with ood-bench (scikit-learn is a core dependency); reinstall with "
                 "pip install -e .",
    workarounds={},
    methods=METHODS,
    analyses="benchmark.studies.anomaly_heatmaps",
    note="OCSVM and LOF from scikit-learn on backbone features; AE, DAE, VAE and FCDD "
         "(Liznerski et al., ICLR 2021; confetti anomalies as its outlier exposure, CIFAR-100 "
         "being unavailable offline) implemented in adapters/anomaly/models.py on pixels",
)


def available() -> list[str]:
    return sorted(METHODS)


def build(name: str, params: dict[str, Any] | None = None) -> Detector:
    from adapters.anomaly.adapter import build as build_detector

    return build_detector(name, params)

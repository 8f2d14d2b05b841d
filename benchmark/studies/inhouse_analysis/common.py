"""What every in-house analysis reads from a fitted detector and a run's splits."""

from __future__ import annotations

from typing import Any

import numpy as np

from adapters.inhouse import extra_arrays
from benchmark.representations import Representations
from benchmark.results import ID_TEST, OOD_PREFIX

DECISION_ALPHAS = (0.01, 0.05, 0.1)


def inner(adapter: Any) -> Any:
    """The package's detector behind the adapter."""
    return adapter.detector


def has_statistic(adapter: Any) -> bool:
    """Detectors with a statistic T calibrated conformally (Statistical, Grouped)."""
    d = inner(adapter)
    return hasattr(d, "statistic") and hasattr(d, "calibration_statistic_")


def statistic(adapter: Any, rep: Representations) -> np.ndarray:
    return inner(adapter).statistic(rep.layer_stats, rep.predictions, extra_arrays(rep))


def calibration(adapter: Any) -> tuple[np.ndarray, np.ndarray]:
    """The statistics and predicted classes of the inputs the final p-value is calibrated on."""
    d = inner(adapter)
    return np.asarray(d.calibration_statistic_), np.asarray(d.calibration_classes_)


def ood_sets(reps: dict[str, Representations]) -> dict[str, Representations]:
    return {k.removeprefix(OOD_PREFIX): r for k, r in reps.items() if k.startswith(OOD_PREFIX)}


def dataset_of(rep: Representations) -> str:
    """The dataset a split was drawn from (a shifted copy is named ``<dataset>-<shift>``)."""
    return (rep.name or "").split("/")[0].split("-")[0]


def shifted_sets(reps: dict[str, Representations]) -> dict[str, Representations]:
    """The ID test set and the OOD sets drawn from the ID dataset (covariate shifts: their
    labels are ID classes, so the classifier can be right or wrong on them)."""
    id_test = reps[ID_TEST]
    out = {"ID test": id_test}
    for name, rep in ood_sets(reps).items():
        if dataset_of(rep) and dataset_of(rep) == dataset_of(id_test):
            out[name] = rep
    return out

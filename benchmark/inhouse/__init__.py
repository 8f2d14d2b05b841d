"""The lab's post-hoc OOD detectors, standalone (numpy, torch, scipy; nothing from ood-bench).

- :class:`StatisticalDetector`: per-channel rank p-values -> Simes within layers -> Fisher
  across layers (+ optional extra evidence such as k-NN) -> conformal p-value (valid false-alarm
  rate on ID data).
- :class:`GroupedDetector`: evidence groups (layer tests; k-NN, relative Mahalanobis, class-wise
  PPCA; energy), each one p-value, combined across groups and calibrated once more.
- :class:`MaSF`: the published ancestor (chi-square reading, no calibration), a baseline.
- :class:`NeuralFP`: per-layer autoencoders with two-sided conformal error bands.
- :func:`extract_layer_stats`: forward-hook extraction of per-channel max/mean statistics.
"""

from .combiners import naive_chi2_pvalue
from .conformal import ConformalCalibrator, benjamini_hochberg
from .diagnostics import (
    calibration_law,
    clopper_pearson,
    exchangeability_test,
    fpr_curve,
    run_split_check,
)
from .evidence import CalibratedEvidence, EnergyEvidence, Evidence, make_evidence
from .explanation import Explanation
from .extraction import LayerStatsExtractor, extract_layer_stats
from .feature_evidence import OpenPCSEvidence, RMDEvidence
from .grouped import GroupedDetector
from .knn import KNNEvidence
from .masf import MaSF
from .neuralfp import NeuralFP
from .ranks import two_sided_pvalues
from .reductions import spatial_max, spatial_mean
from .statistical import StatisticalDetector

__all__ = [
    "CalibratedEvidence",
    "ConformalCalibrator",
    "EnergyEvidence",
    "Evidence",
    "Explanation",
    "GroupedDetector",
    "KNNEvidence",
    "LayerStatsExtractor",
    "MaSF",
    "NeuralFP",
    "OpenPCSEvidence",
    "RMDEvidence",
    "StatisticalDetector",
    "benjamini_hochberg",
    "calibration_law",
    "clopper_pearson",
    "exchangeability_test",
    "extract_layer_stats",
    "fpr_curve",
    "make_evidence",
    "naive_chi2_pvalue",
    "run_split_check",
    "spatial_max",
    "spatial_mean",
    "two_sided_pvalues",
]

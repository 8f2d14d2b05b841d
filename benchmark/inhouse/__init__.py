"""The lab's post-hoc OOD detectors, standalone (numpy, torch, scipy; nothing from ood-bench).

- :class:`StatisticalDetector`: per-channel rank p-values -> Simes within layers -> Fisher
  across layers (+ optional extra evidence such as k-NN) -> conformal p-value (valid false-alarm
  rate on ID data).
- :class:`NeuralFP`: per-layer autoencoders with two-sided conformal error bands.
- :func:`extract_layer_stats`: forward-hook extraction of per-channel max/mean statistics.
"""

from .combiners import naive_chi2_pvalue
from .conformal import ConformalCalibrator, benjamini_hochberg
from .diagnostics import clopper_pearson, fpr_curve
from .evidence import CalibratedEvidence, EnergyEvidence, Evidence, make_evidence
from .explanation import Explanation
from .extraction import LayerStatsExtractor, extract_layer_stats
from .knn import KNNEvidence
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
    "KNNEvidence",
    "LayerStatsExtractor",
    "NeuralFP",
    "StatisticalDetector",
    "benjamini_hochberg",
    "clopper_pearson",
    "extract_layer_stats",
    "fpr_curve",
    "make_evidence",
    "naive_chi2_pvalue",
    "spatial_max",
    "spatial_mean",
    "two_sided_pvalues",
]

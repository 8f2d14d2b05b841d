"""OOD metrics under one convention: scores higher = more OOD, OOD is the positive class.

Definitions follow pytorch-ood 0.4.0 (`OODMetrics`), so numbers are comparable across sources:
- AUROC: trapezoidal area under the ROC curve, one point per unique score (ties enter together).
- AUPR-Out: OOD positive; AUPR-In: ID positive (lower score = more ID); both trapezoidal over
  the precision-recall curve ending at (recall 0, precision 1), not sklearn's average precision.
- FPR@95TPR: fraction of ID samples flagged as OOD at the first threshold where >= 95 % of the
  OOD samples are detected.
- Detection accuracy / precision / recall / F1 at the Youden-optimal threshold (max TPR - FPR),
  flagging OOD when score >= threshold: picked on the test scores themselves (``detection_*``,
  an oracle), or on validation scores and applied to the test ones (``*_at_val``: the
  anomaly track's rule).

The same convention in words is ``benchmark.render.CONVENTION``, stated above every table.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class _Counts:
    """Cumulative (tps, fps) at each unique threshold, thresholds in decreasing order."""

    thresholds: np.ndarray
    tps: np.ndarray
    fps: np.ndarray
    n_pos: int
    n_neg: int


def _counts(scores: np.ndarray, positive: np.ndarray) -> _Counts:
    order = np.argsort(-scores, kind="mergesort")
    s, p = scores[order], positive[order]
    # last index of each run of equal scores: ties enter the curve at once
    last = np.r_[np.nonzero(s[1:] != s[:-1])[0], len(s) - 1]  # == groups tied infinities
    tps = np.cumsum(p)[last]
    fps = (last + 1) - tps
    return _Counts(s[last], tps, fps, int(p.sum()), int(len(p) - p.sum()))


def _area(x: np.ndarray, y: np.ndarray) -> float:
    return float(((x[1:] - x[:-1]) * (y[1:] + y[:-1])).sum() / 2)


def _roc(c: _Counts) -> tuple[np.ndarray, np.ndarray]:
    fpr = np.r_[0.0, c.fps] / c.n_neg
    tpr = np.r_[0.0, c.tps] / c.n_pos
    return fpr, tpr


def _aupr(c: _Counts) -> float:
    precision = c.tps / (c.tps + c.fps)
    recall = c.tps / c.n_pos
    precision = np.r_[precision[::-1], 1.0]
    recall = np.r_[recall[::-1], 0.0]
    return -_area(recall, precision)


def _validate(id_scores: np.ndarray, ood_scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    id_scores = np.asarray(id_scores, dtype=np.float64).ravel()
    ood_scores = np.asarray(ood_scores, dtype=np.float64).ravel()
    if len(id_scores) == 0 or len(ood_scores) == 0:
        raise ValueError("metrics need at least one ID and one OOD score")
    n_bad = int((~np.isfinite(id_scores)).sum() + (~np.isfinite(ood_scores)).sum())
    if np.isnan(id_scores).any() or np.isnan(ood_scores).any():
        raise ValueError(f"scores contain NaN ({n_bad} non-finite values)")
    return id_scores, ood_scores


def compute_metrics(id_scores: np.ndarray, ood_scores: np.ndarray) -> dict[str, float]:
    """All detection metrics for one ID/OOD pair of score vectors (higher = more OOD)."""
    scores, is_ood = _pooled(id_scores, ood_scores)
    out = _counts(scores, is_ood)
    fpr, tpr = _roc(out)
    idx = int(np.searchsorted(tpr, 0.95, side="left"))
    inn = _counts(-scores, ~is_ood)
    threshold = _youden(out, fpr, tpr)
    at = _at_threshold(scores, is_ood, threshold)
    return {
        "auroc": _area(fpr, tpr),
        "aupr_in": _aupr(inn),
        "aupr_out": _aupr(out),
        "fpr95tpr": float(fpr[min(idx, len(fpr) - 1)]),
        "detection_threshold": threshold,
        **{f"detection_{name}": value for name, value in at.items()},
    }


def _at_threshold(scores: np.ndarray, is_ood: np.ndarray, threshold: float) -> dict[str, float]:
    """Accuracy, precision, recall and F1 of flagging ``score >= threshold`` as OOD."""
    flagged = scores >= threshold
    tp = int((flagged & is_ood).sum())
    fp = int((flagged & ~is_ood).sum())
    fn = int((~flagged & is_ood).sum())
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    return {"accuracy": float((flagged == is_ood).mean()), "precision": precision,
            "recall": recall,
            "f1": 2 * precision * recall / (precision + recall) if tp else 0.0}


def _pooled(id_scores: np.ndarray, ood_scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Validated ID then OOD scores in one vector, with the OOD mask."""
    id_scores, ood_scores = _validate(id_scores, ood_scores)
    return (np.r_[id_scores, ood_scores],
            np.r_[np.zeros(len(id_scores), bool), np.ones(len(ood_scores), bool)])


def _youden(c: _Counts, fpr: np.ndarray, tpr: np.ndarray) -> float:
    """The threshold of the largest TPR - FPR (the (0, 0) point has no threshold)."""
    return float(c.thresholds[int(np.argmax(tpr[1:] - fpr[1:]))])


def youden_threshold(id_scores: np.ndarray, ood_scores: np.ndarray) -> float:
    """The score threshold with the largest TPR - FPR on these (validation) scores."""
    c = _counts(*_pooled(id_scores, ood_scores))
    return _youden(c, *_roc(c))


def metrics_at_validation_threshold(id_scores: np.ndarray, ood_scores: np.ndarray,
                                    val_id: np.ndarray, val_ood: np.ndarray
                                    ) -> dict[str, float]:
    """Test accuracy / precision / recall / F1 at the Youden threshold picked on the validation
    scores (the anomaly track's decision rule: nothing of the test split picks it)."""
    threshold = youden_threshold(val_id, val_ood)
    at = _at_threshold(*_pooled(id_scores, ood_scores), threshold)
    return {"val_threshold": threshold, **{f"{name}_at_val": v for name, v in at.items()}}


def accuracy(predictions: np.ndarray, labels: np.ndarray) -> float:
    """Top-1 classification accuracy of the backbone on ID data."""
    return float((np.asarray(predictions) == np.asarray(labels)).mean())

"""Paired comparison of detectors scored on the same samples: DeLong's test, Holm's correction.

DeLong, DeLong & Clarke-Pearson (1988): an AUROC is a mean over (OOD, ID) pairs, so its
variance follows from each sample's *structural component* (the share of the other class it
is ranked above, ties counted half). Two detectors scored on the same samples have paired
components, and their AUROC difference a normal variance without resampling. Computed with
mid-ranks (Sun & Xu 2014), O(n log n).

Here the comparison may be over several OOD sets at once (a "near" mean): the sets share the ID
test rows and have their own OOD rows, so the variance of a mean of AUROCs adds one ID term
(components summed over sets, sample by sample) and one term per OOD set.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.stats import norm, rankdata


@dataclass(frozen=True)
class Components:
    """AUROC of one detector on one (ID, OOD) pair of score vectors and its components:
    ``ood[j]`` = share of ID samples OOD sample j scores above (ties half), ``id[i]`` = share
    of OOD samples scoring above ID sample i; ``auroc`` = mean of either."""

    auroc: float
    ood: np.ndarray
    id: np.ndarray


def components(id_scores: np.ndarray, ood_scores: np.ndarray) -> Components:
    id_scores = np.asarray(id_scores, dtype=np.float64).ravel()
    ood_scores = np.asarray(ood_scores, dtype=np.float64).ravel()
    n_id, n_ood = len(id_scores), len(ood_scores)
    if not n_id or not n_ood:
        raise ValueError("a paired test needs at least one ID and one OOD score")
    both = rankdata(np.r_[id_scores, ood_scores])  # mid-ranks: ties count half
    ood_c = (both[n_id:] - rankdata(ood_scores)) / n_id
    id_c = 1.0 - (both[:n_id] - rankdata(id_scores)) / n_ood
    return Components(float(ood_c.mean()), ood_c, id_c)


@dataclass(frozen=True)
class Comparison:
    """Detector a minus detector b: mean AUROC difference over the sets, its standard error,
    z and the two-sided p-value."""

    difference: float
    se: float
    z: float
    p: float


Scores = Mapping[str, np.ndarray]  # split key -> scores: "id" and one entry per OOD set


def _mean_components(scores: Scores, sets: Sequence[str]
                     ) -> tuple[float, np.ndarray, list[np.ndarray]]:
    """Mean AUROC over ``sets`` and its ID / per-set OOD components (each weighted 1/|sets|)."""
    parts = [components(scores["id"], scores[s]) for s in sets]
    k = len(parts)
    auroc = float(np.mean([c.auroc for c in parts]))
    id_part = np.sum([c.id for c in parts], axis=0) / k
    return auroc, id_part, [c.ood / k for c in parts]


def _variance(id_part: np.ndarray, ood_parts: list[np.ndarray]) -> float:
    var = np.var(id_part, ddof=1) / len(id_part) if len(id_part) > 1 else 0.0
    for part in ood_parts:
        var += np.var(part, ddof=1) / len(part) if len(part) > 1 else 0.0
    return float(var)


def compare(a: Scores, b: Scores, sets: Sequence[str]) -> Comparison:
    """DeLong's paired test of mean AUROC over ``sets``: detector ``a`` vs ``b``.

    ``a`` and ``b`` map ``"id"`` and each set name to the scores of the same samples, in the
    same order (higher = more OOD)."""
    if not sets:
        raise ValueError("compare needs at least one OOD set")
    for key in ("id", *sets):
        if len(a[key]) != len(b[key]):
            raise ValueError(f"{key}: the two detectors scored different samples "
                             f"({len(a[key])} vs {len(b[key])})")
    auc_a, id_a, ood_a = _mean_components(a, sets)
    auc_b, id_b, ood_b = _mean_components(b, sets)
    diff = auc_a - auc_b
    se = float(np.sqrt(_variance(id_a - id_b, [x - y for x, y in zip(ood_a, ood_b,
                                                                        strict=True)])))
    if se == 0.0:  # identical rankings: no evidence either way unless the AUROCs differ
        return Comparison(diff, 0.0, 0.0 if diff == 0 else np.copysign(np.inf, diff),
                          1.0 if diff == 0 else 0.0)
    z = diff / se
    return Comparison(diff, se, float(z), float(2 * norm.sf(abs(z))))


def holm(pvalues: Sequence[float]) -> np.ndarray:
    """Holm's step-down adjusted p-values (family-wise error control), in the input order."""
    p = np.asarray(pvalues, dtype=np.float64)
    m = len(p)
    if m == 0:
        return p
    order = np.argsort(p, kind="mergesort")
    adjusted = np.maximum.accumulate(np.minimum(1.0, (m - np.arange(m)) * p[order]))
    out = np.empty(m)
    out[order] = adjusted
    return out

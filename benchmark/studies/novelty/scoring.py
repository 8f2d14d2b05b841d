"""How well the clusters match the held-out classes (the clustering literature's measures)."""

from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score


def contingency(truth: np.ndarray, found: np.ndarray) -> np.ndarray:
    """Counts: rows = found clusters (unassigned -1 is a group of its own), columns = truth."""
    _, f = np.unique(found, return_inverse=True)
    _, t = np.unique(truth, return_inverse=True)
    table = np.zeros((f.max() + 1, t.max() + 1), dtype=np.int64)
    np.add.at(table, (f, t), 1)
    return table


def purity(truth: np.ndarray, found: np.ndarray) -> float:
    """Share of inputs whose cluster's majority class is their own."""
    if len(truth) == 0:
        return float("nan")
    return float(contingency(truth, found).max(axis=1).sum() / len(truth))


def cluster_accuracy(truth: np.ndarray, found: np.ndarray) -> float:
    """Accuracy under the best one-to-one map of clusters to classes (Hungarian matching),
    the measure novel-class-discovery papers report."""
    if len(truth) == 0:
        return float("nan")
    table = contingency(truth, found)
    rows, cols = linear_sum_assignment(-table)
    return float(table[rows, cols].sum() / len(truth))


def agreement(truth: np.ndarray, found: np.ndarray) -> dict[str, float]:
    """NMI, ARI, purity and Hungarian accuracy of ``found`` against ``truth``."""
    if len(truth) < 2:
        nan = float("nan")
        return {"nmi": nan, "ari": nan, "purity": nan, "cluster_accuracy": nan}
    return {"nmi": float(normalized_mutual_info_score(truth, found)),
            "ari": float(adjusted_rand_score(truth, found)),
            "purity": purity(truth, found), "cluster_accuracy": cluster_accuracy(truth, found)}

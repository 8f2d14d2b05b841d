"""Per-input explanation: the p-value and where in the network its evidence came from."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass
class Explanation:
    """Arrays over m inputs; ``tests`` names the columns of ``test_pvalues`` and ``shares``.

    A test is one (layer, reduction) pair, or an extra evidence. ``shares`` is each test's share
    of the evidence, ``log p_l / sum_l log p_l`` (= ``-2 log p_l / T`` for Fisher; 0 when every
    p = 1).
    """

    pvalue: np.ndarray
    decision: np.ndarray
    predicted: np.ndarray
    statistic: np.ndarray
    tests: list[str]
    test_pvalues: np.ndarray
    shares: np.ndarray
    alpha: float

    def layer_shares(self) -> dict[str, np.ndarray]:
        """Shares summed per layer (over its reductions), keyed by layer name."""
        out: dict[str, np.ndarray] = {}
        for j, test in enumerate(self.tests):
            layer = test.split("/")[0]
            out[layer] = out.get(layer, 0.0) + self.shares[:, j]
        return out

    def records(self) -> list[dict[str, Any]]:
        """One plain dict per input (for JSON or a table)."""
        return [
            {
                "pvalue": float(self.pvalue[i]),
                "ood": bool(self.decision[i]),
                "predicted": int(self.predicted[i]),
                "statistic": float(self.statistic[i]),
                "tests": {
                    t: {"pvalue": float(self.test_pvalues[i, j]), "share": float(self.shares[i, j])}
                    for j, t in enumerate(self.tests)
                },
            }
            for i in range(len(self.pvalue))
        ]


def evidence_shares(log_p: np.ndarray) -> np.ndarray:
    """``log p_l / sum_l log p_l`` per row, 0 where every p is 1."""
    log_p = np.minimum(log_p, 0.0)
    total = log_p.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total < 0, log_p / np.where(total < 0, total, 1.0), 0.0)

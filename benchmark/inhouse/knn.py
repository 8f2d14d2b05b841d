"""k-nearest-neighbour distance on L2-normalised features (Sun et al. 2022), brute force.

No index library: a chunked matrix product against the (normalised) ID feature bank and a
top-k, in torch on the CPU. The score is the distance to the k-th neighbour (higher = more OOD).
"""

from __future__ import annotations

import numpy as np
import torch


def _normalise(x: np.ndarray | torch.Tensor) -> torch.Tensor:
    t = torch.as_tensor(np.asarray(x, dtype=np.float32))
    if t.ndim != 2:
        raise ValueError(f"features must be N x D, got shape {tuple(t.shape)}")
    return torch.nn.functional.normalize(t, dim=1)


def kth_neighbour_distance(
    queries: np.ndarray, bank: torch.Tensor, k: int, chunk_size: int = 2048
) -> np.ndarray:
    """Euclidean distance from each normalised query to its k-th nearest row of ``bank``."""
    q = _normalise(queries)
    k = min(k, bank.shape[0])
    out = np.empty(len(q), dtype=np.float64)
    with torch.no_grad():
        for start in range(0, len(q), chunk_size):
            sims = q[start : start + chunk_size] @ bank.T
            kth = sims.topk(k, dim=1, sorted=False).values.min(dim=1).values
            out[start : start + chunk_size] = torch.sqrt(torch.clamp(2 - 2 * kth, min=0)).numpy()
    return out


class KNNEvidence:
    """Deep k-NN score as pluggable extra evidence.

    ``max_bank`` caps the bank by a seeded subsample (scoring cost is linear in the bank size).
    """

    def __init__(
        self,
        k: int = 50,
        source: str = "features",
        chunk_size: int = 2048,
        max_bank: int | None = None,
        seed: int = 0,
    ) -> None:
        if k < 1:
            raise ValueError("k must be >= 1")
        self.k = k
        self.source = source
        self.chunk_size = chunk_size
        self.max_bank = max_bank
        self.seed = seed
        self.name = "knn"

    def fit(self, x: np.ndarray) -> KNNEvidence:
        x = np.asarray(x)
        if self.max_bank is not None and len(x) > self.max_bank:
            rng = np.random.default_rng(self.seed)
            x = x[np.sort(rng.choice(len(x), self.max_bank, replace=False))]
        self.bank_ = _normalise(x)
        return self

    def score(self, x: np.ndarray) -> np.ndarray:
        return kth_neighbour_distance(x, self.bank_, self.k, self.chunk_size)

"""Stratified bootstrap of the detection metrics: 95 % intervals per (detector, OOD set) cell.

A resample draws the ID test rows and the OOD rows separately, with replacement, each set at
its own size (stratified: the ID/OOD ratio of the evaluation is kept). A resample is stored as
how often each row was drawn (``counts``); each class is sorted once per cell, and every
metric of a resample follows from the cumulative drawn weights of each class read at fixed
positions (where each sample sits among the others), so a resample costs cumulative sums and
gathers, never a sort, and all resamples of a cell are computed at once (97 ms per cell of
2,000 + 2,000 rows and 1,000 resamples on one core:
results/reproducibility/bootstrap_cost.txt). On unit counts, and on any counts, the metrics
equal :func:`benchmark.pipeline.metrics.compute_metrics` on the drawn rows (same ties, same
curves; AUPRs to float32 precision).

The draws depend only on (seed, split name, split size): every detector of a run is resampled
on the same rows, so differences between detectors can be bootstrapped pairwise and a mean
over OOD sets resampled consistently (the ID rows are shared by every OOD set).
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np

METRICS = ("auroc", "aupr_in", "aupr_out", "fpr95tpr")
_CHUNK_CELLS = 250_000  # resamples x samples per step: small enough to stay in cache


@dataclass(frozen=True)
class Resamples:
    """``counts[b, i]``: how often row ``i`` of a split is drawn in resample ``b``."""

    counts: np.ndarray

    @property
    def n(self) -> int:
        return self.counts.shape[0]


def draw(size: int, resamples: int, seed: int, split: str) -> Resamples:
    """``resamples`` draws with replacement of ``size`` rows, seeded by (seed, split name)."""
    rng = np.random.default_rng([seed, zlib.crc32(split.encode()), size])
    # a row is drawn at most ``size`` times: int16 halves the memory of the usual split sizes
    counts = np.empty((resamples, size), dtype=np.int16 if size < 2**15 else np.int32)
    step = max(1, _CHUNK_CELLS // max(size, 1))
    for start in range(0, resamples, step):
        stop = min(start + step, resamples)
        idx = rng.integers(0, size, size=(stop - start, size))
        flat = idx + (np.arange(stop - start) * size)[:, None]
        counts[start:stop] = np.bincount(flat.ravel(), minlength=(stop - start) * size
                                         ).reshape(stop - start, size)
    return Resamples(counts)


@dataclass(frozen=True)
class _Layout:
    """Where each sample sits among the others (fixed for a cell, shared by its resamples).

    Both classes sorted by decreasing score; for every ID sample (``id_*``) and OOD sample
    (``ood_*``), how many ID (``I``) and OOD (``O``) samples score strictly above it (``gt``)
    and at or above it (``ge``). Ties between them enter the curves at once, as in
    :mod:`benchmark.pipeline.metrics`.
    """

    id_order: np.ndarray
    ood_order: np.ndarray
    id_gtI: np.ndarray
    id_geI: np.ndarray
    id_gtO: np.ndarray
    id_geO: np.ndarray
    ood_gtI: np.ndarray
    ood_geI: np.ndarray
    ood_gtO: np.ndarray
    ood_geO: np.ndarray

    @classmethod
    def of(cls, id_scores: np.ndarray, ood_scores: np.ndarray) -> _Layout:
        id_order = np.argsort(-id_scores, kind="mergesort")
        ood_order = np.argsort(-ood_scores, kind="mergesort")
        neg_id, neg_ood = -id_scores[id_order], -ood_scores[ood_order]  # ascending

        def counts(v: np.ndarray) -> tuple[np.ndarray, ...]:
            return (np.searchsorted(neg_id, v, "left"), np.searchsorted(neg_id, v, "right"),
                    np.searchsorted(neg_ood, v, "left"), np.searchsorted(neg_ood, v, "right"))

        return cls(id_order, ood_order, *counts(neg_id), *counts(neg_ood))


def _cumulative(w: np.ndarray) -> np.ndarray:
    """``out[:, m]`` = weight of the first ``m`` samples (a leading 0 column)."""
    out = np.zeros((w.shape[0], w.shape[1] + 1), dtype=np.int32)  # sums <= rows < 2**31
    np.cumsum(w, axis=1, out=out[:, 1:])
    return out


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num / den in float32, 1 where den is 0 (a curve's start: precision 1)."""
    den = den.astype(np.float32)
    return num.astype(np.float32) / np.maximum(den, 1) + (den == 0)


def _chunk_metrics(lay: _Layout, w_id: np.ndarray, w_ood: np.ndarray,
                   out: dict[str, np.ndarray], rows: slice) -> None:
    """Metrics of resamples ``rows`` from the draw counts of each sample (sorted as ``lay``).

    The areas are the trapezoids of :mod:`benchmark.pipeline.metrics`, written as sums over
    samples (a sample's weight times the curve heights at its group and the group before), so
    no curve is materialised. AUROC and FPR@95TPR are exact (integer counts); precisions are
    float32 (relative error ~1e-7, far below the resampling spread).
    """
    ci, co = _cumulative(w_id), _cumulative(w_ood)
    n_neg, n_pos = ci[:, -1].astype(np.int64), co[:, -1].astype(np.int64)
    total = (n_neg + n_pos)[:, None]
    co_gt, co_ge = np.take(co, lay.id_gtO, axis=1), np.take(co, lay.id_geO, axis=1)
    # AUROC: each ID sample's weight x (OOD weight above it + half the OOD weight tied with it)
    num = np.einsum("ij,ij->i", w_id, co_gt + co_ge, dtype=np.int64)
    out["auroc"][rows] = num / (2 * n_pos * n_neg)
    # AUPR-In: ID positive, from the lowest score up: at or below / strictly below each ID
    ci_gt, ci_ge = np.take(ci, lay.id_gtI, axis=1), np.take(ci, lay.id_geI, axis=1)
    heights = (_ratio(n_neg[:, None] - ci_gt, total - ci_gt - co_gt)
               + _ratio(n_neg[:, None] - ci_ge, total - ci_ge - co_ge))
    out["aupr_in"][rows] = np.einsum("ij,ij->i", w_id.astype(np.float32), heights,
                                     dtype=np.float64) / (2 * n_neg)
    # AUPR-Out: OOD positive, from the highest score down: at or above / strictly above
    o_gt, o_ge = np.take(co, lay.ood_gtO, axis=1), np.take(co, lay.ood_geO, axis=1)
    i_gt, i_ge = np.take(ci, lay.ood_gtI, axis=1), np.take(ci, lay.ood_geI, axis=1)
    heights = _ratio(o_ge, o_ge + i_ge) + _ratio(o_gt, o_gt + i_gt)
    out["aupr_out"][rows] = np.einsum("ij,ij->i", w_ood.astype(np.float32), heights,
                                      dtype=np.float64) / (2 * n_pos)
    # FPR@95TPR: at the first OOD group where TPR (as the float metrics.py compares) >= 0.95
    need = np.ceil(0.95 * n_pos).astype(np.int64)
    need -= (need - 1) / n_pos >= 0.95
    need += need / n_pos < 0.95
    first = np.argmax(o_ge >= need[:, None], axis=1)
    out["fpr95tpr"][rows] = i_ge[np.arange(len(first)), first] / n_neg


def resampled_metrics(id_scores: np.ndarray, ood_scores: np.ndarray, id_draws: Resamples,
                      ood_draws: Resamples) -> dict[str, np.ndarray]:
    """AUROC, AUPR-In, AUPR-Out and FPR@95TPR of every resample (arrays of ``id_draws.n``)."""
    id_scores = np.asarray(id_scores, dtype=np.float64).ravel()
    ood_scores = np.asarray(ood_scores, dtype=np.float64).ravel()
    if id_draws.counts.shape[1] != len(id_scores) or ood_draws.counts.shape[1] != len(
            ood_scores) or id_draws.n != ood_draws.n:
        raise ValueError("resample counts do not match the score vectors")
    lay = _Layout.of(id_scores, ood_scores)
    out = {m: np.empty(id_draws.n) for m in METRICS}
    step = max(1, _CHUNK_CELLS // (len(id_scores) + len(ood_scores)))
    for start in range(0, id_draws.n, step):
        rows = slice(start, min(start + step, id_draws.n))
        _chunk_metrics(lay, np.take(id_draws.counts[rows], lay.id_order, axis=1),
                       np.take(ood_draws.counts[rows], lay.ood_order, axis=1), out, rows)
    return out


class SharedDraws:
    """The draws of each split of one run, made once (on first use) and shared by every
    detector: ``draws(split key, size)``. The same (resamples, seed) anywhere re-draws the same
    rows, so a later reader of the saved scores resamples what the run did."""

    def __init__(self, resamples: int, seed: int) -> None:
        self.resamples, self.seed = resamples, seed
        self._draws: dict[tuple[str, int], Resamples] = {}

    def __call__(self, split: str, size: int) -> Resamples:
        if (split, size) not in self._draws:
            self._draws[(split, size)] = draw(size, self.resamples, self.seed, split)
        return self._draws[(split, size)]


def percentile_interval(values: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """The central ``level`` interval of bootstrap values (percentile method)."""
    tail = (1 - level) / 2
    lo, hi = np.quantile(values, [tail, 1 - tail])
    return float(lo), float(hi)


def intervals(id_scores: np.ndarray, ood_scores: np.ndarray, id_draws: Resamples,
              ood_draws: Resamples, level: float = 0.95) -> dict[str, float]:
    """``{<metric>_lo, <metric>_hi}`` for every metric of :data:`METRICS`."""
    values = resampled_metrics(id_scores, ood_scores, id_draws, ood_draws)
    out: dict[str, float] = {}
    for metric, v in values.items():
        out[f"{metric}_lo"], out[f"{metric}_hi"] = percentile_interval(v, level)
    return out

"""Stratified bootstrap of the detection metrics: 95 % intervals per (detector, OOD set) cell.

A resample draws the ID test rows and the OOD rows separately, with replacement, each set at
its own size (stratified: the ID/OOD ratio of the evaluation is kept). A resample is stored as
how often each row was drawn (``counts``), and every metric is computed from the weighted
cumulative counts at each unique score, so a resample costs a cumulative sum, not a sort, and
all resamples of a cell are computed at once. On unit counts the metrics are exactly
:func:`benchmark.pipeline.metrics.compute_metrics` (same ties, same curves).

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


def _prev(a: np.ndarray, first: float) -> np.ndarray:
    """``a`` shifted one column right along each row, ``first`` in the first column."""
    out = np.empty_like(a)
    out[:, 0] = first
    out[:, 1:] = a[:, :-1]
    return out


def _chunk_metrics(pos: np.ndarray, neg: np.ndarray, out: dict[str, np.ndarray],
                   rows: slice) -> None:
    """Metrics from cumulative OOD (``pos``) and ID (``neg``) weights at each unique score,
    scores in decreasing order (integer arrays, one row per resample).

    Areas are the trapezoids of :mod:`benchmark.pipeline.metrics` written as sums over the
    score groups (no curve is materialised). AUROC and FPR@95TPR are exact (integer counts);
    the precision ratios of the AUPRs are float32 (relative error ~1e-7, far below the
    resampling spread), which halves the memory traffic.
    """
    n_pos, n_neg = pos[:, -1].astype(np.int64), neg[:, -1].astype(np.int64)
    dpos, dneg = np.diff(pos, axis=1, prepend=0), np.diff(neg, axis=1, prepend=0)
    # AUROC: sum over groups of (ID weight) x (OOD weight above + half the tied OOD weight)
    num = np.einsum("ij,ij->i", dneg.astype(np.float64), (2 * pos - dpos).astype(np.float64))
    out["auroc"][rows] = num / (2 * n_pos * n_neg)
    # FPR@95TPR: the first threshold where TPR (as the float metrics.py compares) >= 0.95
    need = np.ceil(0.95 * n_pos).astype(np.int64)
    need -= (need - 1) / n_pos >= 0.95
    need += need / n_pos < 0.95
    first = np.argmax(pos >= need[:, None], axis=1)
    out["fpr95tpr"][rows] = neg[np.arange(len(pos)), first] / n_neg
    posf, negf = pos.astype(np.float32), neg.astype(np.float32)
    total = posf + negf
    # AUPR-Out: points (recall, precision) from the highest threshold down, starting at
    # (0, 1); thresholds whose rows were all left out of a resample repeat a point (a prefix
    # of them has no point at all: precision 1 there, as at the start)
    prec = posf / np.maximum(total, 1) + (total == 0)
    area = np.einsum("ij,ij->i", dpos.astype(np.float32), prec + _prev(prec, 1.0),
                     dtype=np.float64)
    out["aupr_out"][rows] = area / (2 * n_pos)
    # AUPR-In: ID positive, from the lowest threshold up; at or below group k lies everything
    # but what lies above it
    below_neg = n_neg[:, None].astype(np.float32) - (negf - dneg)
    below = (n_pos + n_neg)[:, None].astype(np.float32) - (total - dpos - dneg)
    prec_in = below_neg / np.maximum(below, 1) + (below == 0)
    nxt = np.empty_like(prec_in)
    nxt[:, -1] = 1.0
    nxt[:, :-1] = prec_in[:, 1:]
    area = np.einsum("ij,ij->i", dneg.astype(np.float32), prec_in + nxt, dtype=np.float64)
    out["aupr_in"][rows] = area / (2 * n_neg)


def resampled_metrics(id_scores: np.ndarray, ood_scores: np.ndarray, id_draws: Resamples,
                      ood_draws: Resamples) -> dict[str, np.ndarray]:
    """AUROC, AUPR-In, AUPR-Out and FPR@95TPR of every resample (arrays of ``id_draws.n``)."""
    id_scores = np.asarray(id_scores, dtype=np.float64).ravel()
    ood_scores = np.asarray(ood_scores, dtype=np.float64).ravel()
    if id_draws.counts.shape[1] != len(id_scores) or ood_draws.counts.shape[1] != len(
            ood_scores) or id_draws.n != ood_draws.n:
        raise ValueError("resample counts do not match the score vectors")
    n_id = len(id_scores)
    scores = np.r_[id_scores, ood_scores]
    order = np.argsort(-scores, kind="mergesort")
    s, p = scores[order], order >= n_id
    # last index of each run of equal scores (== compares infinities as equal)
    last = np.r_[np.nonzero(s[1:] != s[:-1])[0], len(s) - 1]
    ties = len(last) < len(s)
    src_id, src_ood = order[~p], order[p] - n_id
    out = {m: np.empty(id_draws.n) for m in METRICS}
    step = max(1, _CHUNK_CELLS // len(scores))
    for start in range(0, id_draws.n, step):
        rows = slice(start, min(start + step, id_draws.n))
        w_pos = np.zeros((rows.stop - start, len(s)), dtype=np.int32)
        w_pos[:, p] = ood_draws.counts[rows][:, src_ood]
        w_neg = np.zeros_like(w_pos)
        w_neg[:, ~p] = id_draws.counts[rows][:, src_id]
        pos, neg = np.cumsum(w_pos, axis=1), np.cumsum(w_neg, axis=1)
        if ties:
            pos, neg = pos[:, last], neg[:, last]
        _chunk_metrics(pos, neg, out, rows)
    return out


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

"""Stratified bootstrap of the detection metrics: 95 % intervals per (detector, OOD set) cell.

A resample draws the ID test rows and the OOD rows separately, with replacement, each set at
its own size (stratified: the ID/OOD ratio of the evaluation is kept). A resample is stored as
how often each row was drawn (``counts``); each class is sorted once per cell, and every
metric of a resample follows from the cumulative drawn weights of each class read at fixed
positions (where each sample sits among the others), so a resample costs cumulative sums and
gathers, never a sort, and all resamples of a cell are computed at once. The ID side is
computed once for all the OOD sets of a detector, and positions of a class without ties are
slices (views, not gathers); the cost per cell is in results/reproducibility/bootstrap_cost.txt
(``scripts/bench_bootstrap.py``). On unit counts, and on any counts, the metrics
equal :func:`benchmark.pipeline.metrics.compute_metrics` on the drawn rows (same ties, same
curves; AUPRs to float32 precision).

The draws depend only on (seed, split name, split size): every detector of a run is resampled
on the same rows, so differences between detectors can be bootstrapped pairwise and a mean
over OOD sets resampled consistently (the ID rows are shared by every OOD set).
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

METRICS = ("auroc", "aupr_in", "aupr_out", "fpr95tpr")
_DRAW_CELLS = 250_000  # resamples x rows drawn per step (fixes the random stream: keep it)
# resamples x samples of the larger class per step of the metrics: its float32 arrays stay
# near 250 kB; at twice that the step took 3x longer here (allocator and cache limits,
# measured on 2,000 + 2,000 rows)
_CHUNK_CELLS = 62_500


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
    step = max(1, _DRAW_CELLS // max(size, 1))
    for start in range(0, resamples, step):
        stop = min(start + step, resamples)
        idx = rng.integers(0, size, size=(stop - start, size))
        flat = idx + (np.arange(stop - start) * size)[:, None]
        counts[start:stop] = np.bincount(flat.ravel(), minlength=(stop - start) * size
                                         ).reshape(stop - start, size)
    return Resamples(counts)


@dataclass(frozen=True)
class _Side:
    """One class of a cell as groups of tied scores, by decreasing score: a resample's weight
    of a group is the sum of its samples' draw counts, and every metric is a sum over groups
    (tied samples share their curve heights), so within a class the weight strictly above /
    at or above a group is the cumulative weight just before / through it: a view, never a
    gather. A class without ties has one sample per group."""

    values: np.ndarray  # the distinct scores, negated, ascending
    first: np.ndarray  # each group's first sample (the samples by decreasing score, if no ties)
    # the other members of the groups, level by level (the 2nd of each group with one, ...):
    # (groups, samples) pairs, each group once per level; None: many ties (a segment sum)
    extra: tuple[tuple[np.ndarray, np.ndarray], ...] | None
    order: np.ndarray
    starts: np.ndarray | None  # where each group starts in ``order`` (None: no ties)

    @classmethod
    def of(cls, scores: np.ndarray) -> _Side:
        order = np.argsort(-scores, kind="mergesort")
        neg = -scores[order]
        new = np.empty(len(neg), dtype=bool)
        new[:1] = True
        np.not_equal(neg[1:], neg[:-1], out=new[1:])
        if new.all():
            return cls(neg, order, (), order, None)
        starts = np.flatnonzero(new)
        extra = None
        dup = np.flatnonzero(~new)
        if len(dup) <= len(neg) // 16:  # few ties: add the few extra members column by column
            group = np.searchsorted(starts, dup, "right") - 1
            level = dup - starts[group]
            extra = tuple((group[level == k], order[dup[level == k]])
                          for k in range(1, int(level.max()) + 1))
        return cls(neg[starts], order[starts], extra, order, starts)

    def weights(self, counts: np.ndarray) -> np.ndarray:
        """Each resample's weight of each group (``counts``: draws of the rows, as given)."""
        if self.extra is None:  # many ties: one segment sum over the sorted samples
            return np.add.reduceat(np.take(counts, self.order, axis=1), self.starts, axis=1)
        w = np.take(counts, self.first, axis=1)
        for groups, samples in self.extra:
            w[:, groups] += counts[:, samples]
        return w

    def among(self, other: _Side) -> tuple[slice | np.ndarray, slice | np.ndarray, bool]:
        """How much of ``self`` scores strictly above / at or above each group of ``other``
        (positions in ``self``'s cumulative weights), and whether the two are equal (no score
        of ``other`` ties one of ``self``)."""
        gt = np.searchsorted(self.values, other.values, "left")
        ge = np.searchsorted(self.values, other.values, "right")
        return _positions(gt), _positions(ge), bool(np.array_equal(gt, ge))


def _positions(idx: np.ndarray) -> slice | np.ndarray:
    """``idx`` as a slice when it is a run of consecutive integers."""
    if len(idx) == 0:
        return slice(0, 0)
    if idx[-1] - idx[0] == len(idx) - 1 and np.all(np.diff(idx) == 1):
        return slice(int(idx[0]), int(idx[-1]) + 1)
    return idx


def _at(c: np.ndarray, pos: slice | np.ndarray) -> np.ndarray:
    """``c``'s columns ``pos``: a view for a slice, else a gather."""
    return c[:, pos] if isinstance(pos, slice) else np.take(c, pos, axis=1)


def _cumulative(w: np.ndarray) -> np.ndarray:
    """``out[:, m]`` = weight of the first ``m`` samples (a leading 0 column), as float32.

    The sums run in int32 (a float cumsum does not vectorise: 4x slower) and every value is an
    integer below 2**24, so the float32 copy is exact."""
    out = np.zeros((w.shape[0], w.shape[1] + 1), dtype=np.int32)
    np.cumsum(w, axis=1, out=out[:, 1:])
    return out.astype(np.float32)


def _row_dot(a: np.ndarray, b: np.ndarray, float32: bool = True) -> np.ndarray:
    """Row-wise dot products as float64. A float32 batched matmul (BLAS) is 4x faster than a
    float64 einsum: exact on integers whose sums stay below 2**24, ~1e-7 relative on the
    precision sums (the float32 precision of the heights themselves); ``float32=False`` (larger
    integer sums) sums in float64."""
    if not float32:
        return np.einsum("ij,ij->i", a, b, dtype=np.float64)
    return np.matmul(a[:, None, :], b[:, :, None])[:, 0, 0].astype(np.float64)


# Added to a denominator: a denominator of 0 has a numerator of 0 (its sample is not drawn),
# and 0 / tiny = 0, while every integer >= 1 is unchanged in float32 (4x cheaper than a maximum)
_TINY = np.float32(1e-30)


@dataclass(frozen=True)
class _Cell:
    """An OOD set against the ID test rows of a detector: its own side, and how many samples of
    each class score strictly above / at or above every sample of the other (``same``: the two
    coincide, no ID score ties an OOD score). Ties enter the curves at once, as in
    :mod:`benchmark.pipeline.metrics`."""

    ood: _Side
    id_gtO: slice | np.ndarray
    id_geO: slice | np.ndarray
    id_same: bool
    ood_gtI: slice | np.ndarray
    ood_geI: slice | np.ndarray
    ood_same: bool
    draws: Resamples

    @classmethod
    def of(cls, id_side: _Side, scores: np.ndarray, draws: Resamples) -> _Cell:
        ood = _Side.of(scores)
        return cls(ood, *ood.among(id_side), *id_side.among(ood), draws)


@dataclass(frozen=True)
class _IdChunk:
    """The ID side of resamples ``rows``, shared by every OOD set of a detector."""

    w: np.ndarray  # draw weights in score order (float32)
    c: np.ndarray  # their cumulative sums
    n: np.ndarray  # each resample's ID weight, (rows, 1)
    below_ge: np.ndarray  # ID weight at or below each ID sample
    below_ge_t: np.ndarray  # the same and _TINY (a denominator's part)
    below_gt_t: np.ndarray  # ID weight strictly below each ID sample, and _TINY

    @classmethod
    def of(cls, side: _Side, counts: np.ndarray) -> _IdChunk:
        w = side.weights(counts)
        c = _cumulative(w)
        n = c[:, -1:]
        below_ge = n - c[:, :-1]
        return cls(w.astype(np.float32), c, n, below_ge, below_ge + _TINY,
                   n - c[:, 1:] + _TINY)


def _chunk_metrics(idc: _IdChunk, cell: _Cell, counts: np.ndarray,
                   out: dict[str, np.ndarray], rows: slice) -> None:
    """Metrics of resamples ``rows`` of one OOD set from the draw counts of each sample.

    The areas are the trapezoids of :mod:`benchmark.pipeline.metrics`, written as sums over
    samples (a sample's weight times the curve heights at its group and the group before), so
    no curve is materialised. A precision whose denominator can be 0 with the sample drawn
    (nothing strictly above it: precision 1 by convention) is written ``1 - other / den``, its
    1 summed apart. AUROC and FPR@95TPR are exact (integer counts); precisions are float32
    (relative error ~1e-7, far below the resampling spread). Temporaries are fresh arrays:
    reusing preallocated ones (``out=``) ran 1.3x slower here, the allocator handing back the
    block just freed, still in cache.
    """
    w = cell.ood.weights(counts)
    co = _cumulative(w)
    wf = w.astype(np.float32)
    n_neg, n_pos = idc.n, co[:, -1:]
    co_gt = _at(co, cell.id_gtO)
    co_ge = co_gt if cell.id_same else _at(co, cell.id_geO)
    # AUROC: each ID sample's weight x (OOD weight above it + half the OOD weight tied with it)
    exact = int(n_neg.max(initial=0)) * int(n_pos.max(initial=0)) < 2**23
    if cell.id_same:
        num = 2 * _row_dot(idc.w, co_gt, exact)
    else:
        num = _row_dot(idc.w, co_gt + co_ge, exact)
    out["auroc"][rows] = num / (2 * n_pos[:, 0].astype(np.float64) * n_neg[:, 0])
    # AUPR-In: ID positive, from the lowest score up: at or below / strictly below each ID
    ood_le = n_pos - co_gt  # OOD weight at or below each ID sample
    ood_lt = ood_le if cell.id_same else n_pos - co_ge  # ... strictly below
    heights = idc.below_ge / (idc.below_ge_t + ood_le) - ood_lt / (idc.below_gt_t + ood_lt)
    out["aupr_in"][rows] = (_row_dot(idc.w, heights) + n_neg[:, 0]) / (2 * n_neg[:, 0])
    # AUPR-Out: OOD positive, from the highest score down: at or above / strictly above
    o_gt, o_ge = co[:, :-1], co[:, 1:]
    i_gt = _at(idc.c, cell.ood_gtI)
    i_ge = i_gt if cell.ood_same else _at(idc.c, cell.ood_geI)
    heights = o_ge / (o_ge + i_ge + _TINY) - i_gt / (o_gt + i_gt + _TINY)
    out["aupr_out"][rows] = (_row_dot(wf, heights) + n_pos[:, 0]) / (2 * n_pos[:, 0])
    # FPR@95TPR: at the first OOD group where TPR (as the float metrics.py compares) >= 0.95
    total = n_pos[:, 0].astype(np.int64)
    need = np.ceil(0.95 * total).astype(np.int64)
    need -= (need - 1) / total >= 0.95
    need += need / total < 0.95
    # the first position of each row's nondecreasing o_ge reaching ``need``: one search in the
    # rows laid end to end, each row lifted above the one before (float64: exact)
    r, m = o_ge.shape
    lift = (np.arange(r) * (float(total.max()) + 1))[:, None]
    first = np.searchsorted((o_ge + lift).ravel(), need + lift[:, 0]) - np.arange(r) * m
    out["fpr95tpr"][rows] = i_ge[np.arange(r), first].astype(np.float64) / n_neg[:, 0]


def _vector(scores: np.ndarray) -> np.ndarray:
    return np.asarray(scores, dtype=np.float64).ravel()


def resampled_metrics_of(id_scores: np.ndarray, ood: Mapping[str, np.ndarray],
                         id_draws: Resamples, ood_draws: Mapping[str, Resamples],
                         workers: int = 1) -> dict[str, dict[str, np.ndarray] | Exception]:
    """Every resample's AUROC, AUPR-In, AUPR-Out and FPR@95TPR for each OOD set of one
    detector (arrays of ``id_draws.n``), or the error of that set.

    The ID side (its sort, drawn weights and cumulative sums) is computed once for all the
    sets; the resamples are cut into chunks run on ``workers`` threads (numpy releases the GIL
    in the array work; the numbers do not depend on it).
    """
    id_scores = _vector(id_scores)
    side = _Side.of(id_scores)
    results: dict[str, dict[str, np.ndarray] | Exception] = {}
    cells: dict[str, _Cell] = {}
    for key, scores in ood.items():
        scores, draws = _vector(scores), ood_draws[key]
        if (id_draws.counts.shape[1] != len(id_scores) or draws.counts.shape[1] != len(scores)
                or id_draws.n != draws.n):
            results[key] = ValueError("resample counts do not match the score vectors")
            continue
        cells[key] = _Cell.of(side, scores, draws)
        results[key] = {m: np.empty(id_draws.n) for m in METRICS}
    if not cells:
        return results
    step = max(1, _CHUNK_CELLS // max(len(id_scores), *(len(c.ood.order)
                                                         for c in cells.values())))

    def chunk(rows: slice) -> None:
        idc = _IdChunk.of(side, id_draws.counts[rows])
        for key, cell in cells.items():
            got = results[key]
            if isinstance(got, Exception):
                continue
            try:
                _chunk_metrics(idc, cell, cell.draws.counts[rows], got, rows)
            except Exception as exc:  # noqa: BLE001 (that set's row says why)
                results[key] = exc

    chunks = [slice(s, min(s + step, id_draws.n)) for s in range(0, id_draws.n, step)]
    if workers > 1 and len(chunks) > 1:
        with ThreadPoolExecutor(max_workers=min(workers, len(chunks))) as pool:
            list(pool.map(chunk, chunks))
    else:
        for rows in chunks:
            chunk(rows)
    return results


def resampled_metrics(id_scores: np.ndarray, ood_scores: np.ndarray, id_draws: Resamples,
                      ood_draws: Resamples) -> dict[str, np.ndarray]:
    """AUROC, AUPR-In, AUPR-Out and FPR@95TPR of every resample (arrays of ``id_draws.n``)."""
    got = resampled_metrics_of(id_scores, {"": ood_scores}, id_draws, {"": ood_draws})[""]
    if isinstance(got, Exception):
        raise got
    return got


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


def _percentiles(values: dict[str, np.ndarray], level: float) -> dict[str, float]:
    out: dict[str, float] = {}
    for metric, v in values.items():
        out[f"{metric}_lo"], out[f"{metric}_hi"] = percentile_interval(v, level)
    return out


def intervals(id_scores: np.ndarray, ood_scores: np.ndarray, id_draws: Resamples,
              ood_draws: Resamples, level: float = 0.95) -> dict[str, float]:
    """``{<metric>_lo, <metric>_hi}`` for every metric of :data:`METRICS`."""
    return _percentiles(resampled_metrics(id_scores, ood_scores, id_draws, ood_draws), level)


def intervals_of(id_scores: np.ndarray, ood: Mapping[str, np.ndarray], id_draws: Resamples,
                 ood_draws: Mapping[str, Resamples], level: float = 0.95, workers: int = 1
                 ) -> dict[str, dict[str, float] | Exception]:
    """:func:`intervals` of one detector on each OOD set (or the error of that set), the ID
    side shared (:func:`resampled_metrics_of`)."""
    got = resampled_metrics_of(id_scores, ood, id_draws, ood_draws, workers)
    return {key: v if isinstance(v, Exception) else _percentiles(v, level)
            for key, v in got.items()}

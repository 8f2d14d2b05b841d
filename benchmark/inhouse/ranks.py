"""Exact two-sided rank p-values of many values against sorted reference samples.

Why a module of its own: this is the hot loop of the detector (one p-value per channel per input),
so it is written to be exact *and* fast. Values are compared as order-preserving ``int32`` keys of
their ``float32`` representation, which makes ties exact (``-0.0`` and ``0.0`` are the same key).
Per channel, the queries are sorted once by an ``int64`` sort whose low 32 bits carry each query's
position, so the binary searches walk forward through the reference (several times faster than
searching unsorted values) and the counts are scattered back in one pass.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

_SENTINEL = np.int32(np.iinfo(np.int32).max)  # above the key of +inf; NaN is rejected
_MAGNITUDE = np.int32(0x7FFFFFFF)
_LITTLE = np.little_endian  # which int32 half of an int64 is the low one
_BLOCK_ELEMENTS = 1 << 16  # queries per block: keeps a block's work arrays in L2 cache


def sortable_keys(values: np.ndarray) -> np.ndarray:
    """Order-preserving ``int32`` keys of ``values`` (cast to ``float32``); ``-0.0 == 0.0``."""
    x = np.asarray(values, dtype=np.float32)
    if np.isnan(x).any():
        raise ValueError("NaN in statistics: rank p-values are undefined for NaN")
    bits = (x + np.float32(0.0)).view(np.int32)  # + 0.0 maps -0.0 to +0.0
    if x.size and x.min() >= 0:  # post-ReLU statistics: the bits already sort as floats do
        return bits
    return bits ^ ((bits >> 31) & _MAGNITUDE)


@dataclass
class SortedReference:
    """Per-channel sorted reference keys, one row per channel (``C x n``)."""

    padded: np.ndarray  # C x (n + 1) int32, rows sorted ascending, last column a sentinel
    tie_index: np.ndarray  # C int32: row of `tie_next` for channels with repeated keys, else -1
    tie_next: np.ndarray  # T x (n + 1) int32: first position holding a larger key

    @property
    def keys(self) -> np.ndarray:
        return self.padded[:, :-1]

    @property
    def n(self) -> int:
        return self.padded.shape[1] - 1

    @property
    def channels(self) -> int:
        return self.padded.shape[0]

    @classmethod
    def from_values(cls, values: np.ndarray) -> SortedReference:
        """Build from an ``n x C`` matrix of reference statistics (n samples, C channels)."""
        values = np.asarray(values)
        if values.ndim != 2 or values.shape[0] == 0:
            raise ValueError(f"reference must be a non-empty n x C matrix, got {values.shape}")
        return cls.from_sorted_keys(np.sort(np.ascontiguousarray(sortable_keys(values).T), axis=1))

    @classmethod
    def from_sorted_keys(cls, keys: np.ndarray) -> SortedReference:
        """From ``C x n`` keys already sorted along each row."""
        c, n = keys.shape
        if n == 0:
            raise ValueError("empty reference")
        padded = np.empty((c, n + 1), dtype=np.int32)
        padded[:, :n] = keys
        padded[:, n] = _SENTINEL
        repeated = keys[:, 1:] == keys[:, :-1]
        tie_rows = np.flatnonzero(repeated.any(axis=1))
        tie_index = np.full(c, -1, dtype=np.int32)
        tie_index[tie_rows] = np.arange(len(tie_rows), dtype=np.int32)
        # end of each run of equal keys: the next position where the key changes, carried
        # backwards by a running minimum (no per-element search)
        ends = np.full((len(tie_rows), n + 1), n, dtype=np.int32)
        ends[:, : n - 1] = np.where(repeated[tie_rows], n, np.arange(1, n, dtype=np.int32))
        tie_next = np.minimum.accumulate(ends[:, ::-1], axis=1)[:, ::-1]
        return cls(padded=padded, tie_index=tie_index, tie_next=np.ascontiguousarray(tie_next))

    def tail_counts(self, values: np.ndarray) -> np.ndarray:
        """``t = 1 + min(#{S <= s}, #{S >= s})`` for every input (row) and channel (column).

        ``values`` is ``m x C``; returns ``m x C`` int32. The channel p-value is
        ``min(1, 2 t / (n + 1))``. Work goes in blocks of channels sized to stay in cache, so
        per-call overhead is paid per block rather than per channel.
        """
        keys = sortable_keys(values)
        if keys.ndim != 2 or keys.shape[1] != self.channels:
            raise ValueError(f"expected m x {self.channels} statistics, got {keys.shape}")
        m, c = keys.shape
        if m * c >= 1 << 31:  # offsets into the output must fit int32 (the packed low half)
            half = m // 2
            return np.concatenate(
                [self.tail_counts(values[:half]), self.tail_counts(values[half:])]
            )
        out = np.empty((m, c), dtype=np.int32)
        if m == 0:
            return out
        n = self.n
        big = max(self.padded.size, self.tie_next.size) >= 1 << 31
        index = np.int64 if big else np.int32
        flat_ref, flat_out = self.padded.reshape(-1), out.reshape(-1)
        position = np.arange(m, dtype=np.int64) * c  # a query's offset in `out`
        step = max(1, _BLOCK_ELEMENTS // m)
        lo, hi = (0, 1) if _LITTLE else (1, 0)
        for r0 in range(0, c, step):
            rows = np.arange(r0, min(c, r0 + step))
            packed = np.array(keys[:, r0 : rows[-1] + 1].T, dtype=np.int64, order="C")
            packed <<= 32
            packed |= position  # low half: where the query's count goes
            packed.sort(axis=1)
            halves = packed.view(np.int32)
            query = halves[:, hi::2]  # each channel's keys, ascending (a strided view)
            left = np.empty(query.shape, dtype=np.int32)  # #{S < s}
            for i, row in enumerate(rows):
                left[i] = np.searchsorted(self.padded[row, :n], query[i])
            offsets = (rows * (n + 1)).astype(index)[:, None]
            hit = flat_ref.take(left + offsets) == query
            right = left + hit  # #{S <= s}: exact unless the row has repeated keys
            ties = self.tie_index[r0 : rows[-1] + 1]
            tied = np.flatnonzero(ties >= 0)
            if len(tied):  # those rows: jump to the end of the run of keys equal to s
                start = left[tied]
                run_ends = self.tie_next.reshape(-1).take(
                    start + (ties[tied] * (n + 1)).astype(index)[:, None]
                )
                right[tied] = np.where(hit[tied], run_ends, start)
            np.subtract(n, left, out=left)
            np.minimum(left, right, out=left)
            left += 1
            flat_out[halves[:, lo::2] + rows.astype(np.int32)[:, None]] = left
        return out


def pvalues_from_counts(counts: np.ndarray, n: int) -> np.ndarray:
    """Spec formula from tail counts: ``p = min(1, 2 * t / (n + 1))``."""
    return np.minimum(1.0, 2.0 * counts / (n + 1.0))


def two_sided_pvalues(reference: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Two-sided rank p-values of ``values`` (m x C) against ``reference`` (n x C), per channel.

    ``p = min(1, 2 * min((1 + #{S <= s}) / (n + 1), (1 + #{S >= s}) / (n + 1)))``.
    """
    ref = SortedReference.from_values(reference)
    return pvalues_from_counts(ref.tail_counts(np.atleast_2d(values)), ref.n)


def upper_tail_pvalues(sorted_reference: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Conformal p-values ``(1 + #{ref >= s}) / (n + 1)`` (higher score = more extreme).

    ``sorted_reference`` must be sorted ascending (float64 comparisons, exact).
    """
    n = len(sorted_reference)
    below = np.searchsorted(sorted_reference, scores, side="left")
    return (1.0 + n - below) / (n + 1.0)

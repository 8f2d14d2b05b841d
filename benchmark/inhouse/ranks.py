"""Exact two-sided rank p-values of many values against sorted reference samples.

Why a module of its own: this is the hot loop of the detector (one p-value per channel per input),
so it is written to be exact *and* fast. Values are compared as order-preserving ``int32`` keys of
their ``float32`` representation, which makes ties exact (``-0.0`` and ``0.0`` are the same key).
Per channel, the queries are sorted once by an ``int64`` sort whose low 32 bits carry each query's
position, so the binary searches walk forward through the reference and the counts are scattered
back in one pass; everything stays in cache because work goes one channel (row) at a time.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

_SENTINEL = np.int32(np.iinfo(np.int32).max)  # above the key of +inf; NaN is rejected
_MAGNITUDE = np.int32(0x7FFFFFFF)
_LITTLE = np.little_endian


def sortable_keys(values: np.ndarray) -> np.ndarray:
    """Order-preserving ``int32`` keys of ``values`` (cast to ``float32``); ``-0.0 == 0.0``."""
    x = np.asarray(values, dtype=np.float32)
    if np.isnan(x).any():
        raise ValueError("NaN in statistics: rank p-values are undefined for NaN")
    bits = (x + np.float32(0.0)).view(np.int32)  # + 0.0 maps -0.0 to +0.0
    return bits ^ ((bits >> 31) & _MAGNITUDE)


@dataclass
class SortedReference:
    """Per-channel sorted reference keys, one row per channel (``C x n``)."""

    padded: np.ndarray  # C x (n + 1) int32, rows sorted ascending, last column a sentinel
    tie_rows: dict[int, np.ndarray]  # row -> (n + 1) first position holding a larger key

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
        tie_rows = {}
        for row in np.flatnonzero((keys[:, 1:] == keys[:, :-1]).any(axis=1)):
            nxt = np.empty(n + 1, dtype=np.int32)
            nxt[:n] = np.searchsorted(keys[row], keys[row], side="right")
            nxt[n] = n
            tie_rows[int(row)] = nxt
        return cls(padded=padded, tie_rows=tie_rows)

    def tail_counts(self, values_t: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """``t = 1 + min(#{S <= s}, #{S >= s})`` per channel and query.

        ``values_t`` is ``C x m`` (channel-major float32 statistics); returns ``C x m`` int32.
        The channel p-value is ``min(1, 2 t / (n + 1))``.
        """
        values_t = np.asarray(values_t, dtype=np.float32)
        c, m = values_t.shape
        if c != self.channels:
            raise ValueError(f"expected {self.channels} channels, got {c}")
        if np.isnan(values_t).any():
            raise ValueError("NaN in statistics: rank p-values are undefined for NaN")
        if out is None:
            out = np.empty((c, m), dtype=np.int32)
        elif out.shape != (c, m) or out.dtype != np.int32:
            raise ValueError("out must be a C x m int32 array")
        n = self.n
        position = np.arange(m, dtype=np.int64)
        packed = np.empty(m, dtype=np.int64)
        halves = packed.view(np.int32)  # little-endian: [0::2] low word, [1::2] high word
        low, high = (halves[0::2], halves[1::2]) if _LITTLE else (halves[1::2], halves[0::2])
        seen = np.empty(m, dtype=np.int32)
        hit = np.empty(m, dtype=bool)
        t = np.empty(m, dtype=np.int32)
        zero = np.float32(0.0)
        for row in range(c):
            bits = (values_t[row] + zero).view(np.int32)
            keys = bits ^ ((bits >> 31) & _MAGNITUDE)
            np.left_shift(keys, 32, out=packed, dtype=np.int64)
            packed |= position
            packed.sort()
            query = high  # sorted keys (a strided view into `packed`)
            left = np.searchsorted(self.padded[row, :n], query)  # #{S < s}
            np.take(self.padded[row], left, out=seen)
            np.equal(seen, query, out=hit)
            if row in self.tie_rows:  # #{S <= s} needs the end of the run of equal keys
                right = np.where(hit, self.tie_rows[row][left], left)
                np.copyto(t, right, casting="unsafe")
            else:
                np.add(left, hit, out=t, casting="unsafe")
            np.subtract(n, left, out=left)
            np.minimum(left, t, out=t, casting="unsafe")
            t += 1
            out[row][low] = t
        return out


def pvalues_from_counts(counts: np.ndarray, n: int) -> np.ndarray:
    """Spec formula from tail counts: ``p = min(1, 2 * t / (n + 1))``."""
    return np.minimum(1.0, 2.0 * counts / (n + 1.0))


def two_sided_pvalues(reference: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Two-sided rank p-values of ``values`` (m x C) against ``reference`` (n x C), per channel.

    ``p = min(1, 2 * min((1 + #{S <= s}) / (n + 1), (1 + #{S >= s}) / (n + 1)))``.
    """
    ref = SortedReference.from_values(reference)
    values_t = np.ascontiguousarray(np.atleast_2d(np.asarray(values, dtype=np.float32)).T)
    return pvalues_from_counts(ref.tail_counts(values_t).T, ref.n)


def upper_tail_pvalues(sorted_reference: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Conformal p-values ``(1 + #{ref >= s}) / (n + 1)`` (higher score = more extreme).

    ``sorted_reference`` must be sorted ascending (float64 comparisons, exact).
    """
    n = len(sorted_reference)
    below = np.searchsorted(sorted_reference, scores, side="left")
    return (1.0 + n - below) / (n + 1.0)

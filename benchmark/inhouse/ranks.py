"""Exact two-sided rank p-values of many values against sorted reference samples.

Why a module of its own: this is the hot loop of the detector (one p-value per channel per input),
so it is written to be exact *and* fast. Values are compared as order-preserving ``int32`` keys of
their ``float32`` representation, which makes ties exact (``-0.0`` and ``0.0`` are the same key)
and lets one ``int64`` sort carry both the key and the query's position.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

_LOW = np.int64(0xFFFFFFFF)
_SENTINEL = np.int32(np.iinfo(np.int32).max)  # above the key of +inf; NaN is rejected


def sortable_keys(values: np.ndarray) -> np.ndarray:
    """Order-preserving ``int32`` keys of ``values`` (cast to ``float32``); ``-0.0 == 0.0``."""
    x = np.asarray(values, dtype=np.float32)
    if np.isnan(x).any():
        raise ValueError("NaN in statistics: rank p-values are undefined for NaN")
    bits = (x + np.float32(0.0)).view(np.int32)  # + 0.0 maps -0.0 to +0.0
    return bits ^ ((bits >> 31) & np.int32(0x7FFFFFFF))


@dataclass
class SortedReference:
    """Per-channel sorted reference keys, shape ``C x n`` (one row per channel)."""

    padded: np.ndarray  # C x (n + 1) int32, rows sorted ascending, last column a sentinel
    tie_rows: np.ndarray  # indices of rows that contain repeated keys
    tie_next: np.ndarray  # len(tie_rows) x (n + 1): first position holding a larger key

    @property
    def keys(self) -> np.ndarray:
        return self.padded[:, :-1]

    @property
    def n(self) -> int:
        return self.padded.shape[1] - 1

    @property
    def channels(self) -> int:
        return self.keys.shape[0]

    @classmethod
    def from_values(cls, values: np.ndarray) -> SortedReference:
        """Build from an ``n x C`` matrix of reference statistics (n samples, C channels)."""
        values = np.asarray(values)
        if values.ndim != 2 or values.shape[0] == 0:
            raise ValueError(f"reference must be a non-empty n x C matrix, got {values.shape}")
        keys = np.sort(np.ascontiguousarray(sortable_keys(values).T), axis=1)
        return cls.from_sorted_keys(keys)

    @classmethod
    def from_sorted_keys(cls, keys: np.ndarray) -> SortedReference:
        n = keys.shape[1]
        tie_rows = np.flatnonzero((keys[:, 1:] == keys[:, :-1]).any(axis=1))
        tie_next = np.empty((len(tie_rows), n + 1), dtype=np.int32)
        for i, row in enumerate(tie_rows):
            tie_next[i, :n] = np.searchsorted(keys[row], keys[row], side="right")
            tie_next[i, n] = n
        padded = np.empty((keys.shape[0], n + 1), dtype=np.int32)
        padded[:, :n] = keys
        padded[:, n] = _SENTINEL
        return cls(padded=padded, tie_rows=tie_rows, tie_next=tie_next)

    def tail_counts(self, query_keys: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """``1 + min(#{S <= s}, #{S >= s})`` per channel and query, as ``m x C`` int32.

        ``query_keys`` is ``C x m`` (from :func:`sortable_keys`, transposed). Each row of queries
        is sorted once (one ``int64`` sort whose low 32 bits carry the query's column), so the
        binary searches walk forward and the result is scattered back in one pass.
        """
        c, m = query_keys.shape
        if c != self.channels:
            raise ValueError(f"expected {self.channels} channels, got {c}")
        n = self.n
        packed = query_keys.astype(np.int64) << 32
        packed |= np.arange(m, dtype=np.int64)
        packed.sort(axis=1)
        sorted_keys = (packed >> 32).astype(np.int32)
        left = np.empty((c, m), dtype=np.int32)  # #{S < s}
        for row in range(c):
            left[row] = np.searchsorted(self.keys[row], sorted_keys[row], side="left")
        # #{S <= s} = #{S < s} + multiplicity of s in S: 0 or 1 unless the row has ties
        hit = np.take_along_axis(self.padded, left, axis=1) == sorted_keys
        right = left + hit
        if len(self.tie_rows):
            rows = self.tie_rows
            lt = left[rows]
            right[rows] = np.where(hit[rows], np.take_along_axis(self.tie_next, lt, axis=1), lt)
        # t = 1 + min(right, n - left)
        np.subtract(n, left, out=left)
        np.minimum(left, right, out=left)
        left += 1
        if out is None:
            out = np.empty((m, c), dtype=np.int32)
        cols = (packed & _LOW).ravel()
        cols *= c
        cols += np.repeat(np.arange(c, dtype=np.int64), m)
        out.ravel()[cols] = left.ravel()
        return out


def pvalues_from_counts(counts: np.ndarray, n: int) -> np.ndarray:
    """Spec formula from tail counts: ``p = min(1, 2 * t / (n + 1))``."""
    return np.minimum(1.0, 2.0 * counts / (n + 1.0))


def two_sided_pvalues(reference: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Two-sided rank p-values of ``values`` (m x C) against ``reference`` (n x C), per channel.

    ``p = min(1, 2 * min((1 + #{S <= s}) / (n + 1), (1 + #{S >= s}) / (n + 1)))``.
    """
    ref = SortedReference.from_values(reference)
    keys = np.ascontiguousarray(sortable_keys(np.atleast_2d(values)).T)
    return pvalues_from_counts(ref.tail_counts(keys), ref.n)


def upper_tail_pvalues(sorted_reference: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Conformal p-values ``(1 + #{ref >= s}) / (n + 1)`` (higher score = more extreme).

    ``sorted_reference`` must be sorted ascending (float64 comparisons, exact).
    """
    n = len(sorted_reference)
    below = np.searchsorted(sorted_reference, scores, side="left")
    return (1.0 + n - below) / (n + 1.0)

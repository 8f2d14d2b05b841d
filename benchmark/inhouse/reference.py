"""Class-conditional reference samples: one :class:`SortedReference` per class plus a pooled one.

A class with fewer than ``min_class_samples`` reference inputs uses the pooled reference: with n
samples the smallest channel p-value is ``2 / (n + 1)``, and below ~100 that resolution is too
coarse for Simes/Bonferroni over tens of channels to ever produce a small layer p-value.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from .ranks import SortedReference, sortable_keys

DEFAULT_MIN_CLASS_SAMPLES = 100


def class_groups(classes: np.ndarray) -> tuple[np.ndarray, list[tuple[int, int, int]]]:
    """Stable order that groups equal classes, and ``(class, start, stop)`` slices of it."""
    classes = np.asarray(classes).astype(np.int64, copy=False)
    order = np.argsort(classes, kind="stable")
    ordered = classes[order]
    cuts = np.flatnonzero(np.diff(ordered)) + 1
    starts = np.concatenate([[0], cuts])
    stops = np.concatenate([cuts, [len(ordered)]])
    pairs = zip(starts, stops, strict=True)
    groups = [(int(ordered[a]), int(a), int(b)) for a, b in pairs if b > a]
    return order, groups


class ClassReferences:
    """Sorted per-channel reference keys per class (``per_class``) and pooled."""

    def __init__(self, per_class: bool = True, min_class_samples: int = DEFAULT_MIN_CLASS_SAMPLES):
        self.per_class = per_class
        self.min_class_samples = min_class_samples

    def fit(self, values: np.ndarray, classes: np.ndarray | None) -> ClassReferences:
        """``values``: ``n x C`` statistics; ``classes``: ``n`` class ids (None = pooled only)."""
        keys = np.ascontiguousarray(sortable_keys(values).T)  # C x n
        self.pooled_ = SortedReference.from_sorted_keys(np.sort(keys, axis=1))
        self.by_class_: dict[int, SortedReference] = {}
        self.class_counts_: dict[int, int] = {}
        if self.per_class and classes is not None:
            order, groups = class_groups(classes)
            for cls, a, b in groups:
                self.class_counts_[cls] = b - a
                if b - a >= self.min_class_samples:
                    block = np.sort(keys[:, order[a:b]], axis=1)
                    self.by_class_[cls] = SortedReference.from_sorted_keys(block)
        return self

    def reference_for(self, cls: int) -> SortedReference:
        """The class's own reference, or the pooled one (unseen or too small class)."""
        return self.by_class_.get(int(cls), self.pooled_)

    def fallback_classes(self) -> list[int]:
        """Classes seen at fit that use the pooled reference for lack of samples."""
        return sorted(c for c in self.class_counts_ if c not in self.by_class_)

    def groups(
        self, classes: np.ndarray
    ) -> tuple[np.ndarray, Iterator[tuple[SortedReference, int, int]]]:
        """Order grouping inputs by reference, and ``(reference, start, stop)`` slices of it."""
        if not self.by_class_:
            n = len(classes)
            return np.arange(n), iter([(self.pooled_, 0, n)] if n else [])
        order, groups = class_groups(classes)
        return order, ((self.reference_for(c), a, b) for c, a, b in groups)

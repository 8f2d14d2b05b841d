"""The inputs a protocol shows the pipeline: pools of scored inputs, batch buffers, streams."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

ID, NOVEL, JUNK = 0, 1, 2
KIND_NAMES = {ID: "ID", NOVEL: "novel", JUNK: "junk"}


@dataclass
class Pool:
    """Scored inputs: conformal p-value, penultimate features, kind (ID / novel / junk) and
    class (the held-out class of a novel input, -1 otherwise)."""

    pvalues: np.ndarray
    features: np.ndarray
    kind: np.ndarray
    truth: np.ndarray

    def __len__(self) -> int:
        return len(self.pvalues)

    def take(self, rows: np.ndarray) -> Pool:
        return Pool(self.pvalues[rows], self.features[rows], self.kind[rows], self.truth[rows])

    @staticmethod
    def joined(pools: list[Pool]) -> Pool:
        return Pool(*(np.concatenate([getattr(p, f) for p in pools])
                      for f in ("pvalues", "features", "kind", "truth")))

    def rows_of(self, kind: int, truth: int | None = None) -> np.ndarray:
        mask = self.kind == kind
        if truth is not None:
            mask &= self.truth == truth
        return np.flatnonzero(mask)

    @property
    def novel_classes(self) -> list[int]:
        return sorted(np.unique(self.truth[self.kind == NOVEL]).tolist())


def _draw(rng: np.random.Generator, rows: np.ndarray, n: int, what: str) -> np.ndarray:
    if n > len(rows):
        raise ValueError(f"a protocol asks for {n} {what} inputs; the pool has {len(rows)}")
    return rng.choice(rows, size=n, replace=False)


def batch(pool: Pool, n_id: int, n_novel: int, n_junk: int, seed: int) -> Pool:
    """One buffer: ``n_id`` ID, ``n_novel`` novel (every held-out class in equal parts) and
    ``n_junk`` junk inputs, drawn without replacement and shuffled."""
    rng = np.random.default_rng([seed, 181])
    classes = pool.novel_classes
    per_class = np.full(len(classes), n_novel // len(classes))
    per_class[: n_novel % len(classes)] += 1
    rows = [_draw(rng, pool.rows_of(ID), n_id, "ID"), _draw(rng, pool.rows_of(JUNK), n_junk,
                                                            "junk")]
    rows += [_draw(rng, pool.rows_of(NOVEL, c), int(k), f"novel class {c}")
             for c, k in zip(classes, per_class, strict=True)]
    order = np.concatenate(rows)
    return pool.take(rng.permutation(order))


@dataclass
class Stream:
    """Inputs in arrival order; ``onset`` = position of the first novel input (None: a
    novelty-free stream)."""

    inputs: Pool
    onset: int | None
    novel_class: int | None


def stream(pool: Pool, length: int, junk_rate: float, seed: int, novel_rate: float = 0.0,
           onset_range: tuple[int, int] = (1000, 2000)) -> Stream:
    """ID inputs one after another, junk at ``junk_rate`` throughout; with ``novel_rate`` > 0,
    one held-out class (picked by the seed) appears from a seeded time on at that rate. Inputs
    are drawn without replacement (a repeated image would be a cluster of its own)."""
    rng = np.random.default_rng([seed, 977])
    kinds = np.where(rng.random(length) < junk_rate, JUNK, ID)
    onset, novel_class = None, None
    if novel_rate > 0:
        start = int(rng.integers(*onset_range))
        novel = (np.arange(length) >= start) & (rng.random(length) < novel_rate)
        kinds[novel] = NOVEL
        if novel.any():
            onset = int(np.flatnonzero(novel)[0])
        classes = pool.novel_classes
        novel_class = int(classes[seed % len(classes)])
    rows = np.empty(length, dtype=np.int64)
    for kind, source in ((ID, pool.rows_of(ID)), (JUNK, pool.rows_of(JUNK)),
                         (NOVEL, pool.rows_of(NOVEL, novel_class))):
        where = np.flatnonzero(kinds == kind)
        if len(where):
            rows[where] = _draw(rng, source, len(where), KIND_NAMES[kind])
    return Stream(pool.take(rows), onset, novel_class)

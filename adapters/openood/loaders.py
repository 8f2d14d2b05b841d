"""Loaders in OpenOOD's shape: iterables of ``{'data', 'data_aux', 'label'}`` dict batches.

OpenOOD's postprocessors read ``batch['data']`` and ``batch['label']`` (GMM and MDS ensemble read
``batch['data_aux']``, the un-augmented copy; here it is the same tensor), call
``loader.batch_size`` and ``len(loader.dataset)`` (NNGuide) and ``len(iter(loader))`` (OpenMax).
:class:`BatchLoader` provides exactly that, re-chunking its source into batches of exactly
``batch_size`` rows so that replayed and end-to-end runs see the same batch boundaries (NNGuide's
bank is "whole batches until alpha * N rows": it depends on them).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import numpy as np
import torch


@dataclass
class _Dataset:
    """What OpenOOD reads from ``loader.dataset``: its length and a name."""

    name: str
    size: int

    def __len__(self) -> int:
        return self.size


class _BatchIterator:
    def __init__(self, batches: Iterator[dict[str, torch.Tensor]], n_batches: int) -> None:
        self._batches = batches
        self._n = n_batches

    def __iter__(self) -> _BatchIterator:
        return self

    def __next__(self) -> dict[str, torch.Tensor]:
        return next(self._batches)

    def __len__(self) -> int:
        return self._n


class BatchLoader:
    """Re-iterable loader over ``source()`` (a fresh iterator of ``(x, y)`` chunks per pass)."""

    def __init__(self, source: Callable[[], Iterable[tuple[torch.Tensor, torch.Tensor]]],
                 size: int, batch_size: int, name: str = "",
                 transform: Callable[[torch.Tensor], torch.Tensor] | None = None) -> None:
        self.source = source
        self.batch_size = max(1, int(batch_size))
        self.dataset = _Dataset(name, int(size))
        self.transform = transform

    def __len__(self) -> int:
        return (len(self.dataset) + self.batch_size - 1) // self.batch_size

    def _batches(self) -> Iterator[dict[str, torch.Tensor]]:
        xs: list[torch.Tensor] = []
        ys: list[torch.Tensor] = []
        held = 0
        seen = 0
        for x, y in self.source():
            xs.append(x)
            ys.append(torch.as_tensor(y))
            held += len(x)
            while held >= self.batch_size:
                x_all, y_all = torch.cat(xs), torch.cat(ys)
                yield self._batch(x_all[: self.batch_size], y_all[: self.batch_size])
                xs, ys = [x_all[self.batch_size:]], [y_all[self.batch_size:]]
                held -= self.batch_size
                seen += self.batch_size
        if held:
            yield self._batch(torch.cat(xs), torch.cat(ys))
            seen += held
        if seen != len(self.dataset):
            raise RuntimeError(f"loader {self.dataset.name!r} yielded {seen} rows, "
                               f"expected {len(self.dataset)}")

    def _batch(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        x = x.float()
        if self.transform is not None:
            x = self.transform(x)
        return {"data": x, "data_aux": x, "label": y.long()}

    def __iter__(self) -> _BatchIterator:
        return _BatchIterator(self._batches(), len(self))


def array_loader(rows: np.ndarray, labels: np.ndarray, batch_size: int,
                 name: str = "") -> BatchLoader:
    """Loader over cached arrays (feature replay: rows are ``[logits | features]`` or maps)."""
    x = torch.from_numpy(np.ascontiguousarray(rows, dtype=np.float32))
    y = torch.from_numpy(np.asarray(labels).astype(np.int64))
    return BatchLoader(lambda: [(x, y)], len(x), batch_size, name)


def pad_channels(minimum: int) -> Callable[[torch.Tensor], torch.Tensor]:
    """Zero-pad image batches to ``minimum`` channels (see ``ZooNet.in_channels``)."""

    def pad(x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] >= minimum:
            return x
        extra = x.new_zeros(x.shape[0], minimum - x.shape[1], *x.shape[2:])
        return torch.cat([x, extra], dim=1)

    return pad

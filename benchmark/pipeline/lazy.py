"""Image files read when a batch needs them: large sets (ImageNet) without holding them in memory.

A dataset entry with ``lazy: true`` (kinds ``image_folder`` and ``image_list``) gives its split
as :class:`LazyImages` instead of one ``N x H x W x C`` array: indexing reads and decodes those
files only, so extraction and training hold one batch at a time. Its content hash is over the
files' bytes and the read settings, streamed, so caches stay keyed by what the pixels are.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np


class LazyImages:
    """``N`` image files decoded to ``size x size x channels`` uint8 on access."""

    dtype = np.dtype(np.uint8)
    ndim = 4

    def __init__(self, paths: Sequence[Path], size: int, channels: int,
                 open_image: Callable[[Path], np.ndarray], settings: dict | None = None) -> None:
        self.paths = list(paths)
        self.size, self.channels = int(size), int(channels)
        self._open = open_image
        self._settings = dict(settings or {})

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return (len(self.paths), self.size, self.size, self.channels)

    def __len__(self) -> int:
        return len(self.paths)

    def _rows(self, index) -> list[int]:
        return (list(range(len(self.paths)))[index] if isinstance(index, slice)
                else np.asarray(index, dtype=np.int64).reshape(-1).tolist())

    def __getitem__(self, index) -> np.ndarray:
        """The images at ``index`` (int, slice or integer array), decoded now."""
        if isinstance(index, int | np.integer):
            return self._open(self.paths[int(index)])
        rows = self._rows(index)
        out = np.empty((len(rows), self.size, self.size, self.channels), dtype=np.uint8)
        for i, row in enumerate(rows):
            out[i] = self._open(self.paths[row])
        return out

    def __array__(self, dtype=None, copy=None) -> np.ndarray:  # an explicit full read
        arr = self[slice(None)]
        return arr if dtype is None else arr.astype(dtype)

    def subset(self, index) -> LazyImages:
        """Rows ``index`` as another lazy set (nothing is read)."""
        return LazyImages([self.paths[r] for r in self._rows(index)], self.size,
                          self.channels, self._open, self._settings)

    def digest(self) -> str:
        """sha256 over the read settings and every file's bytes, in order."""
        h = hashlib.sha256(f"lazy|{self.size}|{self.channels}|{sorted(self._settings.items())}"
                           .encode())
        for path in self.paths:
            with open(path, "rb") as fh:
                for chunk in iter(lambda f=fh: f.read(1 << 20), b""):
                    h.update(chunk)
            h.update(b"\0")
        return h.hexdigest()

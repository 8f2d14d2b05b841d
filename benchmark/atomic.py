"""One way to write a cache entry: into a temporary sibling, renamed into place when complete;
arrays with a checksum, so that a damaged entry is recomputed instead of read.

A reader never sees a half-written file (a killed run leaves only a ``.tmp<pid>`` sibling, which
no reader looks at), and two processes writing the same entry cannot corrupt it.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)


@contextmanager
def atomic_path(path: Path, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success it replaces ``path``, on error it is
    removed. ``suffix`` keeps writers that append an extension (``np.savez``: ``.npz``) happy.

    A directory is renamed into place only if ``path`` does not exist yet (another process that
    got there first wins; the entries are identical by construction of the cache keys).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.tmp{os.getpid()}{suffix}")
    try:
        yield tmp
        if tmp.is_dir() and path.exists():
            shutil.rmtree(tmp)
        else:
            os.replace(tmp, path)
    finally:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        elif tmp.exists():
            tmp.unlink()


def file_digest(path: Path, algorithm: str = "sha256") -> str:
    """The hex digest of a file's bytes, read in 1 MiB chunks."""
    h = hashlib.new(algorithm)
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


CHECKSUM_KEY = "__checksum__"


def checksum(arrays: dict[str, np.ndarray]) -> str:
    """sha256 over every array's name, dtype, shape and bytes (in name order)."""
    h = hashlib.sha256()
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update(f"{name}|{a.dtype.str}|{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def save_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """``arrays`` in one ``.npz`` with their checksum, written atomically."""
    with atomic_path(path, suffix=".npz") as tmp:
        np.savez(tmp, **{CHECKSUM_KEY: np.array(checksum(arrays))}, **arrays)


def load_npz(path: Path) -> dict[str, np.ndarray] | None:
    """The arrays of :func:`save_npz`, or None if missing or corrupt (unreadable, truncated, or
    failing its checksum: then the caller recomputes)."""
    if not path.exists():
        return None
    try:
        with np.load(path) as z:
            arrays = {k: z[k] for k in z.files if k != CHECKSUM_KEY}
            stored = str(z[CHECKSUM_KEY])
    except Exception as exc:  # a truncated zip raises several types
        log.warning("cache file %s unreadable (%s); recomputing", path, exc)
        return None
    if checksum(arrays) != stored:
        log.warning("cache file %s failed its checksum; recomputing", path)
        return None
    return arrays

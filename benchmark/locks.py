"""One lock per cache entry, so that concurrent jobs (a joblib, SLURM or Ray sweep on one
cache) compute an entry once: the first process computes it, the others wait and then read it.

The lock is a ``<entry>.lock`` file beside the entry, held with ``flock`` (``filelock``): the
operating system releases it when the holder dies, so a killed job never blocks the next one.
Writes stay atomic (:mod:`benchmark.atomic`) whatever the lock does: on a filesystem where
``flock`` is not honoured across machines, two jobs may both compute an entry, never read a
half-written one.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from filelock import FileLock, Timeout

log = logging.getLogger(__name__)

# how long to wait silently before saying which lock a job is waiting for
_QUIET_S = 2.0


def lock_path(entry: Path) -> Path:
    return entry.with_name(entry.name + ".lock")


@contextmanager
def entry_lock(entry: Path, what: str) -> Iterator[float]:
    """Hold the lock of cache entry ``entry`` (``what`` names it in the log); yields the
    seconds spent waiting for another process."""
    entry.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(lock_path(entry)))
    t0 = time.perf_counter()
    try:
        lock.acquire(timeout=_QUIET_S)
    except Timeout:
        log.info("waiting for another process computing %s (lock %s)", what, lock_path(entry))
        lock.acquire()
    try:
        yield time.perf_counter() - t0
    finally:
        lock.release()

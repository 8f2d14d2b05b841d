"""A wall-clock limit for one detector, so a pathologically slow one fails instead of hanging.

It uses SIGALRM in the main thread (no fork: forking a process whose OpenMP pool has run hangs
the child, and a single-threaded child would distort the timings). Python-level loops, where
slow detectors spend their time, are interrupted at once; one long C call finishes first.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager


class TimeLimitExceeded(BaseException):
    """Raised when the limit passes (a BaseException so `except Exception` cannot swallow it)."""


def available() -> bool:
    return hasattr(signal, "setitimer") and threading.current_thread() is threading.main_thread()


@contextmanager
def time_limit(seconds: float | None, what: str) -> Iterator[None]:
    """Raise :class:`TimeLimitExceeded` if the block runs longer than ``seconds`` (None: no limit).

    Outside the main thread, or without SIGALRM (Windows), the block runs without a limit.
    """
    if not seconds or not available():
        yield
        return

    def _expired(signum: int, frame: object) -> None:
        raise TimeLimitExceeded(f"{what} ran longer than {seconds:g} s "
                                "(detector_time_limit_s) and was stopped")

    previous = signal.signal(signal.SIGALRM, _expired)
    signal.setitimer(signal.ITIMER_REAL, float(seconds))
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)

"""Scoped seeding: a block runs with seeded RNGs and leaves the callers' RNG states untouched."""

from __future__ import annotations

import random
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch


@contextmanager
def seeded(seed: int | None) -> Iterator[None]:
    """Seed python's, numpy's and torch's (CPU and every CUDA device's) global RNGs for the
    block; restore their states afterwards. ``None``: run the block unseeded."""
    if seed is None:
        yield
        return
    py_state, np_state = random.getstate(), np.random.get_state()
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    try:
        with torch.random.fork_rng(devices=devices):
            random.seed(seed)
            np.random.seed(seed)
            torch.manual_seed(seed)
            yield
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)

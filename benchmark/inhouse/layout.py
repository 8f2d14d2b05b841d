"""The (layer, reduction) tests a detector runs, and stacking their statistics into one matrix.

Statistics arrive as ``{layer: {reduction: N x C_layer}}``; each (layer, reduction) pair is one
test ("unit") and is stored as a column block of one ``N x sum(C)`` float32 matrix so the hot loop
handles all channels at once.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

Stats = Mapping[str, Mapping[str, np.ndarray]]


@dataclass(frozen=True)
class Unit:
    layer: str
    reduction: str
    channels: int
    offset: int

    @property
    def name(self) -> str:
        return f"{self.layer}/{self.reduction}"

    @property
    def columns(self) -> slice:
        return slice(self.offset, self.offset + self.channels)


def plan_units(stats: Stats, layers: Sequence[str] | None, reductions: Sequence[str]) -> list[Unit]:
    """Units in layer order (the stats' order when ``layers`` is None)."""
    names = list(stats) if layers is None else list(layers)
    if not names:
        raise ValueError("no layers in the statistics")
    units, offset = [], 0
    for layer in names:
        if layer not in stats:
            raise KeyError(f"layer {layer!r} not in statistics; available: {sorted(stats)}")
        for red in reductions:
            if red not in stats[layer]:
                raise KeyError(f"reduction {red!r} missing for layer {layer!r}")
            arr = np.asarray(stats[layer][red])
            if arr.ndim != 2:
                raise ValueError(f"{layer}/{red}: expected N x C, got shape {arr.shape}")
            units.append(Unit(layer, red, arr.shape[1], offset))
            offset += arr.shape[1]
    return units


def stack_units(stats: Stats, units: Sequence[Unit]) -> np.ndarray:
    """``N x sum(C)`` float32 matrix of all units' statistics, checked against the plan."""
    blocks = []
    for u in units:
        arr = np.asarray(stats[u.layer][u.reduction])
        if arr.ndim != 2 or arr.shape[1] != u.channels:
            raise ValueError(f"{u.name}: expected N x {u.channels}, got shape {arr.shape}")
        blocks.append(arr)
    if len({len(b) for b in blocks}) != 1:
        raise ValueError("all layers must have the same number of rows")
    return np.concatenate(blocks, axis=1, dtype=np.float32)

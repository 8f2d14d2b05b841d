"""Per-channel spatial reductions: one number per channel and input.

MaSF reduces each activation map with its spatial maximum; the spatial mean is a second, often
more stable statistic. Vectors (``N x C``, e.g. a pooled penultimate layer) pass through as-is.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

Reduction = Callable[[torch.Tensor], torch.Tensor]


def _flat(x: torch.Tensor) -> torch.Tensor | None:
    if x.ndim < 2:
        raise ValueError(f"activations must be at least N x C, got shape {tuple(x.shape)}")
    return None if x.ndim == 2 else x.flatten(2)


def spatial_max(x: torch.Tensor) -> torch.Tensor:
    """``N x C x ...`` -> ``N x C`` maximum over all trailing (spatial) dimensions."""
    flat = _flat(x)
    return x if flat is None else flat.amax(dim=2)


def spatial_mean(x: torch.Tensor) -> torch.Tensor:
    """``N x C x ...`` -> ``N x C`` mean over all trailing (spatial) dimensions."""
    flat = _flat(x)
    return x if flat is None else flat.mean(dim=2)


REDUCTIONS: dict[str, Reduction] = {"max": spatial_max, "mean": spatial_mean}


def check_reductions(names: Sequence[str]) -> tuple[str, ...]:
    """Validate reduction names early, with the valid choices in the message."""
    names = tuple(names)
    bad = [r for r in names if r not in REDUCTIONS]
    if bad or not names:
        raise ValueError(f"unknown reductions {bad or names!r}; valid: {sorted(REDUCTIONS)}")
    if len(set(names)) != len(names):
        raise ValueError(f"duplicate reductions in {names!r}")
    return names


def reduce_activation(x: torch.Tensor, reductions: Sequence[str]) -> dict[str, torch.Tensor]:
    """All requested reductions of one activation tensor, detached, as ``float32``."""
    x = x.detach().float()
    return {name: REDUCTIONS[name](x) for name in check_reductions(reductions)}

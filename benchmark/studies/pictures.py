"""Model-ready inputs back as pictures, and picking a few rows out of a batched split."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from benchmark.representations import Representations


def show(x: np.ndarray) -> np.ndarray:
    """A ``C x H x W`` model input as an image: each channel stretched to [0, 1] on its own
    (undoes the per-channel normalisation up to contrast, so gray stays gray)."""
    img = np.transpose(x, (1, 2, 0))
    low, span = img.min(axis=(0, 1)), np.ptp(img, axis=(0, 1))
    img = (img - low) / (span + 1e-8)
    return img[..., 0] if img.shape[-1] == 1 else img


def rows_of(rep: Representations, rows: Sequence[int]) -> list[np.ndarray] | None:
    """The model inputs of ``rows`` of a split (in that order), read batch by batch; None when
    the split carries no inputs."""
    if rep.inputs is None:
        return None
    wanted = {int(r): i for i, r in enumerate(rows)}
    out: list[np.ndarray | None] = [None] * len(wanted)
    start = 0
    for batch, _ in rep.inputs():
        stop = start + len(batch)
        for r in [r for r in wanted if start <= r < stop]:
            out[wanted[r]] = batch[r - start].float().numpy() if isinstance(
                batch, torch.Tensor) else np.asarray(batch[r - start], dtype=np.float32)
        start = stop
        if all(o is not None for o in out):
            break
    return [o for o in out if o is not None]

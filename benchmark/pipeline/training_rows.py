"""Which images a backbone was trained on, recorded with its checkpoint and checked at each run.

Conformal calibration is valid only if the calibration images are exchangeable with the ID test
images; images the backbone was trained on are not (the network fits them better). A checkpoint
therefore records its training rows: the parent set's sha256, the row count, a sha256 of the
indices and the rows themselves as a packed bit mask (a few kB for CIFAR-10). A run whose held-out
splits (calibration, validation, ID test, OOD sets drawn from the same parent) share a row with
them is refused with a message. The fit split is drawn from the training rows by design (the
detectors fit on training images; validity depends only on calibration), so it is only counted.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Mapping
from typing import Any

import numpy as np

from benchmark.pipeline.data import ImageSet
from benchmark.pipeline.errors import DataError

HELD_OUT = ("calibration", "validation", "id_test")


def indices_sha256(indices: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(np.sort(indices), dtype=np.int64).tobytes()
                          ).hexdigest()


def rows_record(data: ImageSet, split: Mapping[str, Any] | None = None) -> dict[str, Any] | None:
    """The training rows of ``data`` (a subset of a parent set), or None for a whole set."""
    if data.parent_hash is None or data.indices is None:
        return None
    idx = np.sort(np.asarray(data.indices, dtype=np.int64))
    mask = np.zeros(int(idx.max()) + 1 if len(idx) else 0, dtype=bool)
    mask[idx] = True
    out = {"parent_sha256": data.parent_hash, "count": int(len(idx)),
           "indices_sha256": indices_sha256(idx),
           "mask_b64": base64.b64encode(np.packbits(mask).tobytes()).decode("ascii"),
           "mask_length": int(len(mask))}
    if split:
        out["split"] = dict(split)
    return out


def training_indices(record: Mapping[str, Any]) -> np.ndarray:
    """The indices a rows record holds (its sha256 checked: a hand-edited record is refused)."""
    bits = np.frombuffer(base64.b64decode(record["mask_b64"]), dtype=np.uint8)
    idx = np.flatnonzero(np.unpackbits(bits)[: int(record["mask_length"])])
    if len(idx) != record["count"] or indices_sha256(idx) != record["indices_sha256"]:
        raise DataError("the checkpoint's training-rows record does not match its own sha256: "
                        "the JSON beside the checkpoint was edited or damaged; retrain, or "
                        "remove its `train_rows` entry to skip the check")
    return idx


def overlaps(record: Mapping[str, Any] | None, sets: Mapping[str, ImageSet]
             ) -> dict[str, int]:
    """Rows of each set that the backbone was trained on (sets from another parent: none)."""
    if not record:
        return {}
    trained = training_indices(record)
    out = {}
    for name, data in sets.items():
        if name == "train":  # the training split itself
            continue
        if data.parent_hash != record["parent_sha256"] or data.indices is None:
            continue
        out[name] = int(np.isin(data.indices, trained).sum())
    return out


def check_held_out(record: Mapping[str, Any] | None, sets: Mapping[str, ImageSet],
                   checkpoint: str) -> dict[str, int]:
    """Refuse a run whose held-out splits hold training images of the backbone (exit 2).

    Returns the overlap counts (the fit split's is expected and recorded in the manifest)."""
    counts = overlaps(record, sets)
    bad = {k: v for k, v in counts.items() if v and (k in HELD_OUT or k.startswith("ood_"))}
    if bad:
        split = (record or {}).get("split") or {}
        how = ""
        if "seed" in split and "calibration_size" in split:
            how = (f" It was trained with data.split_seed={split['seed']} "
                   f"data.calibration_size={split['calibration_size']}"
                   + (f" data.train_size={split['train_size']}" if split.get("train_size")
                      else "") + ";")
        listed = ", ".join(f"{k}: {v} of {len(sets[k])} images" for k, v in bad.items())
        raise DataError(
            f"backbone checkpoint {checkpoint} was trained on images this run holds out for "
            f"calibration or testing ({listed}); conformal p-values calibrated on training "
            f"images are not valid.{how} run with the split it was trained on, or let the "
            "harness train a backbone for this split (drop backbone.checkpoint)")
    return counts

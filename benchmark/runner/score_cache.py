"""Detector scores cached by content, so an identical second run repeats no detector work.

The key covers the detector spec (library, name, params), the library's installed version,
the source of the code that decides its scores (the adapter, and the library itself when it
ships with ood-bench), the keys of every representation the detector saw (which already cover
checkpoint, data and transform) and the device. The timings measured when the scores were
computed are stored with them; files are atomic and checksummed (:mod:`benchmark.atomic`).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np

from adapters.registry import installed_version, source_files
from benchmark.atomic import load_npz, save_npz
from benchmark.results import decode_split, encode_split

FORMAT = 2  # 2: checksummed files
META_KEY = "__meta__"


def source_hash(library: str) -> str:
    """sha256 (16 hex) of the code that decides ``library``'s scores ('unavailable' if none)."""
    try:
        files = source_files(library)
    except Exception:
        return "unavailable"
    h = hashlib.sha256()
    for f in files:
        h.update(f.read_bytes())
    return h.hexdigest()[:16] if files else "unavailable"


def library_identity(library: str) -> dict[str, str]:
    """What of a library decides its scores: the installed version and the adapter's source."""
    try:
        version = installed_version(library)
    except Exception:
        version = "unknown"
    return {"library_version": str(version), "adapter": source_hash(library)}


def score_key(spec: dict[str, Any], rep_keys: dict[str, str], device: str) -> str:
    ident = {
        "spec": spec,
        **library_identity(spec["library"]),
        "representations": rep_keys,
        "device": device,
        "format": FORMAT,
    }
    return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:32]


def _path(cache_dir: Path, key: str) -> Path:
    return cache_dir / "scores" / f"{key}.npz"


def load(cache_dir: Path, key: str) -> tuple[dict[str, np.ndarray], dict[str, Any]] | None:
    """``({split key: scores}, meta)`` of an earlier identical computation, or None."""
    arrays = load_npz(_path(cache_dir, key))
    if arrays is None or META_KEY not in arrays:
        return None
    meta = json.loads(str(arrays.pop(META_KEY)))
    return {decode_split(k): v for k, v in arrays.items()}, meta


def save(cache_dir: Path, key: str, scores: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
    arrays = {encode_split(k): v for k, v in scores.items()}
    save_npz(_path(cache_dir, key), {META_KEY: np.array(json.dumps(meta)), **arrays})

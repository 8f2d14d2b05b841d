"""Detector scores cached by content, so an identical second run repeats no detector work.

The key covers the detector spec, the library's version, the adapter's source, and the keys
of every representation the detector saw (which already cover checkpoint, data and transform).
The timings measured when the scores were computed are stored with them.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
from importlib import import_module, metadata
from pathlib import Path
from typing import Any

import numpy as np

DISTRIBUTIONS = {"pytorch_ood": "pytorch-ood", "openood": "openood", "inhouse": "ood-bench"}


def _library_version(library: str) -> str:
    try:
        return metadata.version(DISTRIBUTIONS.get(library, library))
    except metadata.PackageNotFoundError:
        return "unknown"


def _adapter_source_hash(library: str) -> str:
    from adapters.registry import ADAPTER_MODULES

    try:
        module = import_module(ADAPTER_MODULES[library])
        return hashlib.sha256(inspect.getsource(module).encode()).hexdigest()[:16]
    except Exception:
        return "unavailable"


def score_key(spec: dict[str, Any], rep_keys: dict[str, str], device: str) -> str:
    ident = {
        "spec": spec,
        "library_version": _library_version(spec["library"]),
        "adapter": _adapter_source_hash(spec["library"]),
        "representations": rep_keys,
        "device": device,
        "format": 1,
    }
    return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:32]


def load(cache_dir: Path, key: str) -> tuple[dict[str, np.ndarray], dict[str, Any]] | None:
    path = cache_dir / "scores" / f"{key}.npz"
    if not path.exists():
        return None
    try:
        with np.load(path) as z:
            meta = json.loads(str(z["__meta__"]))
            scores = {k: z[k] for k in z.files if k != "__meta__"}
    except Exception:
        return None
    return scores, meta


def save(cache_dir: Path, key: str, scores: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
    folder = cache_dir / "scores"
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f"{key}.tmp{os.getpid()}.npz"
    np.savez(tmp, __meta__=np.array(json.dumps(meta)), **scores)
    os.replace(tmp, folder / f"{key}.npz")

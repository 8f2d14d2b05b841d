"""The key of a job (:mod:`benchmark.jobs`): what decides its results.

The resolved config (paths that only say where things are on this machine apart), the sha256 of
a checkpoint file the config names, and each selected library's installed version and adapter
source (the score cache's own identity of a library).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf, open_dict

from benchmark.atomic import file_digest
from benchmark.jobs import FORMAT
from benchmark.paths import in_repo
from benchmark.runner.score_cache import library_identity

# where things are on this machine (and whether to resume), not what is computed
MACHINE_KEYS = (("cache_dir",), ("store",), ("resume",), ("data", "root"), ("data", "mirrors"),
                ("data", "download"), ("data", "download_dir"))


def _without(tree: dict[str, Any], path: tuple[str, ...]) -> None:
    node = tree
    for part in path[:-1]:
        node = node.get(part)
        if not isinstance(node, dict):
            return
    node.pop(path[-1], None)


def job_key(cfg: DictConfig) -> str:
    """sha256 (32 hex) of what decides a job's results (module docstring)."""
    resolved = OmegaConf.to_container(cfg, resolve=True)
    for path in MACHINE_KEYS:
        _without(resolved, path)
    checkpoint = (resolved.get("backbone") or {}).get("checkpoint")
    inputs = {}
    path = Path(in_repo(str(checkpoint))).expanduser() if checkpoint else None
    if path is not None and path.is_file():
        inputs["checkpoint_sha256"] = file_digest(path)
    libraries = sorted({str(d.get("library")) for d in (resolved.get("detectors") or {})
                        .values() if isinstance(d, dict)})
    ident = {"config": resolved, "inputs": inputs, "format": FORMAT,
             "libraries": {lib: library_identity(lib) for lib in libraries}}
    return hashlib.sha256(json.dumps(ident, sort_keys=True, default=str).encode()
                          ).hexdigest()[:32]


def setting_key(cfg: DictConfig) -> str:
    """The job key without the detectors: what runs of other detectors on the same data,
    backbone and settings share (a paper table joins their rows on it)."""
    bare = cfg.copy()
    with open_dict(bare):
        bare.detectors = {}
    return job_key(bare)


def detector_key(spec: dict[str, Any]) -> str:
    """One detector's identity: its spec (search space apart) and its library's version and
    adapter source."""
    core = {k: v for k, v in spec.items() if k != "search"}
    ident = {"spec": core, "library": library_identity(str(spec.get("library")))}
    return hashlib.sha256(json.dumps(ident, sort_keys=True, default=str).encode()
                          ).hexdigest()[:32]

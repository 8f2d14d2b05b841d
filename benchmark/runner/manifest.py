"""``manifest.json``: everything needed to reproduce or audit a run."""

from __future__ import annotations

import json
import platform
import re
import subprocess
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from omegaconf import DictConfig, OmegaConf

from adapters.registry import libraries, library_info
from benchmark import compute
from benchmark.paths import REPO, display_path, tidy
from benchmark.pipeline.backbones import training_record
from benchmark.runner.prepare import data_roots

if TYPE_CHECKING:
    from benchmark.runner.prepare import Prepared

CORE_PACKAGES = ["torch", "torchvision", "hydra-core", "numpy", "scikit-learn", "pandas",
                 "ood-bench"]


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def library_versions(names: list[str]) -> dict[str, dict[str, Any]]:
    """Per library: its distribution, the version or commit the adapter is pinned to, and the
    version installed here (None: not installed)."""
    out: dict[str, dict[str, Any]] = {}
    for name in names:
        try:
            info = library_info(name)
        except Exception:
            continue
        dist = info.distribution or "ood-bench"
        installed = _version(dist)
        # a pinned version can be compared; a pinned commit is recorded for the reader
        comparable = info.pinned is not None and not re.fullmatch(r"[0-9a-f]{40}", info.pinned)
        out[name] = {"distribution": dist, "pinned": info.pinned, "installed": installed,
                     "matches_pin": (installed == info.pinned) if comparable else None}
    return out


def versions() -> dict[str, str | None]:
    """Python, the core packages and every known library's distribution."""
    dists = CORE_PACKAGES + [v["distribution"] for v in library_versions(libraries()).values()]
    out: dict[str, str | None] = {"python": platform.python_version()}
    out.update({dist: _version(dist) for dist in dict.fromkeys(dists)})
    return out


def git_commit() -> str | None:
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True,
                             text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=REPO, capture_output=True, text=True).stdout.strip()
        return sha + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return None


def device_description(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({compute.cpu_model()}, {torch.get_num_threads()} threads)"


def write_manifest(cfg: DictConfig, prep: Prepared, id_accuracy: float | None, out_dir: Path,
                   extra: dict[str, Any] | None = None) -> dict:
    """Write ``manifest.json``; ``extra`` adds top-level entries (e.g. tuning records)."""
    manifest = {
        "config": OmegaConf.to_container(cfg, resolve=True),
        "seeds": {"global": cfg.seed, "split": cfg.data.split_seed,
                  "backbone": cfg.backbone.recipe.seed},
        "splits": prep.splits.describe(),
        "datasets": {name: s.describe() for name, s in prep.sets.items()},
        # where datasets were looked up, in order (then data.download_dir)
        "data_roots": [display_path(p) for p in data_roots(cfg.data)],
        "skipped_ood_sets": prep.skipped,
        "backbone": {
            "name": cfg.backbone.name,
            "checkpoint": display_path(prep.backbone.checkpoint),
            "sha256": prep.backbone.sha256,
            "trained_this_run": prep.backbone.trained_now,
            "train_seconds": prep.backbone.train_seconds,
            "id_test_accuracy": id_accuracy,
            # what the wrapper found: head, feature maps (and how logits follow), layers
            "network": prep.backbone.model.describe(),
            "missing": prep.backbone.model.missing(),
            # how the checkpoint was trained (threads, CPU kernels), when the harness trained it
            "training": _without_mask(training_record(prep.backbone.checkpoint,
                                                      prep.backbone.sha256)),
            # rows of each split the backbone was trained on (fit: by design; held-out: 0,
            # else the run was refused); empty when the checkpoint records no training rows
            "training_rows_in_splits": prep.backbone.training_overlap,
        },
        "representations": {name: {"key": r.key, "from_cache": prep.cache_hits[name]}
                            for name, r in prep.reps.items()},
        "timings": prep.timings,
        "device": device_description(prep.device),
        "compute": compute.describe(prep.device),
        "versions": versions(),
        "libraries": library_versions(sorted({str(s["library"]) for s in
                                              cfg.detectors.values()})),
        "git_commit": git_commit(),
        **(extra or {}),
    }
    manifest = tidy(manifest)
    (out_dir / "manifest.json").write_text(json.dumps(manifest, indent=2, default=str))
    return manifest


def _without_mask(record: dict | None) -> dict | None:
    """A training record without its row mask (kept beside the checkpoint, not in manifests)."""
    if not record or "train_rows" not in record:
        return record
    rows = {k: v for k, v in record["train_rows"].items() if k != "mask_b64"}
    return {**record, "train_rows": rows}

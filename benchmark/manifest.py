"""``manifest.json``: everything needed to reproduce or audit a run."""

from __future__ import annotations

import json
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from omegaconf import DictConfig, OmegaConf

if TYPE_CHECKING:
    from benchmark.run import Prepared

PACKAGES = ["torch", "torchvision", "pytorch-ood", "hydra-core", "numpy", "scikit-learn",
            "pandas", "openood", "ood-bench"]


def versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {"python": platform.python_version()}
    for pkg in PACKAGES:
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = None
    return out


def git_commit() -> str | None:
    repo = Path(__file__).resolve().parents[1]
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True,
                             text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=repo, capture_output=True, text=True).stdout.strip()
        return sha + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return None


def device_description(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def display_path(path: Path | str) -> str:
    """The path with the home directory as ``~`` (manifests get committed under results/)."""
    text, home = str(path), str(Path.home())
    return "~" + text[len(home):] if text.startswith(home + "/") else text


def _tidy(obj):
    """Every string that is a path under the home directory, written with ``~``."""
    if isinstance(obj, dict):
        return {k: _tidy(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_tidy(v) for v in obj]
    return display_path(obj) if isinstance(obj, str) else obj


def write_manifest(cfg: DictConfig, prep: Prepared, id_accuracy: float, out_dir: Path) -> dict:
    manifest = {
        "config": OmegaConf.to_container(cfg, resolve=True),
        "seeds": {"global": cfg.seed, "split": cfg.data.split_seed,
                  "backbone": cfg.backbone.recipe.seed},
        "splits": prep.splits.describe(),
        "datasets": {name: s.describe() for name, s in prep.sets.items()},
        "skipped_ood_sets": prep.skipped,
        "backbone": {
            "name": cfg.backbone.name,
            "checkpoint": display_path(prep.backbone.checkpoint),
            "sha256": prep.backbone.sha256,
            "trained_this_run": prep.backbone.trained_now,
            "train_seconds": prep.backbone.train_seconds,
            "id_test_accuracy": id_accuracy,
        },
        "representations": {name: {"key": r.key, "from_cache": prep.cache_hits[name]}
                            for name, r in prep.reps.items()},
        "timings": prep.timings,
        "device": device_description(prep.device),
        "versions": versions(),
        "git_commit": git_commit(),
    }
    manifest = _tidy(manifest)
    (out_dir / "manifest.json").write_text(json.dumps(manifest, indent=2, default=str))
    return manifest

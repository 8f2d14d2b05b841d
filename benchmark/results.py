"""The one reader (and score-file writer) of run folders: ``metrics.csv``, ``manifest.json``,
Hydra's saved overrides and ``scores/<detector>.npz``.

A *run* is any directory holding a ``metrics.csv`` (a single ``ood-bench`` run, or one job of a
Hydra multirun). :func:`collect` reads every run under some roots into one frame of labelled
rows; reports, paper tables and studies read runs only through this module.
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml
from tqdm.auto import tqdm

METRICS_FILE = "metrics.csv"
MANIFEST_FILE = "manifest.json"
SCORES_DIR = "scores"
ID_TEST = "id_test"
OOD_PREFIX = "ood/"
# the groups an OOD set of a pair belongs to, in the order tables list them
GROUP_ORDER = ("near", "far", "covariate", "synthetic")
# overrides that make a *replicate* of the same setting, not another setting: runs that differ
# only in these are aggregated as mean ± sd (OpenOOD's protocol: several checkpoints)
REPLICATE_OVERRIDES = ("seed=", "backbone.recipe.seed=", "data.split_seed=",
                       "backbone.checkpoint=")


def is_replicate_override(override: str) -> bool:
    return str(override).lstrip("+~").startswith(REPLICATE_OVERRIDES)


# --------------------------------------------------------------------------- score files


def ood_key(name: str) -> str:
    """The split key of OOD set ``name`` (``ood/<name>``)."""
    return f"{OOD_PREFIX}{name}"


def encode_split(key: str) -> str:
    """A split key (``id_test``, ``ood/<name>``) as an ``.npz`` member name (no slash)."""
    return key.replace("/", "__")


def decode_split(member: str) -> str:
    return member.replace("__", "/")


def save_scores(run_dir: Path, detector: str, scores: Mapping[str, np.ndarray]) -> Path:
    """``<run_dir>/scores/<detector>.npz`` with one array per split key."""
    folder = run_dir / SCORES_DIR
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{detector}.npz"
    np.savez_compressed(path, **{encode_split(k): v for k, v in scores.items()})
    return path


def load_scores(run_dir: Path, detector: str) -> dict[str, np.ndarray]:
    """``{split key: float64 scores}`` of one detector of a run (empty if it saved none)."""
    path = run_dir / SCORES_DIR / f"{detector}.npz"
    if not path.exists():
        return {}
    with np.load(path) as z:
        return {decode_split(k): np.asarray(z[k], dtype=np.float64) for k in z.files}


# --------------------------------------------------------------------------- runs


@dataclass
class Run:
    """One run directory: its metric rows, manifest and the overrides that made it."""

    path: Path
    rel: str
    metrics: pd.DataFrame
    manifest: dict[str, Any] = field(default_factory=dict)
    overrides: list[str] = field(default_factory=list)
    # where the scores come from when not from ``path`` (a run read from the results store)
    score_loader: Callable[[str], dict[str, np.ndarray]] | None = None

    @property
    def config(self) -> dict[str, Any]:
        """The run's resolved config (manifest), else Hydra's saved ``.hydra/config.yaml``."""
        if self.manifest.get("config"):
            return self.manifest["config"]
        path = self.path / ".hydra" / "config.yaml"
        return yaml.safe_load(path.read_text()) if path.exists() else {}

    def scores(self, detector: str) -> dict[str, np.ndarray]:
        if self.score_loader is not None:
            return self.score_loader(detector)
        return load_scores(self.path, detector)


@dataclass
class Collection:
    """Every run found under the given roots and all their rows, labelled."""

    roots: list[Path]
    runs: list[Run]
    rows: pd.DataFrame

    def groups(self) -> list[tuple[str, str]]:
        """The (id_dataset, backbone) settings present, in order of appearance."""
        seen = self.rows[["id_dataset", "backbone"]].drop_duplicates()
        return [(str(a), str(b)) for a, b in seen.itertuples(index=False)]

    def run(self, rel: str) -> Run:
        return next(r for r in self.runs if r.rel == rel)


def _natural_key(path: Path) -> list[Any]:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", str(path))]


def find_runs(root: Path) -> list[Path]:
    """Directories under ``root`` (``root`` included) that hold a ``metrics.csv``."""
    root = Path(root)
    if (root / METRICS_FILE).exists():
        return [root]
    return sorted((p.parent for p in root.rglob(METRICS_FILE)), key=_natural_key)


def read_manifest(path: Path) -> dict[str, Any]:
    """A run's ``manifest.json`` (empty when it has none)."""
    file = path / MANIFEST_FILE
    return json.loads(file.read_text()) if file.exists() else {}


def load_run(path: Path, root: Path | None = None) -> Run:
    metrics = pd.read_csv(path / METRICS_FILE, keep_default_na=True)
    overrides: list[str] = []
    if (path / ".hydra" / "overrides.yaml").exists():
        overrides = [str(o) for o in yaml.safe_load((path / ".hydra" / "overrides.yaml")
                                                    .read_text()) or []]
    rel = str(path.relative_to(root)) if root is not None and path != root else "."
    return Run(path, rel, metrics, read_manifest(path), overrides)


def collect_store(store_dir: Path, where: str | None = None) -> Collection:
    """The runs of the results store (:mod:`benchmark.store`), optionally ``WHERE <where>``
    (DuckDB SQL over its columns), as a collection like :func:`collect`'s: reports read them
    without their run folders (scores come from the store)."""
    from benchmark import store

    stored = store.query(store_dir, where)
    if stored.empty:
        raise store.StoreError(f"no run in the store at {store_dir} matches {where!r}")
    runs = []
    for rid, rows in stored.groupby("run_id", sort=False):
        first = rows.iloc[0]
        metrics = store.metric_columns(rows).reset_index(drop=True)
        runs.append(Run(Path(str(first.run_folder)), f"{first.host}:{first.run_folder}",
                        metrics, json.loads(first.manifest), json.loads(first.overrides),
                        score_loader=lambda det, rid=rid: store.scores(store_dir, rid, det)))
    return _collection([], runs)


def collect(roots: Path | Sequence[Path]) -> Collection:
    """All runs under ``roots`` (a run dir, a sweep dir, or several) with labelled rows.

    A row's ``label`` is its detector id; when the same id comes from several runs (a parameter
    sweep), the overrides that distinguish those runs are appended, e.g.
    ``pytorch_ood_react [detectors.pytorch_ood_react.params.percentile=0.95]``. Runs that differ
    only in seeds or checkpoint files (:data:`REPLICATE_OVERRIDES`) are replicates of one
    setting: their rows keep the same label (tables show their mean ± sd).
    """
    roots = [Path(roots)] if isinstance(roots, (str, Path)) else [Path(r) for r in roots]
    runs: list[Run] = []
    for root in roots:
        paths = find_runs(root)
        if not paths:
            raise FileNotFoundError(f"no run (a folder with {METRICS_FILE}) under {root}")
        for p in tqdm(paths, desc=f"collect {root.name}", disable=len(paths) < 20, leave=False):
            run = load_run(p, root)
            if len(roots) > 1:  # keep runs of different roots apart
                run.rel = f"{root.name}/{run.rel}"
            runs.append(run)
    return _collection(roots, runs)


def _collection(roots: list[Path], runs: list[Run]) -> Collection:
    frames = []
    for run in runs:
        f = run.metrics.copy()
        f["run"] = run.rel
        seeds = run.manifest.get("seeds") or {}
        f["backbone_seed"] = seeds.get("backbone")
        f["split_seed"] = seeds.get("split")
        f["checkpoint_sha256"] = (run.manifest.get("backbone") or {}).get("sha256")
        frames.append(f)
    rows = pd.concat(frames, ignore_index=True)
    rows["error"] = rows["error"].astype(object).fillna("").astype(str)
    rows["label"] = _labels(rows, runs)
    return Collection(roots, runs, rows)


def _labels(rows: pd.DataFrame, runs: list[Run]) -> pd.Series:
    by_rel = {r.rel: r for r in runs}
    labels = rows["detector"].astype(str).copy()
    for det, grp in rows.groupby("detector", sort=False):
        rels = list(dict.fromkeys(grp["run"]))
        if len(rels) < 2:
            continue
        sets = [set(by_rel[r].overrides) for r in rels]
        common = set.intersection(*sets)
        for rel, ovr in zip(rels, sets, strict=True):
            distinct = sorted(o for o in ovr - common if not o.startswith("detector="))
            setting = [o for o in distinct if not is_replicate_override(o)]
            if distinct and not setting:  # another seed / checkpoint of the same setting
                continue
            suffix = ", ".join(setting) if setting else rel
            labels[(rows["detector"] == det) & (rows["run"] == rel)] = f"{det} [{suffix}]"
    return labels


def sweep_commands(roots: list[Path]) -> list[str]:
    """The ``ood-bench`` command lines behind the runs, from what Hydra saved.

    Every ``multirun.yaml`` under a root is one sweep; a run outside any sweep is a single
    ``ood-bench`` call (its ``.hydra/overrides.yaml``).
    """
    cmds = []
    for root in roots:
        sweeps = sorted(root.rglob("multirun.yaml"))
        for multirun in sweeps:
            h = (yaml.safe_load(multirun.read_text()) or {}).get("hydra", {})
            ovr = h.get("overrides", {})
            hydra_args = [a for a in ovr.get("hydra", []) or []
                          if not str(a).startswith("hydra.mode=")]
            args = list(ovr.get("task", []) or []) + hydra_args
            cmds.append("ood-bench -m " + " ".join(shlex.quote(str(a)) for a in args))
        swept = [m.parent for m in sweeps]
        for single in sorted(root.rglob(".hydra/overrides.yaml")):
            run = single.parent.parent
            if any(s == run or s in run.parents for s in swept):
                continue
            args = yaml.safe_load(single.read_text()) or []
            cmds.append("ood-bench " + " ".join(shlex.quote(str(a)) for a in args))
    if not roots:
        return ["(runs read from the results store: each run's overrides are in its "
                "`overrides` column)"]
    return cmds or ["(no Hydra overrides saved under the given folders)"]

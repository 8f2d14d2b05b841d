"""The results store: every finished run's rows, in one columnar store that many sweeps and
machines append to, queried with DuckDB.

Layout under the store folder (``store`` in the config; env ``OOD_BENCH_STORE``):
``metrics/<run id>.parquet`` (the run's metric rows with its intervals, keys, seeds, versions,
manifest and overrides) and ``scores/<run id>.parquet`` (one row per detector and split, the
scores as a list). One file per run, written atomically and named by the run folder (host and
path), so concurrent jobs never write the same file, a rerun of a folder replaces its own
rows, and a reader never sees half a run. Reports and paper tables read it back as runs
(:func:`collect_store`, :func:`find_rows`), so they need no run folder.

Keys: ``config_key`` is the job key (resolved config, checkpoint, library versions and
adapters); ``setting_key`` the same without the detectors (what a run of other detectors on
the same data and backbone shares); ``detector_key`` one detector's spec and library identity.
A paper table finds its rows by (``setting_key``, ``detector_key``), from whichever runs made
them.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import socket
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from benchmark.atomic import atomic_path

METRICS_DIR, SCORES_DIR = "metrics", "scores"
# columns the store adds to a run's metric rows
STORE_COLUMNS = ("run_id", "run_folder", "host", "finished_at", "config_key", "setting_key",
                 "detector_key", "backbone_seed", "split_seed", "checkpoint_sha256",
                 "versions", "manifest", "overrides")


class StoreError(FileNotFoundError):
    """No store, or nothing in it matches; the message says what to run."""


def run_id(run_dir: Path) -> str:
    """The id of a run folder on this machine (16 hex)."""
    ident = f"{socket.gethostname()}:{Path(run_dir).resolve()}"
    return hashlib.sha256(ident.encode()).hexdigest()[:16]


def _write_parquet(frame: pd.DataFrame, path: Path) -> None:
    import duckdb

    with atomic_path(path, suffix=".parquet") as tmp:
        duckdb.from_df(frame).write_parquet(str(tmp))


def append(store: Path, run_dir: Path, rows: pd.DataFrame, manifest: Mapping[str, Any],
           overrides: list[str], keys: Mapping[str, Any],
           scores: Mapping[str, Mapping[str, np.ndarray]]) -> str:
    """Add (or replace) the rows and scores of the run in ``run_dir``; returns its run id.
    ``keys``: ``config_key``, ``setting_key`` and ``detector_keys`` ({detector id: key})."""
    rid = run_id(run_dir)
    frame = rows.copy()
    seeds = manifest.get("seeds") or {}
    frame["run_id"] = rid
    frame["run_folder"] = str(Path(run_dir).resolve())
    frame["host"] = socket.gethostname()
    frame["finished_at"] = dt.datetime.now().isoformat(timespec="seconds")
    frame["config_key"] = keys["config_key"]
    frame["setting_key"] = keys["setting_key"]
    frame["detector_key"] = frame["detector"].map(dict(keys["detector_keys"]))
    frame["backbone_seed"] = seeds.get("backbone")
    frame["split_seed"] = seeds.get("split")
    frame["checkpoint_sha256"] = (manifest.get("backbone") or {}).get("sha256")
    frame["versions"] = json.dumps(manifest.get("versions") or {}, sort_keys=True)
    frame["manifest"] = json.dumps(manifest, sort_keys=True, default=str)
    frame["overrides"] = json.dumps(list(overrides))
    _write_parquet(frame, Path(store) / METRICS_DIR / f"{rid}.parquet")
    score_rows = [{"run_id": rid, "detector": det, "split": split,
                   "scores": np.asarray(values, dtype=np.float64).tolist()}
                  for det, splits in scores.items() for split, values in splits.items()]
    if score_rows:
        _write_parquet(pd.DataFrame(score_rows), Path(store) / SCORES_DIR / f"{rid}.parquet")
    return rid


def _glob(store: Path, kind: str) -> str:
    folder = Path(store) / kind
    if not folder.is_dir() or not any(folder.glob("*.parquet")):
        raise StoreError(f"no results store at {store} (no {kind}/*.parquet): runs append to "
                         "the store named by `store` (env OOD_BENCH_STORE) as they finish")
    return str(folder / "*.parquet").replace("'", "''")


def query(store: Path, where: str | None = None) -> pd.DataFrame:
    """Every stored metric row (optionally ``WHERE <where>``, DuckDB SQL over its columns)."""
    import duckdb

    sql = f"SELECT * FROM read_parquet('{_glob(store, METRICS_DIR)}', union_by_name=true)"
    if where:
        sql += f" WHERE {where}"
    try:
        frame = duckdb.sql(sql).df()
    except duckdb.Error as exc:
        raise StoreError(f"the store query failed ({where!r}): {exc}") from None
    return frame.sort_values(["finished_at", "run_id"], kind="stable").reset_index(drop=True)


def scores(store: Path, rid: str, detector: str) -> dict[str, np.ndarray]:
    """``{split key: scores}`` of one detector of one stored run (empty: none stored)."""
    import duckdb

    path = Path(store) / SCORES_DIR / f"{rid}.parquet"  # the run's own file, not every run's
    if not path.exists():
        return {}
    frame = duckdb.execute("SELECT split, scores FROM read_parquet(?) WHERE detector = ?",
                           [str(path), detector]).df()
    return {str(r.split): np.asarray(r.scores, dtype=np.float64) for r in frame.itertuples()}


def metric_columns(frame: pd.DataFrame) -> pd.DataFrame:
    """The rows as the run wrote them (the store's own columns dropped)."""
    return frame.drop(columns=[c for c in STORE_COLUMNS if c in frame.columns])


def find_rows(store: Path, setting_key: str, detector_keys: Mapping[str, str]
              ) -> pd.DataFrame:
    """Per wanted detector (``{detector id: detector key}``), its rows of the latest stored
    run of setting ``setting_key``; a detector no run has is absent."""
    frame = query(store, "setting_key = '" + setting_key.replace("'", "''") + "'")
    wanted = set(detector_keys.values())
    frame = frame[frame["detector_key"].isin(wanted)]
    latest = frame.groupby("detector_key")["finished_at"].transform("max")
    frame = frame[frame["finished_at"] == latest]
    return frame.drop_duplicates(["detector_key", "ood_dataset"], keep="last")

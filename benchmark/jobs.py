"""Job records: each run folder says, in ``job.json``, which job it holds (its key:
:func:`benchmark.runner.resume.job_key`) and whether it finished, so a rerun of an interrupted
sweep skips the jobs already complete.

A job is *complete* when its ``job.json`` says so, was written for the same job key, and every
output it lists is still there with the digest it had. Anything else (a killed job, another
config, an edited adapter) runs again; finished detectors still come back from the score cache.

:func:`sweep_jobs` is the other half: the jobs a sweep folder *should* hold, expanded from its
``multirun.yaml`` with Hydra's own sweep parser, each with its state (complete, failed,
interrupted, missing), for ``ood-bench --resume`` and the top of ``ood-bench-report``.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import socket
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from benchmark.atomic import atomic_path, file_digest
from benchmark.paths import display_path

JOB_FILE = "job.json"
FORMAT = 1
# outputs whose digests make a job's record (scores, tables, manifest)
OUTPUT_PATTERNS = ("metrics.csv", "manifest.json", "scores/*.npz")


def read(run_dir: Path) -> dict[str, Any] | None:
    """The run's ``job.json`` (None: none, or unreadable)."""
    try:
        return json.loads((Path(run_dir) / JOB_FILE).read_text())
    except (OSError, ValueError):
        return None


def _write(run_dir: Path, record: dict[str, Any]) -> None:
    with atomic_path(Path(run_dir) / JOB_FILE) as tmp:
        tmp.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")


def _now() -> str:
    return dt.datetime.now().isoformat(timespec="seconds")


def _outputs(run_dir: Path) -> dict[str, str]:
    files = sorted({p for pattern in OUTPUT_PATTERNS for p in Path(run_dir).glob(pattern)})
    return {p.relative_to(run_dir).as_posix(): file_digest(p) for p in files}


def is_complete(run_dir: Path, key: str) -> bool:
    """True when ``run_dir`` holds a finished job of ``key`` whose outputs are intact."""
    record = read(run_dir)
    if not record or record.get("status") != "complete" or record.get("key") != key:
        return False
    outputs = record.get("outputs") or {}
    try:
        return bool(outputs) and all(file_digest(Path(run_dir) / rel) == digest
                                     for rel, digest in outputs.items())
    except OSError:
        return False


def started(run_dir: Path, key: str) -> None:
    """Record the start of a job, with the machine and process that run it (a launcher's
    worker: on a cluster, which node)."""
    _write(run_dir, {"status": "running", "key": key, "started": _now(), "format": FORMAT,
                     "host": socket.gethostname(), "pid": os.getpid()})


def finished(run_dir: Path, key: str, error: BaseException | None = None) -> None:
    """Record the end of a job: complete with its outputs' digests, or failed with the error
    (a job that dies without reaching this stays ``running``: interrupted)."""
    record = read(run_dir) or {"key": key, "format": FORMAT}
    record.update(key=key, ended=_now())
    if error is None:
        record.update(status="complete", outputs=_outputs(run_dir))
    else:
        record.update(status="failed", error="".join(
            traceback.format_exception_only(type(error), error)).strip())
    _write(run_dir, record)


# --------------------------------------------------------------------------- sweeps

MULTIRUN_FILE = "multirun.yaml"


@dataclass
class SweepJob:
    """One job a sweep asked for: its overrides, its folder (None: never started), its state."""

    overrides: list[str]
    folder: Path | None
    state: str  # complete | failed | interrupted | missing
    error: str = ""

    @property
    def name(self) -> str:
        return " ".join(self.overrides) or "(no overrides)"


def sweep_overrides(sweep_dir: Path) -> tuple[list[str], list[str]]:
    """``(task overrides, hydra overrides)`` of the command that made the sweep."""
    h = (yaml.safe_load((Path(sweep_dir) / MULTIRUN_FILE).read_text()) or {}).get("hydra", {})
    ovr = h.get("overrides", {})
    hydra_args = [str(a) for a in ovr.get("hydra", []) or []
                  if not str(a).startswith(("hydra.mode=", "hydra.sweep.dir="))]
    return [str(a) for a in ovr.get("task", []) or []], hydra_args


def expected_jobs(sweep_dir: Path) -> list[list[str]]:
    """Every job's overrides, in job-number order, as Hydra's basic sweeper expands them."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    task, _ = sweep_overrides(sweep_dir)
    parsed = OverridesParser.create().parse_overrides(task)
    batches = BasicSweeper.split_arguments(parsed, None)
    return [list(job) for batch in batches for job in batch]


def _job_folders(sweep_dir: Path) -> dict[tuple[str, ...], Path]:
    out = {}
    for saved in Path(sweep_dir).rglob(".hydra/overrides.yaml"):
        overrides = yaml.safe_load(saved.read_text()) or []
        out[tuple(sorted(str(o) for o in overrides))] = saved.parent.parent
    return out


def sweep_jobs(sweep_dir: Path) -> list[SweepJob]:
    """The jobs of the sweep in ``sweep_dir`` with their states (module docstring)."""
    folders = _job_folders(sweep_dir)
    jobs = []
    for overrides in expected_jobs(sweep_dir):
        folder = folders.get(tuple(sorted(overrides)))
        record = read(folder) if folder is not None else None
        if folder is None:
            state, error = "missing", ""
        elif record is None:  # started before job records existed, or killed at once
            state = "complete" if (folder / "metrics.csv").exists() else "interrupted"
            error = ""
        else:
            state = {"complete": "complete", "failed": "failed"}.get(
                str(record.get("status")), "interrupted")
            error = str(record.get("error") or "")
        jobs.append(SweepJob(overrides, folder, state, error))
    return jobs


def sweeps_under(roots: list[Path]) -> list[Path]:
    """Sweep folders (holding a ``multirun.yaml``) under ``roots``."""
    found = []
    for root in roots:
        found += sorted(p.parent for p in Path(root).rglob(MULTIRUN_FILE))
    return found


def status_lines(roots: list[Path]) -> list[str]:
    """Markdown lines for the top of a report: per sweep, how many jobs are complete, and each
    job that is not (empty when every job of every sweep is complete)."""
    lines: list[str] = []
    for sweep in sweeps_under(roots):
        jobs = sweep_jobs(sweep)
        incomplete = [j for j in jobs if j.state != "complete"]
        if not incomplete:
            continue
        counts = {s: sum(j.state == s for j in jobs)
                  for s in ("complete", "failed", "interrupted", "missing")}
        lines += [f"**Incomplete sweep** `{sweep.name}`: {len(jobs)} jobs expected, "
                  + ", ".join(f"{n} {s}" for s, n in counts.items() if n)
                  + f". Finish it with `ood-bench --resume {display_path(sweep)}`; until then the "
                  "tables below lack these jobs' rows (an interrupted job's: some of them).",
                  ""]
        lines += [f"- {j.state}: `{j.name}`" + (f" ({j.error})" if j.error else "")
                  for j in incomplete]
        lines += [""]
    return lines

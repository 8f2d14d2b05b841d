"""Job-level resume: a sweep killed mid-way and resumed gives what an uninterrupted sweep
gives, and the report names the missing jobs until then."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from benchmark import jobs
from benchmark.results import load_scores
from tests.commands import REPO, ood_bench
from tests.conftest import SWEEP_SMALL

SWEEP = ["-m", "detector=pytorch_ood/msp,pytorch_ood/mahalanobis,pytorch_ood/energy",
         *SWEEP_SMALL]
DETECTORS = ["pytorch_ood_msp", "pytorch_ood_mahalanobis", "pytorch_ood_energy"]


def _job_dirs(sweep: Path) -> list[Path]:
    return sorted((p for p in sweep.iterdir() if p.is_dir()),
                  key=lambda p: int(p.name.split("_", 1)[0]))


def _outputs(run: Path) -> dict[str, int]:
    """What the job wrote (Hydra rewrites .hydra/ before any job runs), with mtimes."""
    return {p.name: p.stat().st_mtime_ns for p in run.rglob("*")
            if p.is_file() and ".hydra" not in p.parts}


def _comparable(run: Path) -> pd.DataFrame:
    """metrics.csv without its timing columns (and the cache provenance)."""
    frame = pd.read_csv(run / "metrics.csv")
    timing = [c for c in frame.columns if c.endswith(("seconds", "_mb")) or c == "from_cache"]
    return frame.drop(columns=timing)


def _kill_after_first_job(sweep: Path, cache: Path, root: Path) -> None:
    env = {**os.environ, "OOD_BENCH_CACHE": str(cache), "OOD_BENCH_DATA_ROOT": str(root)}
    proc = subprocess.Popen([sys.executable, "-m", "benchmark.cli", *SWEEP,
                             f"hydra.sweep.dir={sweep}"], cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    deadline = time.time() + 600
    while time.time() < deadline and proc.poll() is None:
        done = [d for d in sweep.glob("0_*") if (jobs.read(d) or {}).get("status") == "complete"]
        if done:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the sweep ended before it could be killed"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def test_killed_sweep_resumes_to_the_uninterrupted_result(root, tmp_path) -> None:
    whole = tmp_path / "whole"
    proc = ood_bench([*SWEEP, f"hydra.sweep.dir={whole}"], tmp_path / "cache-a", root)
    assert proc.returncode == 0, proc.stderr[-3000:]

    cut = tmp_path / "cut"
    _kill_after_first_job(cut, tmp_path / "cache-b", root)
    states = [j.state for j in jobs.sweep_jobs(cut)]
    assert states[0] == "complete" and "complete" not in states[1:], states
    first = _job_dirs(cut)[0]
    kept = _outputs(first)

    rep = subprocess.run([sys.executable, "-c", "from benchmark.cli import report_main; "
                          f"report_main([{str(cut)!r}, '--out', {str(tmp_path / 'rep')!r}])"],
                         cwd=REPO, capture_output=True, text=True, timeout=300)
    assert rep.returncode == 0, rep.stderr[-3000:]
    text = (tmp_path / "rep" / "report.md").read_text()
    assert "**Incomplete sweep**" in text and "3 jobs expected, 1 complete" in text
    assert "detector=pytorch_ood/energy" in text.split("## Summary")[0]

    proc = ood_bench(["--resume", str(cut)], tmp_path / "cache-b", root)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("skipped") == 1
    assert _outputs(first) == kept  # the complete job was not run again
    assert [j.state for j in jobs.sweep_jobs(cut)] == ["complete"] * 3

    a_dirs, b_dirs = _job_dirs(whole), _job_dirs(cut)
    assert [d.name for d in a_dirs] == [d.name for d in b_dirs]
    for a, b, det in zip(a_dirs, b_dirs, DETECTORS, strict=True):
        pd.testing.assert_frame_equal(_comparable(a), _comparable(b), check_exact=True)
        sa, sb = load_scores(a, det), load_scores(b, det)
        assert sa.keys() == sb.keys() and all(np.array_equal(sa[k], sb[k]) for k in sa)


def test_a_changed_config_or_damaged_output_runs_again(sweep, tmp_path) -> None:
    from omegaconf import OmegaConf

    from benchmark.runner.resume import job_key

    run = _job_dirs(sweep)[0]
    cfg = OmegaConf.load(run / ".hydra" / "config.yaml")
    key = job_key(cfg)
    assert jobs.is_complete(run, key)
    other = cfg.copy()
    other.data.fit_size = 999
    assert job_key(other) != key
    moved = cfg.copy()
    moved.cache_dir, moved.data.root = "/elsewhere/cache", "/elsewhere/data"
    assert job_key(moved) == key  # where things are is not what is computed
    record = json.loads((run / jobs.JOB_FILE).read_text())
    assert "metrics.csv" in record["outputs"]
    copy = tmp_path / "copy"
    subprocess.run(["cp", "-r", str(run), str(copy)], check=True)
    assert jobs.is_complete(copy, key)
    with open(copy / "metrics.csv", "a") as fh:
        fh.write("\n")
    assert not jobs.is_complete(copy, key)

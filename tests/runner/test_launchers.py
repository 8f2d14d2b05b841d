"""Sweeps through Hydra's launchers: local processes (joblib), a Ray cluster on this machine,
and submitit (the SLURM preset composed, its job run by submitit's local executor). Each must
give the basic launcher's tables, bit for bit (timings aside)."""

from __future__ import annotations

import importlib.util
import os
import secrets
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from benchmark import jobs
from tests.commands import REPO, ood_bench
from tests.conftest import SWEEP_DETECTORS, SWEEP_SMALL, unavailable

SWEEP = ["-m", "detector=pytorch_ood/msp,pytorch_ood/energy", *SWEEP_SMALL]


def _plugin(module: str, extra: str) -> None:
    if importlib.util.find_spec(module) is None:
        unavailable("launchers", f"{module} is not installed: pip install -e '.[{extra}]'")


def _tables(sweep: Path) -> dict[str, pd.DataFrame]:
    """Per detector, its job's metrics.csv without timing columns."""
    out = {}
    for csv in sweep.glob("*/metrics.csv"):
        frame = pd.read_csv(csv)
        timing = [c for c in frame.columns
                  if c.endswith(("seconds", "_mb")) or c == "from_cache"]
        out[str(frame.detector.iloc[0])] = frame.drop(columns=timing)
    return out


def _same_tables(a: Path, b: Path) -> None:
    ta, tb = _tables(a), _tables(b)
    assert sorted(ta) == sorted(tb) == sorted(SWEEP_DETECTORS)
    for det in ta:
        pd.testing.assert_frame_equal(ta[det], tb[det], check_exact=True)


def _launch(args: list[str], cache: Path, root: Path, env: dict[str, str] | None = None
            ) -> tuple[subprocess.CompletedProcess, int]:
    full = {**os.environ, "OOD_BENCH_CACHE": str(cache), "OOD_BENCH_DATA_ROOT": str(root),
            **(env or {})}
    proc = subprocess.Popen([sys.executable, "-m", "benchmark.cli", *args], cwd=REPO, env=full,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    stdout, stderr = proc.communicate(timeout=900)
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr), proc.pid


def test_joblib_with_two_workers_gives_the_basic_launchers_tables(sweep, root,
                                                                  tmp_path) -> None:
    _plugin("hydra_plugins.hydra_joblib_launcher", "launchers")
    out = tmp_path / "joblib"
    proc, pid = _launch([*SWEEP, "hydra/launcher=joblib", "hydra.launcher.n_jobs=2",
                         f"hydra.sweep.dir={out}"], tmp_path / "cache", root)
    assert proc.returncode == 0, proc.stderr[-3000:]
    _same_tables(sweep, out)
    records = [jobs.read(d) for d in out.iterdir() if d.is_dir()]
    assert all(r["status"] == "complete" and r["pid"] != pid for r in records)  # in workers
    hydra = yaml.safe_load(next(out.glob("0_*/.hydra/hydra.yaml")).read_text())["hydra"]
    assert "joblib" in hydra["launcher"]["_target_"] and hydra["launcher"]["n_jobs"] == 2


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_local_ray_cluster_runs_a_two_job_sweep(sweep, root, tmp_path) -> None:
    _plugin("hydra_plugins.hydra_ray_launcher", "ray")
    ray = shutil.which("ray", path=str(Path(sys.executable).parent)) or shutil.which("ray")
    assert ray, "the ray command is missing beside an installed Ray"
    port = _free_port()
    # Ray 2.60's `ray start` refuses token auth without a token (it makes none itself): the
    # test's own, for the head and the submitting client alike
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "token",
           "RAY_AUTH_TOKEN": secrets.token_hex(32)}
    start = subprocess.run([ray, "start", "--head", f"--port={port}", "--num-cpus=2",
                            "--include-dashboard=false", "--object-store-memory=200000000",
                            "--disable-usage-stats"], env=env, capture_output=True, text=True,
                           timeout=180)
    assert start.returncode == 0, start.stderr[-3000:]
    try:
        out = tmp_path / "ray"
        proc, pid = _launch([*SWEEP, "hydra/launcher=ray_cluster", f"hydra.sweep.dir={out}"],
                            tmp_path / "cache", root,
                            {**env, "RAY_ADDRESS": f"127.0.0.1:{port}"})
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert "Connected to Ray cluster" in proc.stderr + proc.stdout
    finally:
        subprocess.run([ray, "stop", "--force"], env=env, capture_output=True, timeout=120)
    _same_tables(sweep, out)
    assert all(jobs.read(d)["pid"] != pid for d in out.iterdir() if d.is_dir())


def test_the_slurm_preset_composes_and_its_jobs_run_under_submitit(sweep, root, tmp_path,
                                                                   monkeypatch) -> None:
    _plugin("hydra_plugins.hydra_submitit_launcher", "launchers")
    import submitit

    proc = ood_bench(["hydra/launcher=slurm", "hydra.launcher.partition=gpu", "compute.threads=4",
                      "--cfg", "all", "--resolve"], tmp_path / "cache", root)
    assert proc.returncode == 0, proc.stderr[-3000:]
    launcher = yaml.safe_load(proc.stdout)["hydra"]["launcher"]
    assert launcher["_target_"].endswith("submitit_launcher.SlurmLauncher")
    assert launcher["cpus_per_task"] == 4  # the run's pinned thread count
    # the sbatch script submitit makes from these settings, mapped as the launcher maps them
    # (no srun here: submitit's check for a SLURM node is bypassed, nothing is submitted)
    from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf
    from omegaconf import OmegaConf

    base = set(OmegaConf.structured(BaseQueueConf).keys())
    params = {k if k in base else f"slurm_{k}": v for k, v in launcher.items()
              if k not in ("_target_", "submitit_folder", "max_num_timeout")}
    monkeypatch.setattr(submitit.SlurmExecutor, "affinity", staticmethod(lambda: 1))
    executor = submitit.AutoExecutor(folder=tmp_path / "slurm", cluster="slurm")
    executor.update_parameters(**params)
    script = executor._executor._make_submission_file_text("python -u job.py", "uid")
    for line in ("#SBATCH --cpus-per-task=4", "#SBATCH --partition=gpu", "#SBATCH --mem=16GB",
                 "#SBATCH --time=240"):
        assert line in script, script
    # the same launcher code path, jobs run by submitit's local executor
    out = tmp_path / "submitit"
    proc, pid = _launch([*SWEEP, "hydra/launcher=submitit_local", "hydra.launcher.timeout_min=20",
                         f"hydra.sweep.dir={out}"], tmp_path / "cache", root)
    assert proc.returncode == 0, proc.stderr[-3000:]
    _same_tables(sweep, out)
    assert list((out / ".submitit").glob("*/*_result.pkl")), "submitit ran no job"
    assert all(jobs.read(d)["pid"] != pid for d in out.iterdir()
               if d.is_dir() and not d.name.startswith("."))


@pytest.mark.parametrize("launcher", ["joblib", "ray_cluster", "slurm"])
def test_a_launcher_without_its_plugin_says_what_to_install(launcher) -> None:
    from benchmark.config_groups import launcher_problem

    problem = launcher_problem(launcher, installed=lambda module: False)
    assert problem is not None and "pip install -e '.[" in problem
    assert launcher_problem(launcher, installed=lambda module: True) is None

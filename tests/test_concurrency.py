"""Caches under concurrency: two processes on one cache compute each entry once, and a lock
whose holder was killed does not block anyone."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

from benchmark.locks import entry_lock, lock_path
from tests.commands import REPO


def test_two_processes_train_and_extract_once(root, tmp_path) -> None:
    cache = tmp_path / "shared-cache"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen([sys.executable, "-m", "tests.concurrent_cache", str(cache),
                               str(root)], cwd=REPO, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = []
    for p in procs:
        stdout, stderr = p.communicate(timeout=600)
        assert p.returncode == 0, stderr[-3000:]
        outs.append(json.loads(stdout.strip().splitlines()[-1]))
    # one trained the backbone and one ran the forward pass; the other waited and read them
    assert sorted(o["trained"] for o in outs) == [False, True], outs
    assert sorted(o["extracted"] for o in outs) == [False, True], outs
    assert outs[0]["sha256"] == outs[1]["sha256"]
    assert outs[0]["arrays"] == outs[1]["arrays"]  # what the waiter read is what was written
    leftovers = [p.name for p in cache.rglob("*") if ".tmp" in p.name or p.suffix == ".partial"]
    assert leftovers == []


def test_a_killed_holder_releases_its_lock(tmp_path) -> None:
    entry = tmp_path / "entry.npz"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from pathlib import Path; "
         "from benchmark.locks import entry_lock\n"
         "with entry_lock(Path(sys.argv[1]), 'x'):\n print('held', flush=True); time.sleep(60)",
         str(entry)], cwd=REPO, stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    assert lock_path(entry).exists()
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()
    t0 = time.perf_counter()
    with entry_lock(entry, "x") as waited:
        assert waited < 5
    assert time.perf_counter() - t0 < 5

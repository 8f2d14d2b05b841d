"""The per-detector time limit: slow detectors fail as results, the run goes on."""

from __future__ import annotations

import signal
import time

import pandas as pd
import pytest

from benchmark.runner.time_limit import TimeLimitExceeded, time_limit
from tests.commands import SMALL, ood_bench


def test_limit_stops_a_python_loop_and_restores_the_handler() -> None:
    before = signal.getsignal(signal.SIGALRM)
    t0 = time.perf_counter()
    with pytest.raises(TimeLimitExceeded, match="slow/loop ran longer than 0.2 s"):
        with time_limit(0.2, "slow/loop"):
            while True:
                pass
    assert time.perf_counter() - t0 < 2.0
    assert signal.getsignal(signal.SIGALRM) is before


def test_broad_except_in_a_library_cannot_swallow_it() -> None:
    with pytest.raises(TimeLimitExceeded):
        with time_limit(0.1, "x"):
            try:
                time.sleep(5)
            except Exception:  # what a library might do
                pass


def test_no_limit_arms_no_timer_and_a_finished_block_disarms_it() -> None:
    with time_limit(None, "x"):
        assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)
    with time_limit(5, "x"):
        assert 0 < signal.getitimer(signal.ITIMER_REAL)[0] <= 5
    assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)  # no stray alarm later


def test_slow_detector_fails_with_the_limit_and_the_run_goes_on(root, tmp_path) -> None:
    gradnorm = ("+detectors.pytorch_ood_gradnorm={library: pytorch_ood, name: GradNorm, "
                "params: {param_filter: [fc.weight], micro_batch_size: 1}}")
    proc = ood_bench([*SMALL, "detector=pytorch_ood/msp", gradnorm, "detector_time_limit_s=1.5",
                      f"hydra.run.dir={tmp_path / 'run'}"], tmp_path / "cache", root)
    assert proc.returncode == 0, proc.stderr[-3000:]
    frame = pd.read_csv(tmp_path / "run" / "metrics.csv")
    slow = frame[frame.detector == "pytorch_ood_gradnorm"]
    assert len(slow) == 3 and (slow.status == "failed").all()
    assert slow.error.str.contains("TimeLimitExceeded: pytorch_ood/GradNorm ran longer").all()
    assert (frame[frame.detector == "pytorch_ood_msp"].status == "ok").all()

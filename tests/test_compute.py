"""Compute settings: pinned for a block, restored after it, rejected when malformed."""

from __future__ import annotations

import pytest
import torch
from omegaconf import OmegaConf

from benchmark import compute
from benchmark.config_groups import ConfigError


def test_pinned_sets_and_restores_threads_and_onednn() -> None:
    threads, onednn = torch.get_num_threads(), torch.backends.mkldnn.enabled
    other = 1 if threads != 1 else 2
    with compute.pinned(compute.ComputeSettings(threads=other, onednn=not onednn)):
        assert torch.get_num_threads() == other
        assert torch.backends.mkldnn.enabled is (not onednn)
        assert compute.describe()["threads"] == other
    assert torch.get_num_threads() == threads and torch.backends.mkldnn.enabled is onednn


def test_pinned_restores_after_an_error() -> None:
    threads = torch.get_num_threads()
    other = 1 if threads != 1 else 2
    with pytest.raises(KeyError), compute.pinned(compute.ComputeSettings(threads=other)):
        assert torch.get_num_threads() == other
        raise KeyError("boom")
    assert torch.get_num_threads() == threads


def test_null_threads_leaves_the_callers_setting() -> None:
    with compute.pinned(compute.ComputeSettings(threads=1)):  # not the default (2 here)
        with compute.pinned(compute.ComputeSettings(threads=None)):
            assert torch.get_num_threads() == 1


@pytest.mark.parametrize("bad", [0, -2, 1.5, "two"])
def test_bad_thread_counts_are_config_errors(bad) -> None:
    with pytest.raises(ConfigError, match="compute.threads"):
        compute.ComputeSettings.from_config(OmegaConf.create({"compute": {"threads": bad}}))


def test_settings_from_config_and_defaults() -> None:
    cfg = OmegaConf.create({"compute": {"threads": 3, "onednn": False}})
    assert compute.ComputeSettings.from_config(cfg) == compute.ComputeSettings(3, False)
    assert compute.ComputeSettings.from_config(OmegaConf.create({})) == compute.ComputeSettings()


def test_describe_names_the_kernel_path() -> None:
    d = compute.describe(torch.device("cpu"))
    assert d["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert d["cpu_model"] and d["torch"] == torch.__version__
    assert set(d) >= {"threads", "interop_threads", "onednn_available", "onednn_enabled"}

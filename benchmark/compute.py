"""The compute settings a number depends on, pinned for a block and recorded beside results.

Seeds fix the random draws, but the bits of a trained network also depend on how float sums
are split across threads (``torch.get_num_threads()``), on the CPU kernel path torch picked
(``torch.backends.cpu.get_cpu_capability()``: AVX2, AVX512, ...; ``ATEN_CPU_CAPABILITY``
overrides it) and on whether oneDNN kernels run convolutions. :func:`pinned` fixes the two that
a config can set (threads, oneDNN) for a block and restores the caller's; :func:`describe`
records all of them, so a checkpoint or a run says under what it was computed.
"""

from __future__ import annotations

import os
import platform
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from typing import Any

import torch

from benchmark.config_groups import ConfigError


@dataclass(frozen=True)
class ComputeSettings:
    """``threads``: intra-op threads (null: leave torch's default, machine-dependent);
    ``onednn``: use oneDNN (mkldnn) CPU kernels."""

    threads: int | None = 2
    onednn: bool = True

    @classmethod
    def from_config(cls, cfg: Any) -> ComputeSettings:
        """From a config's ``compute`` block (absent: the defaults)."""
        block = cfg.get("compute") if cfg is not None else None
        if not block:
            return cls()
        threads = block.get("threads", 2)
        if threads is not None and (not isinstance(threads, int) or threads < 1):
            raise ConfigError(f"compute.threads must be a positive integer or null, "
                             f"got {threads!r}")
        return cls(threads, bool(block.get("onednn", True)))


@contextmanager
def pinned(settings: ComputeSettings) -> Iterator[None]:
    """Run the block with ``settings``; the caller's thread count and oneDNN flag come back."""
    threads, onednn = torch.get_num_threads(), torch.backends.mkldnn.enabled
    try:
        if settings.threads is not None:
            torch.set_num_threads(settings.threads)
        # only the on/off switch: torch.backends.mkldnn.flags() would reset its other flags too
        torch.backends.mkldnn.enabled = settings.onednn
        yield
    finally:
        torch.set_num_threads(threads)
        torch.backends.mkldnn.enabled = onednn


@cache
def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``), else what ``platform`` knows."""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def bits(device: torch.device | None = None) -> dict[str, Any]:
    """What decides a training's bits beyond its seeds (the current settings): part of the
    cache key of a trained checkpoint."""
    if device is not None and device.type != "cpu":
        return {"device": device.type}
    now = describe(device)
    return {"device": "cpu", "threads": now["threads"], "onednn": now["onednn_enabled"],
            "cpu_capability": now["cpu_capability"]}


def describe(device: torch.device | None = None) -> dict[str, Any]:
    """What a computation here ran under, as recorded in manifests and checkpoint JSON."""
    out: dict[str, Any] = {
        "threads": torch.get_num_threads(),
        "interop_threads": torch.get_num_interop_threads(),
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "aten_cpu_capability_env": os.environ.get("ATEN_CPU_CAPABILITY"),
        "onednn_available": torch.backends.mkldnn.is_available(),
        "onednn_enabled": bool(torch.backends.mkldnn.enabled),
        "torch": torch.__version__,
    }
    if device is not None and device.type == "cuda":
        out["cuda_device"] = torch.cuda.get_device_name(device)
        out["cudnn_deterministic"] = bool(torch.backends.cudnn.deterministic)
    return out

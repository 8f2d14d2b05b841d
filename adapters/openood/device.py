"""Run OpenOOD's CUDA-only code on any device without editing it.

OpenOOD calls ``.cuda()`` on tensors and modules everywhere (the base ``inference``, most
``setup`` methods), builds tensors with ``device='cuda'`` (temperature scaling) and uses the
legacy ``torch.cuda.FloatTensor`` constructor (GMM, MDS ensemble). On a CPU-only machine every
postprocessor fails unmodified.

:func:`device_shim` patches exactly those entry points for the duration of a ``with`` block and
restores the originals on exit, even when the block raises:

* ``torch.Tensor.cuda`` / ``torch.nn.Module.cuda`` -> ``.to(device)``;
* ``device='cuda'`` (or ``'cuda:N'``, ``torch.device('cuda')``) passed to the common tensor
  factories (``torch.ones``, ``torch.zeros``, ``torch.tensor`` ...) -> ``device``;
* ``torch.cuda.FloatTensor`` / ``torch.cuda.LongTensor`` -> plain tensors on ``device``.

On a CUDA device nothing is patched: ``.cuda()`` is then the real thing, and the block runs under
``torch.cuda.device(device)`` so that ``.cuda()`` lands on the harness's GPU.

The patch is process-global while active (torch attributes are module state), so it is not
thread-safe: the harness runs detectors one after another. Nesting is fine (restoration is
LIFO).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

# Factories whose ``device=`` keyword is redirected while the shim is active.
FACTORIES = (
    "tensor", "as_tensor", "ones", "zeros", "empty", "full", "arange", "linspace", "eye",
    "rand", "randn", "randint", "randperm", "ones_like", "zeros_like", "empty_like", "full_like",
)
_MISSING = object()


def _is_cuda(device: Any) -> bool:
    if isinstance(device, torch.device):
        return device.type == "cuda"
    if isinstance(device, str):
        return device == "cuda" or device.startswith("cuda:")
    return False


def _redirect_factory(fn: Callable[..., Any], device: torch.device) -> Callable[..., Any]:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if _is_cuda(kwargs.get("device")):
            kwargs["device"] = device
        return fn(*args, **kwargs)

    wrapper.__ood_bench_shim__ = True  # type: ignore[attr-defined]
    return wrapper


def _legacy_constructor(dtype: torch.dtype, device: torch.device) -> Callable[..., torch.Tensor]:
    """``torch.cuda.FloatTensor(data)`` or ``torch.cuda.FloatTensor(*sizes)`` on ``device``."""

    def make(*args: Any) -> torch.Tensor:
        if len(args) == 1 and not isinstance(args[0], int):
            return torch.as_tensor(args[0], dtype=dtype).to(device)
        return torch.empty(*args, dtype=dtype, device=device)

    return make


class _Patcher:
    """Set attributes and remember how to undo it exactly (including 'was not there')."""

    def __init__(self) -> None:
        self._undo: list[tuple[Any, str, Any]] = []

    def set(self, owner: Any, name: str, value: Any) -> None:
        # look in the owner's own namespace, not inherited attributes: restoring an inherited
        # one must delete the override, not copy the base attribute onto the subclass
        own = vars(owner) if isinstance(owner, type) else owner.__dict__
        self._undo.append((owner, name, own.get(name, _MISSING)))
        setattr(owner, name, value)

    def restore(self) -> None:
        while self._undo:
            owner, name, old = self._undo.pop()
            if old is _MISSING:
                delattr(owner, name)
            else:
                setattr(owner, name, old)


def resolve_device(device: torch.device | str | None) -> torch.device:
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


@contextmanager
def device_shim(device: torch.device | str | None) -> Iterator[torch.device]:
    """Make OpenOOD's ``.cuda()`` calls target ``device`` inside the block; yields the device."""
    device = resolve_device(device)
    if device.type == "cuda":
        with torch.cuda.device(device):
            yield device
        return
    patcher = _Patcher()
    try:
        def tensor_cuda(self: torch.Tensor, device_arg: Any = None, non_blocking: bool = False,
                        **_: Any) -> torch.Tensor:
            return self.to(device, non_blocking=non_blocking)

        def module_cuda(self: nn.Module, device_arg: Any = None) -> nn.Module:
            return self.to(device)

        patcher.set(torch.Tensor, "cuda", tensor_cuda)
        patcher.set(nn.Module, "cuda", module_cuda)
        for name in FACTORIES:
            patcher.set(torch, name, _redirect_factory(getattr(torch, name), device))
        patcher.set(torch.cuda, "FloatTensor", _legacy_constructor(torch.float32, device))
        patcher.set(torch.cuda, "LongTensor", _legacy_constructor(torch.int64, device))
        yield device
    finally:
        patcher.restore()

"""Build a detector from its config entry: ``{library, name, params}``.

Each adapter module exposes ``build(name, params) -> Detector`` and ``available() -> list``;
importing it may fail (an optional library not installed), which becomes a clear error here.
"""

from __future__ import annotations

import importlib
from typing import Any

from adapters.base import Detector, DetectorError

ADAPTER_MODULES = {
    "pytorch_ood": "adapters.pytorch_ood",
    "openood": "adapters.openood",
    "inhouse": "adapters.inhouse",
}

INSTALL_HINTS = {
    "pytorch_ood": "pip install 'pytorch-ood==0.4.0'",
    "openood": "see README.md, section 'Installing OpenOOD' (pip install -e '.[openood]' plus "
    "OpenOOD itself from its GitHub repository, pinned commit)",
    "inhouse": "it ships with ood-bench; reinstall with pip install -e .",
}


def build_detector(library: str, name: str, params: dict[str, Any] | None = None) -> Detector:
    if library not in ADAPTER_MODULES:
        raise DetectorError(
            f"unknown detector library {library!r}; valid: {', '.join(sorted(ADAPTER_MODULES))}"
        )
    try:
        module = importlib.import_module(ADAPTER_MODULES[library])
    except ImportError as exc:
        raise DetectorError(
            f"library {library!r} is not importable ({exc}); install it: {INSTALL_HINTS[library]}"
        ) from exc
    return module.build(name, dict(params or {}))

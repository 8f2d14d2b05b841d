"""OpenOOD (GitHub ``Jingkang50/OpenOOD``, pinned commit) behind the harness interface.

The facts live here and in ``.specs`` (both importable without OpenOOD); the detectors in
``.adapter``, which imports OpenOOD when a detector is built. OpenOOD's own postprocessor values
at the pinned commit are package data in ``postprocessor_configs/<name>.yml``.
"""

from __future__ import annotations

from typing import Any

from adapters.base import Detector, LibraryInfo
from adapters.openood.specs import LEFT_OUT, SPECS, WORKAROUNDS

# after v1.5: FPR@95 with OOD positive, AUPR-In/Out un-swapped
PINNED_COMMIT = "3c35632ee91b54b09d1f085d04f94744cece7d0b"
LIBRARY_INFO = LibraryInfo(
    name="openood",
    title="OpenOOD",
    package="openood",
    distribution="openood",
    pinned=PINNED_COMMIT,
    install_hint="see README.md, section 'Installing OpenOOD' (pip install -e '.[openood]' plus "
    "OpenOOD itself from its GitHub repository, pinned commit)",
    install_doc="docs/openood-install.md",
    workarounds=WORKAROUNDS,
    left_out=LEFT_OUT,
    methods={name: spec.method or name for name, spec in SPECS.items()},
    import_setup="adapters.openood.compat:ensure_importable",  # imgaug placeholder (numpy 2)
)


def available() -> list[str]:
    return sorted(SPECS)


def build(name: str, params: dict[str, Any] | None = None) -> Detector:
    from adapters.openood.adapter import build as build_detector

    return build_detector(name, dict(params or {}))

"""Oodeel 0.4.0 (PyPI ``oodeel``, DEEL project) behind the harness interface.

The facts live here and in ``.specs`` (both importable without Oodeel); the detectors in
``.adapter``, which imports Oodeel when a detector is built.

The install trap, measured from the 0.4.0 wheel: it declares ``numpy<=1.26.4`` (and its
``[torch]`` extra ``torch==1.13.1``), so a plain ``pip install oodeel`` beside numpy 2 / a
current torch either downgrades both or resolves to an older Oodeel. Its code runs unchanged on
numpy 2 and torch 2.x: install ``.[oodeel]`` (its real imports, faiss for DKNN included) and
then Oodeel itself without its dependencies (README, "Installing Oodeel").
"""

from __future__ import annotations

from typing import Any

from adapters.base import Detector, LibraryInfo
from adapters.oodeel.specs import SPECS

LIBRARY_INFO = LibraryInfo(
    name="oodeel",
    title="Oodeel",
    package="oodeel",
    distribution="oodeel",
    pinned="0.4.0",
    install_hint="pip install -e '.[oodeel]' && pip install --no-deps 'oodeel==0.4.0' (its "
    "declared numpy<=1.26.4 does not resolve beside numpy 2; see README, 'Installing Oodeel')",
    install_doc="docs/oodeel-install.md",
    # every method runs on CPU unmodified; DKNN's faiss is an undeclared dependency (its issue
    # #119), installed by the extra and counted by the ease study as such, not as a workaround
    workarounds={},
    left_out={},
    methods={name: spec.method for name, spec in SPECS.items()},
)


def available() -> list[str]:
    return sorted(SPECS)


def build(name: str, params: dict[str, Any] | None = None) -> Detector:
    from adapters.oodeel.adapter import build as build_detector

    return build_detector(name, dict(params or {}))

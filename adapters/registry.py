"""Which detector libraries exist, their facts, and building a detector from a config entry.

A detector config names its library (``{library, name, params}``) in one of three ways:

* a built-in adapter: ``pytorch_ood``, ``openood``, ``inhouse`` (``adapters.<name>``);
* an adapter another package registers under the entry-point group ``ood_bench.adapters``
  (``[project.entry-points."ood_bench.adapters"] mylib = "my_pkg.my_adapter"``);
* any importable module path (``library: my_pkg.my_adapter``).

An adapter module offers ``build(name, params) -> Detector`` and ``available() -> list[str]``,
and ``LIBRARY_INFO`` (:class:`~adapters.base.LibraryInfo`; a plain default when it has none).
Importing an adapter never imports its library; building a detector does, and an ImportError
there becomes a DetectorError with the library's install hint.
"""

from __future__ import annotations

import ast
import functools
import importlib
import importlib.util
import sys
import time
from importlib import metadata
from pathlib import Path
from types import ModuleType
from typing import Any

from adapters.base import Detector, DetectorError, LibraryInfo

BUILTIN = ("pytorch_ood", "openood", "oodeel", "inhouse", "anomaly")
ENTRY_POINT_GROUP = "ood_bench.adapters"


def _entry_points() -> dict[str, str]:
    return {ep.name: ep.value for ep in metadata.entry_points(group=ENTRY_POINT_GROUP)}


def libraries() -> list[str]:
    """Every library known without being named: the built-in ones, then entry points."""
    return list(dict.fromkeys([*BUILTIN, *_entry_points()]))


def module_path(library: str) -> str:
    """The adapter module of ``library`` (built-in, entry point, or the name itself)."""
    if library in BUILTIN:
        return f"adapters.{library}"
    return _entry_points().get(library, library)


def adapter_module(library: str) -> ModuleType:
    """The imported adapter module; DetectorError when there is none by that name."""
    path = module_path(library)
    if path not in sys.modules:
        try:
            found = importlib.util.find_spec(path) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            raise DetectorError(
                f"unknown detector library {library!r}; valid: {', '.join(libraries())}, or "
                "the path of an importable adapter module (library: my_pkg.my_adapter)")
    try:
        module = importlib.import_module(path)
    except ImportError as exc:
        raise DetectorError(f"adapter {path!r} of library {library!r} failed to import: "
                            f"{exc}") from exc
    missing = [f for f in ("build", "available") if not callable(getattr(module, f, None))]
    if missing:
        raise DetectorError(f"module {path!r} is not a detector adapter: it has no "
                            f"{' or '.join(missing)} (see adapters/base.py)")
    return module


def library_info(library: str) -> LibraryInfo:
    """The adapter's ``LIBRARY_INFO``, or a default built from its module path."""
    info = getattr(adapter_module(library), "LIBRARY_INFO", None)
    if isinstance(info, LibraryInfo):
        return info
    return LibraryInfo(name=library, title=library, package=module_path(library).split(".")[0],
                       distribution=None, pinned=None,
                       install_hint=f"make {module_path(library)!r} importable")


def available(library: str) -> list[str]:
    return list(adapter_module(library).available())


def build_detector(library: str, name: str, params: dict[str, Any] | None = None) -> Detector:
    """A detector of ``library`` named ``name``; the library's install hint if it is missing."""
    module = adapter_module(library)
    try:
        return module.build(name, dict(params or {}))
    except ImportError as exc:
        hint = library_info(library).install_hint
        raise DetectorError(f"library {library!r} is not importable ({exc}); install it: "
                            f"{hint}") from exc


def installed_version(library: str) -> str:
    """The installed version of the library's distribution ('unknown' when not installed)."""
    info = library_info(library)
    try:
        return metadata.version(info.distribution or "ood-bench")
    except metadata.PackageNotFoundError:
        return "unknown"


def adapter_files(library: str) -> list[Path]:
    """The adapter's source: its module, or every ``.py`` of its package."""
    spec = importlib.util.find_spec(module_path(library))
    if spec is None or spec.origin is None or not spec.origin.endswith(".py"):
        return []
    origin = Path(spec.origin)
    if origin.name == "__init__.py":
        return sorted(origin.parent.rglob("*.py"))
    return [origin]


def imported_modules(files: list[Path]) -> set[str]:
    """Every module named in an import statement of ``files`` (absolute imports)."""
    out: set[str] = set()
    for f in files:
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.Import):
                out.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                out.add(node.module)
    return out


def library_imports(info: LibraryInfo, files: list[Path]) -> list[str]:
    """The modules of ``info``'s library that ``files`` import (at their top or inside a
    function: what using the library through the adapter imports)."""
    top = info.package
    mods = sorted(m for m in imported_modules(files) if m == top or m.startswith(top + "."))
    return mods or [top]


@functools.cache
def library_modules(library: str) -> tuple[str, ...]:
    """:func:`library_imports` of ``library``'s adapter."""
    return tuple(library_imports(library_info(library), adapter_files(library)))


def import_library(library: str) -> float:
    """Import every module of the library its adapter imports, after the adapter's
    ``import_setup``; the seconds it took (about 0 once imported). The runner calls it before
    a detector's fit, so that import time is charged to ``import_seconds``, never to a fit.
    A library the registry does not know (a detector built by other means) has nothing to
    import: 0."""
    try:
        modules = library_modules(library)
        info = library_info(library)
    except DetectorError:
        return 0.0
    t0 = time.perf_counter()
    if info.import_setup:
        mod, func = info.import_setup.split(":")
        getattr(importlib.import_module(mod), func)()
    for name in modules:
        importlib.import_module(name)
    return time.perf_counter() - t0


def source_files(library: str) -> list[Path]:
    """The code that decides a library's scores: the adapter, plus the library's own package
    when it ships with ood-bench (no distribution version would tell a change)."""
    files = adapter_files(library)
    info = library_info(library)
    if info.distribution is None:
        spec = importlib.util.find_spec(info.package)
        if spec is not None and spec.submodule_search_locations:
            for folder in spec.submodule_search_locations:
                files += sorted(Path(folder).rglob("*.py"))
    return list(dict.fromkeys(files))

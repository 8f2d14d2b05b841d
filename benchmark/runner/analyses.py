"""Analyses a library offers beyond scores, run on the detectors the runner fitted.

A library's ``LIBRARY_INFO.analyses`` names a module with ``TITLE`` (the heading of its file)
and ``analyse(det_id, detector, reps, folder, link, settings) -> str`` (a Markdown section;
files go to ``folder``, linked from the section as ``link/<file>``), and optionally
``applies(spec) -> bool`` (the detectors it analyses; default: all of the library's). The
runner writes ``analysis_<library>.md`` with one section per detector of that library.
Results are cached under the detector's score key, the analysis code and the settings; on a
score-cache hit the detector is fitted again only when the analysis itself is not cached.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import logging
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from adapters.base import Detector
from adapters.registry import library_info
from benchmark.atomic import atomic_path
from benchmark.representations import Network, Representations
from benchmark.runner.evaluate import build, error_text
from benchmark.runner.score_cache import source_hash

log = logging.getLogger(__name__)
SECTION_FILE = "section.md"


@dataclass
class Fitted:
    """One detector the run scored: its config entry, the fitted detector if this process
    fitted it, and the key its scores are cached under."""

    spec: dict[str, Any]
    detector: Detector | None
    score_key: str


def hook(library: str) -> ModuleType | None:
    """The analysis module of ``library``, or None when it offers none."""
    try:
        name = library_info(library).analyses
    except Exception:
        return None
    return importlib.import_module(name) if name else None


def _code_hash(module: ModuleType, library: str) -> str:
    """The analysis code (every file of it, when it is a package) and the library's."""
    path = Path(module.__file__ or "")
    files = sorted(path.parent.glob("*.py")) if path.name == "__init__.py" else [path]
    h = hashlib.sha256()
    for f in files:
        h.update(f.read_bytes())
    h.update(source_hash(library).encode())
    return h.hexdigest()[:12]


def _section(det_id: str, library: str, module: ModuleType, fitted: Fitted,
             reps: dict[str, Representations], network: Network, out_dir: Path,
             settings: Mapping[str, Any], cache_dir: Path | None) -> str:
    folder = out_dir / library / det_id
    folder.mkdir(parents=True, exist_ok=True)
    ident = json.dumps({"settings": dict(settings), "code": _code_hash(module, library)},
                       sort_keys=True, default=str)
    tag = hashlib.sha256(ident.encode()).hexdigest()[:12]
    cached = None if cache_dir is None else cache_dir / "analysis" / f"{fitted.score_key}-{tag}"
    if cached is not None and (cached / SECTION_FILE).exists():
        shutil.copytree(cached, folder, dirs_exist_ok=True)
        (folder / SECTION_FILE).unlink(missing_ok=True)
        return (cached / SECTION_FILE).read_text()
    detector = fitted.detector
    if detector is None:  # scores came from the cache: fit it now
        detector = build(fitted.spec)
        detector.fit(reps["fit"], network, calibration=reps["calibration"])
    section = module.analyse(det_id, detector, reps, folder, f"{library}/{det_id}", settings)
    if cached is not None:
        with atomic_path(cached) as tmp:
            shutil.copytree(folder, tmp)
            (tmp / SECTION_FILE).write_text(section)
    return section


def write_analyses(library: str, fitted: dict[str, Fitted], reps: dict[str, Representations],
                   network: Network, out_dir: Path, settings: Mapping[str, Any],
                   cache_dir: Path | None) -> Path | None:
    """``analysis_<library>.md`` for the fitted detectors of ``library`` (failures noted)."""
    module = hook(library)
    if module is None or not fitted:
        return None
    applies = getattr(module, "applies", None)  # optional: which detectors it analyses
    chosen = {d: f for d, f in fitted.items() if applies is None or applies(f.spec)}
    if not chosen:
        return None
    sections = []
    for det_id, one in chosen.items():
        try:
            sections.append(_section(det_id, library, module, one, reps, network, out_dir,
                                     settings, cache_dir))
        except Exception as exc:  # an analysis failure must not cost the run its tables
            log.warning("%s analysis of %s failed: %s", library, det_id, exc)
            sections.append(f"## {det_id}\n\nanalysis failed: {error_text(exc)}\n")
    path = out_dir / f"analysis_{library}.md"
    path.write_text(module.TITLE + "\n".join(sections))
    return path

"""Ease-of-use study: what it takes to install, import and wrap each library, measured by code.

One record per library the registry knows (a new adapter appears by itself), written to
``ease_of_use.csv``; ``ood-bench-report`` renders it. Every number is measured here, in a fresh
interpreter per measurement (:mod:`benchmark.studies.ease.probe`); what cannot be measured
(library not installed in any interpreter given) is reported as such, never guessed. The facts
about a library (package, distribution, install hint and guide, CPU workarounds) come from its
adapter's ``LIBRARY_INFO``.

* **PyPI**: ``pip index versions <dist>`` against https://pypi.org/simple only (local mirrors and
  find-links disabled). How the installed copy got there: its ``direct_url.json`` (PEP 610):
  absent = installed from an index; otherwise the source directory / VCS URL it came from.
* **Extra steps**: the install hint, and the install guide if the library has one (its pip /
  conda / apt / git-clone lines, alternatives included).
* **Dependencies**: *declared* = the distribution's ``Requires-Dist`` (extras left out, markers
  evaluated). *Imported* = the distributions owning the modules that importing the library
  modules the adapter imports (its import statements) pulls into a bare interpreter
  (``sys.modules`` before/after). *Needed* = those the library's own source imports, the
  declared ones, and what they require (transitively); the rest were imported only because they
  happen to be installed (*opportunistic*, e.g. Cython). *Undeclared* = imported by the
  library's own source, but neither declared nor required by a declared one; *pulled in by
  those* = needed only through an undeclared one; *unused* = declared, yet not imported;
  *broken* = declared but not installed, or installed at a version the declaration excludes.
* **Footprint**: the library's own installed files, and with every dependency it declares or
  needs that the torch + torchvision base does not already bring (sizes from the installed
  files).
* **Import time**: median wall time of importing those modules in a fresh interpreter that has
  already imported torch, torchvision and numpy (so it is the library's own cost);
  ``repeats`` runs.
* **Adapter lines of code**: non-blank lines that are not comments or docstrings in the
  adapter's module (or package), divided by the detectors the adapter supports
  (``available()``).
* **CPU out of the box**: from ``LIBRARY_INFO.workarounds`` (``{detector or "*": [...]}``);
  detectors with no entry count as working on CPU unmodified. The sweep's own evidence
  (detectors that ran ok on CPU through the adapter) is recorded beside it.
* **Code signals** of the library's installed source: public functions and methods (no leading
  underscore, in non-private modules) with a docstring, and with full type hints (every
  parameter but ``self``/``cls`` and the return annotated); ``ruff`` findings per 1,000 lines
  with the fixed rule set ``RUFF_RULES`` (``--isolated``, Python 3.10 target).
"""

from __future__ import annotations

import json
import os
import re
import statistics
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd
from tqdm.auto import tqdm

from adapters.base import LibraryInfo
from adapters.registry import (
    adapter_files,
    available,
    libraries,
    library_imports,
    library_info,
    module_path,
)
from benchmark.paths import REPO, display_path
from benchmark.studies.ease import CSV_FILE
from benchmark.studies.ease.probe import MARK
from benchmark.studies.ease.sources import (
    api_signals,
    code_lines,
    doc_commands,
    ruff_findings,
)

PROBE_FILE = Path(__file__).with_name("probe.py")

BASE_DISTS = ("torch", "torchvision")
PREIMPORT = ("torch", "torchvision", "numpy")


def run_probe(python: str, args: dict[str, Any], timeout: float = 600) -> dict[str, Any]:
    """Run the probe program in a fresh ``python`` (cwd = repo); its JSON answer or an error."""
    try:
        proc = subprocess.run([python, str(PROBE_FILE), json.dumps(args)], cwd=REPO,
                              capture_output=True, text=True, timeout=timeout,
                              env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})
    except (OSError, subprocess.TimeoutExpired) as exc:
        return {"probe_error": f"{type(exc).__name__}: {exc}"}
    for line in proc.stdout.splitlines():
        if line.startswith(MARK):
            return json.loads(line.removeprefix(MARK))
    tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
    return {"probe_error": f"probe exited {proc.returncode}: {tail[0][:300]}"}


def on_pypi(dist: str, timeout: float = 60) -> tuple[bool | None, str]:
    """(is ``dist`` on pypi.org, latest version or the reason it is unknown)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    env.update(PIP_CONFIG_FILE=os.devnull, PIP_DISABLE_PIP_VERSION_CHECK="1")
    cmd = [sys.executable, "-m", "pip", "index", "versions", dist, "--index-url",
           "https://pypi.org/simple"]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return None, f"unknown ({type(exc).__name__})"
    m = re.search(rf"^{re.escape(dist)} \(([^)]+)\)", proc.stdout, re.M | re.I)
    if proc.returncode == 0 and m:
        return True, m.group(1)
    if "No matching distribution" in proc.stderr:
        return False, "no distribution on pypi.org"
    return None, f"unknown (pip exited {proc.returncode})"


def workaround_counts(declared: Any, detectors: list[str]) -> tuple[int | None, list[str]]:
    """(detectors that need no workaround on CPU, the workarounds) from a workarounds mapping
    ``{detector or "*": [workaround, ...]}`` (a plain list: every detector)."""
    if declared is None:
        return None, []
    if isinstance(declared, (list, tuple)):
        declared = {"*": list(declared)}
    if not isinstance(declared, Mapping):
        return None, [f"unreadable workarounds: {declared!r}"[:200]]
    items: list[str] = []
    needing: set[str] = set()
    for det, ws in declared.items():
        ws = [ws] if isinstance(ws, str) else list(ws or [])
        if not ws:
            continue
        needing |= set(detectors) if det == "*" else {str(det)}
        items += [f"{'all' if det == '*' else det}: {w}" for w in ws]
    return len([d for d in detectors if d not in needing]), items


def fallback_interpreter(library: str) -> str | None:
    """``<repo>/.venv-<library>/bin/python`` if the project keeps a venv for it."""
    for name in (library, library.replace("_", "-")):
        p = REPO / f".venv-{name}" / "bin" / "python"
        if p.exists():
            return str(p)
    return None


def _display(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(REPO))
    except ValueError:
        return str(path)


def _url_text(url: str) -> str:
    """A direct-install URL without this machine's paths: a local file or folder by its name."""
    if url.startswith("file://"):
        return f"local file {Path(url.removeprefix('file://')).name}"
    return url


def _installed_from(direct_url: str | None) -> str:
    if not direct_url:
        return "package index (wheel/sdist)"
    try:
        d = json.loads(direct_url)
    except json.JSONDecodeError:
        return "direct URL (unreadable)"
    if d.get("dir_info", {}).get("editable"):
        return f"editable source checkout {_url_text(d.get('url', ''))}"
    if "vcs_info" in d:
        return f"VCS {_url_text(d.get('url', ''))}@{d['vcs_info'].get('commit_id', '')[:12]}"
    return f"source {_url_text(d.get('url', ''))}"


def _sweep_cpu_evidence(library: str, rows: pd.DataFrame | None) -> dict[str, Any]:
    if rows is None or rows.empty:
        return {"sweep_cpu_ok": None, "sweep_cpu_run": None}
    sub = rows[(rows["library"] == library) & (rows["device"].astype(str).str.startswith("cpu"))]
    if sub.empty:
        return {"sweep_cpu_ok": None, "sweep_cpu_run": 0}
    ok = sub.groupby("label")["status"].apply(lambda s: bool((s == "ok").all()))
    return {"sweep_cpu_ok": int(ok.sum()), "sweep_cpu_run": len(ok)}


def _probe_full(library: str, python: str, base_args: dict[str, Any],
                pythons: Mapping[str, str]) -> tuple[str, dict[str, Any]]:
    full = run_probe(python, {**base_args, "mode": "full"})
    if not full.get("import_ok") and library not in pythons:
        alt = fallback_interpreter(library)
        if alt:
            python = alt
            full = run_probe(python, {**base_args, "mode": "full"})
    return python, full


def _dependencies(full: dict[str, Any], info: LibraryInfo, installed: bool) -> dict[str, Any]:
    rec: dict[str, Any] = {}
    rec["declared"] = ", ".join(full.get("declared", [])) if installed and info.distribution else ""
    rec["n_declared"] = (len(full.get("declared", []))
                         if info.distribution and installed else None)
    needed = sorted(full.get("needed", {})) if installed else []
    rec["needed"] = ", ".join(needed)
    rec["n_needed"] = len(needed) if installed else None
    beyond = full.get("needed_beyond_base", [])
    rec["needed_beyond_torch"] = ", ".join(beyond)
    rec["n_needed_beyond_torch"] = len(beyond) if installed else None
    for key in ("undeclared", "unused", "broken"):
        vals = full.get(key)
        rec[key] = "; ".join(vals) if vals else ""
        rec[f"n_{key}"] = len(vals) if vals is not None else None
    rec["undeclared_indirect"] = "; ".join(full.get("undeclared_indirect") or [])
    rec["opportunistic"] = ", ".join(full.get("opportunistic") or [])
    rec["own_mb"] = full.get("own_bytes", 0) / 2**20 if installed else None
    rec["with_deps_over_torch_mb"] = (
        (full.get("own_bytes", 0) + full.get("extra_bytes", 0)) / 2**20 if installed else None)
    rec["extra_dists"] = ", ".join(full.get("extra_dists", []))
    rec["import_seconds_bare"] = full.get("import_seconds") if installed else None
    return rec


def _code_signals(package_dir: Path) -> dict[str, Any]:
    sig = api_signals(package_dir)
    n_find, per_rule, note = ruff_findings(package_dir)
    functions = sig["public_functions"]
    return {
        **sig,
        "docstring_share": sig["with_docstring"] / functions if functions else None,
        "typed_share": sig["fully_typed"] / functions if functions else None,
        "ruff_findings": n_find,
        "ruff_per_1000_lines": (1000 * n_find / sig["source_lines"]
                                if n_find is not None and sig["source_lines"] else None),
        "ruff_top_rules": ", ".join(f"{k} {v}" for k, v in list(per_rule.items())[:6]),
        "ruff_note": note,
        "package_dir": display_path(_display(package_dir)),
    }


def measure_library(library: str, pythons: Mapping[str, str], repeats: int = 3,
                    check_pypi: bool = True, sweep_rows: pd.DataFrame | None = None
                    ) -> dict[str, Any]:
    """Every ease-of-use measure of one library (a flat record for the CSV)."""
    info = library_info(library)
    files = adapter_files(library)
    targets = library_imports(info, files)
    base_args = {"repo": str(REPO), "targets": targets, "package": info.package,
                 "dist": info.distribution, "adapter": module_path(library),
                 "base": list(BASE_DISTS), "setup": info.import_setup}
    python, full = _probe_full(library, pythons.get(library, sys.executable), base_args,
                               pythons)
    installed = bool(full.get("import_ok"))
    rec: dict[str, Any] = {"library": library, "package": info.package,
                           "dist": info.distribution or "", "note": info.note,
                           "python": python, "imports_measured": ", ".join(targets),
                           "installed": installed, "cpus": os.cpu_count(),
                           "load_average": os.getloadavg()[0]}
    rec["not_measured"] = "" if installed else (
        full.get("import_error") or full.get("probe_error") or "import failed")
    if info.distribution:
        ok, text = on_pypi(info.distribution) if check_pypi else (None, "not checked (--offline)")
        rec["on_pypi"], rec["pypi_latest"] = ok, text
    else:
        rec["on_pypi"], rec["pypi_latest"] = None, "n/a: " + (info.note or "no distribution")
    rec["installed_from"] = ("" if not installed else _installed_from(full.get("direct_url"))
                             if info.distribution else info.note)
    doc = REPO / info.install_doc if info.install_doc else None
    rec["install_hint"] = info.install_hint
    rec["install_doc"] = info.install_doc or ""
    rec["install_doc_commands"] = doc_commands(doc) if doc and doc.exists() else None
    rec["version"] = full.get("dist_version") or full.get("version") or ""
    rec.update(_dependencies(full, info, installed))
    times = []
    if installed:
        for _ in tqdm(range(repeats), desc=f"import time {library}", leave=False):
            t = run_probe(python, {**base_args, "mode": "time", "preimport": list(PREIMPORT)})
            if t.get("import_ok"):
                times.append(t["import_seconds"])
    rec["import_seconds"] = statistics.median(times) if times else None
    try:  # the adapter imports here (it never imports its library)
        detectors = available(library)
        declared_w: Any = dict(info.workarounds)
        rec["detectors_source"] = "adapter available()"
    except Exception:  # a third-party adapter importable only in the other interpreter
        detectors = list(full.get("available") or [])
        declared_w = full.get("workarounds")
        rec["detectors_source"] = "adapter available() in the measured interpreter"
    loc = sum(code_lines(f.read_text()) for f in files)
    rec["adapter_files"] = ", ".join(_display(f) for f in files)
    rec["adapter_loc"] = loc
    rec["detectors"] = len(detectors)
    rec["adapter_loc_per_detector"] = loc / len(detectors) if detectors else None
    out_of_box, workarounds = workaround_counts(declared_w, detectors)
    rec["cpu_out_of_box"] = out_of_box
    rec["cpu_with_workarounds"] = (len(detectors) - out_of_box) if out_of_box is not None else None
    rec["workarounds"] = "; ".join(workarounds) if declared_w is not None else "not declared"
    rec.update(_sweep_cpu_evidence(library, sweep_rows))
    if installed and full.get("package_dir"):
        rec.update(_code_signals(Path(full["package_dir"])))
    return rec


def write_ease(out: Path, pythons: Mapping[str, str] | None = None, repeats: int = 3,
               check_pypi: bool = True, sweep_rows: pd.DataFrame | None = None,
               names: list[str] | None = None) -> pd.DataFrame:
    """Measure every library (or ``names``) and write ``<out>/ease_of_use.csv``."""
    pythons = pythons or {}
    records = [measure_library(lib, pythons, repeats, check_pypi, sweep_rows)
               for lib in tqdm(names or libraries(), desc="ease of use")]
    frame = pd.DataFrame(records)
    out.mkdir(parents=True, exist_ok=True)
    frame.to_csv(out / CSV_FILE, index=False)
    return frame

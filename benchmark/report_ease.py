"""Ease-of-use report: what it takes to install, import and wrap each library, measured by code.

One row per library in :data:`adapters.registry.ADAPTER_MODULES` (a new adapter appears by
itself). Every number is measured here, in a fresh interpreter per measurement; what cannot be
measured (library not installed in any interpreter given) is reported as such, never guessed.

* **PyPI**: ``pip index versions <dist>`` against https://pypi.org/simple only (local mirrors and
  find-links disabled). How the installed copy got there: its ``direct_url.json`` (PEP 610):
  absent = installed from an index; otherwise the source directory / VCS URL it came from.
* **Extra steps**: the registry's install hint, and the install guide ``docs/<library>-install.md``
  if the project has one (its pip / conda / apt / git-clone lines, alternatives included).
* **Dependencies**: *declared* = the distribution's ``Requires-Dist`` (extras left out, markers
  evaluated). *Imported* = the distributions owning the modules that importing the library
  modules the adapter imports (found by parsing the adapter) pulls into a bare interpreter
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
  ``--repeats`` runs.
* **Adapter lines of code**: non-blank lines that are not comments or docstrings in
  ``adapters/<module>.py`` plus ``adapters/<module>_support/``, divided by the detectors the
  adapter supports (its ``available()``).
* **CPU out of the box**: from the adapter's optional ``WORKAROUNDS`` attribute:
  ``{detector name or "*": [workaround, ...]}`` (a plain list means every detector); detectors
  with no entry count as working on CPU unmodified. Not declared -> "not declared". The sweep's
  own evidence (detectors that ran ok on CPU through the adapter) is shown beside it.
* **Code signals** of the library's installed source: public functions and methods (no leading
  underscore, in non-private modules) with a docstring, and with full type hints (every
  parameter but ``self``/``cls`` and the return annotated); ``ruff`` findings per 1,000 lines
  with the fixed rule set :data:`RUFF_RULES` (``--isolated``, Python 3.10 target).
"""

from __future__ import annotations

import ast
import importlib.util
import io
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tokenize
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from tqdm.auto import tqdm

from adapters.registry import ADAPTER_MODULES, INSTALL_HINTS
from benchmark.manifest import display_path

REPO = Path(__file__).resolve().parents[1]
RUFF_RULES = "E4,E7,E9,F,B"
RUFF_RULES_TEXT = ("pycodestyle errors E4/E7/E9 (imports, statements, syntax), pyflakes F "
                   "(unused/undefined names), flake8-bugbear B (likely bugs)")
BASE_DISTS = ("torch", "torchvision")
PREIMPORT = ("torch", "torchvision", "numpy")
FLOAT_KEYS = {"own_mb", "with_deps_over_torch_mb", "import_seconds", "import_seconds_bare",
              "adapter_loc_per_detector", "ruff_per_1000_lines", "docstring_share",
              "typed_share"}


@dataclass(frozen=True)
class LibraryInfo:
    """Where a library lives: its import package and (if any) its own distribution."""

    package: str
    dist: str | None
    note: str = ""


LIBRARIES: dict[str, LibraryInfo] = {
    "pytorch_ood": LibraryInfo("pytorch_ood", "pytorch-ood"),
    "openood": LibraryInfo("openood", "openood"),
    "inhouse": LibraryInfo("benchmark.inhouse", None, "ships inside ood-bench (no own package)"),
}

_HARNESS = {"adapters", "benchmark", "torch", "torchvision", "numpy", "scipy", "sklearn",
            "pandas", "omegaconf", "hydra", "tqdm", "matplotlib", "yaml", "PIL"}


# --------------------------------------------------------------------------- adapter sources


def adapter_files(library: str) -> list[Path]:
    """``adapters/<module>.py`` and every ``.py`` under ``adapters/<module>_support/``."""
    try:
        spec = importlib.util.find_spec(ADAPTER_MODULES[library])
    except (ImportError, ValueError):
        return []
    if spec is None or spec.origin is None or not spec.origin.endswith(".py"):
        return []
    main = Path(spec.origin)
    support = main.with_name(f"{main.stem}_support")
    extra = sorted(support.rglob("*.py")) if support.is_dir() else []
    return [main, *extra]


def _docstring_lines(tree: ast.AST) -> set[int]:
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if (body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant)
                    and isinstance(body[0].value.value, str)):
                lines.update(range(body[0].lineno, (body[0].end_lineno or body[0].lineno) + 1))
    return lines


def code_lines(source: str) -> int:
    """Lines holding code: not blank, not only a comment, not part of a docstring."""
    skip = {tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT,
            tokenize.ENCODING, tokenize.ENDMARKER}
    lines: set[int] = set()
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type not in skip:
            lines.update(range(tok.start[0], tok.end[0] + 1))
    return len(lines - _docstring_lines(ast.parse(source)))


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


def module_literal(files: list[Path], name: str) -> Any:
    """The literal value of a top-level ``name = ...`` in the adapter's main file, or None."""
    if not files:
        return None
    for node in ast.parse(files[0].read_text()).body:
        targets = (node.targets if isinstance(node, ast.Assign)
                   else [node.target] if isinstance(node, ast.AnnAssign) and node.value else [])
        for t in targets:
            if isinstance(t, ast.Name) and t.id == name:
                try:
                    return ast.literal_eval(node.value)
                except ValueError:
                    return "<not a literal>"
    return None


def library_info(library: str, files: list[Path]) -> LibraryInfo:
    """Known libraries from :data:`LIBRARIES`; a new adapter from its ``PACKAGE`` /
    ``DISTRIBUTION`` attributes, else the third-party package it imports."""
    if library in LIBRARIES:
        return LIBRARIES[library]
    package = module_literal(files, "PACKAGE")
    dist = module_literal(files, "DISTRIBUTION")
    if not isinstance(package, str):
        tops = sorted({m.split(".")[0] for m in imported_modules(files)}
                      - _HARNESS - set(sys.stdlib_module_names) - {"__future__"})
        package = tops[0] if tops else library
    return LibraryInfo(package, dist if isinstance(dist, str) else None)


def library_imports(info: LibraryInfo, files: list[Path]) -> list[str]:
    """The library modules the adapter imports (what using it through the adapter costs)."""
    top = info.package
    mods = sorted(m for m in imported_modules(files) if m == top or m.startswith(top + "."))
    return mods or [top]


# --------------------------------------------------------------------------- the probe

PROBE = r'''
import importlib, json, os, re, sys, time
args = json.loads(sys.argv[1])
sys.path.insert(0, args["repo"])
out = {"python": sys.version.split()[0], "executable": sys.executable}
for m in args.get("preimport", []):
    try:
        importlib.import_module(m)
    except Exception:
        pass
before = set(sys.modules)
t0 = time.perf_counter()
try:
    for m in args["targets"]:
        importlib.import_module(m)
    out["import_ok"] = True
except BaseException as exc:
    out["import_ok"] = False
    out["import_error"] = (type(exc).__name__ + ": " + str(exc))[:300]
out["import_seconds"] = time.perf_counter() - t0
new = set(sys.modules) - before
if args["mode"] == "time":
    print("@@PROBE@@" + json.dumps(out)); sys.exit(0)

import importlib.metadata as md
try:
    from packaging.requirements import Requirement
except Exception:
    Requirement = None

def norm(n):
    return re.sub(r"[-_.]+", "-", n).lower()

def parse(req):
    if Requirement is None:
        name = re.split(r"[ ;<>=!~\[(]", req, 1)[0]
        return (None if "extra" in req.split(";", 1)[-1] and ";" in req else norm(name)), None
    r = Requirement(req)
    if r.marker is not None:
        try:
            if not r.marker.evaluate({"extra": ""}):
                return None, None
        except Exception:
            return None, None
    return norm(r.name), r

dists = {}
for d in md.distributions():
    name = d.metadata["Name"]
    if name and norm(name) not in dists:
        dists[norm(name)] = d

def requires(name):
    d = dists.get(name)
    res = []
    for req in (d.requires or []) if d else []:
        n, _ = parse(req)
        if n:
            res.append(n)
    return res

def closure(names):
    seen, todo = set(), list(names)
    while todo:
        n = todo.pop()
        if n in seen:
            continue
        seen.add(n)
        todo.extend(requires(n))
    return seen

def size(name):
    d = dists.get(name)
    if d is None:
        return 0
    total = 0
    for f in d.files or []:
        try:
            total += os.path.getsize(d.locate_file(f))
        except OSError:
            pass
    return total

def dir_size(path):
    total = 0
    for root, _, files in os.walk(path):
        for f in files:
            try:
                total += os.path.getsize(os.path.join(root, f))
            except OSError:
                pass
    return total

pkg = args["package"]
if out["import_ok"]:
    mod = sys.modules[pkg]
    out["package_dir"] = os.path.dirname(mod.__file__)
    out["own_bytes"] = dir_size(out["package_dir"])
    out["version"] = getattr(mod, "__version__", None)
tops = sorted({m.split(".")[0] for m in new} - set(sys.stdlib_module_names))
owners = md.packages_distributions()
needed, unmapped = {}, []
for t in tops:
    ds = owners.get(t)
    if ds:
        for d in dict.fromkeys(ds):
            needed.setdefault(norm(d), []).append(t)
    elif not t.startswith("_"):
        unmapped.append(t)
import ast
direct = set()
if out["import_ok"]:
    for root, _, files in os.walk(out["package_dir"]):
        for f in files:
            if not f.endswith(".py"):
                continue
            try:
                tree = ast.parse(open(os.path.join(root, f), encoding="utf-8",
                                      errors="replace").read())
            except (SyntaxError, ValueError):
                continue
            for node in ast.walk(tree):
                if isinstance(node, ast.Import):
                    direct.update(a.name.split(".")[0] for a in node.names)
                elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                    direct.add(node.module.split(".")[0])
me = norm(args["dist"]) if args.get("dist") else None
host = None
if me is None and out["import_ok"]:
    host = [norm(d) for d in owners.get(pkg.split(".")[0], [])][:1]
    host = host[0] if host else None
for skip in (me, host):
    needed.pop(skip, None)
direct_dists = {d for d, mods in needed.items() if set(mods) & direct}
out["unmapped_modules"] = unmapped
if me is not None and me in dists:
    d = dists[me]
    out["dist_version"] = d.version
    out["direct_url"] = d.read_text("direct_url.json")
    declared, broken = [], []
    for req in d.requires or []:
        n, r = parse(req)
        if not n:
            continue
        declared.append(n)
        if n not in dists:
            broken.append(req + " (not installed)")
        elif r is not None and r.specifier and not r.specifier.contains(
                dists[n].version, prereleases=True):
            broken.append(req + " (installed " + dists[n].version + ")")
    out["declared"] = sorted(set(declared))
    out["broken"] = broken
    declared_closure = closure(declared)
else:
    declared, declared_closure = [], set()
    out["dist_missing"] = me is not None
reach = closure(direct_dists | set(declared))
out["opportunistic"] = sorted(n for n in needed if n not in reach)
needed = {n: m for n, m in needed.items() if n in reach}
out["needed"] = needed
if me is not None and me in dists:
    out["undeclared"] = sorted(n for n in direct_dists if n not in declared_closure)
    out["undeclared_indirect"] = sorted(n for n in needed if n not in declared_closure
                                        and n not in direct_dists)
    out["unused"] = sorted(n for n in set(declared) if n not in needed)
    own = size(me)
    out["own_bytes"] = own or out.get("own_bytes", 0)
base = closure([n for n in args["base"] if n in dists])
extra = (declared_closure | closure(needed)) - base - {me, host}
out["extra_dists"] = sorted(n for n in extra if n in dists)
out["needed_beyond_base"] = sorted(n for n in needed if n not in base)
out["extra_bytes"] = sum(size(n) for n in out["extra_dists"])
try:
    adapter = importlib.import_module(args["adapter"])
    out["available"] = list(adapter.available())
    w = getattr(adapter, "WORKAROUNDS", None)
    out["workarounds"] = w if isinstance(w, (list, dict, tuple)) else None
except BaseException as exc:
    out["adapter_error"] = (type(exc).__name__ + ": " + str(exc))[:300]
print("@@PROBE@@" + json.dumps(out, default=str))
'''


def run_probe(python: str, args: dict[str, Any], timeout: float = 600) -> dict[str, Any]:
    """Run :data:`PROBE` in a fresh ``python`` (cwd = repo); its JSON answer or an error."""
    try:
        proc = subprocess.run([python, "-c", PROBE, json.dumps(args)], cwd=REPO,
                              capture_output=True, text=True, timeout=timeout,
                              env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})
    except (OSError, subprocess.TimeoutExpired) as exc:
        return {"probe_error": f"{type(exc).__name__}: {exc}"}
    for line in proc.stdout.splitlines():
        if line.startswith("@@PROBE@@"):
            return json.loads(line.removeprefix("@@PROBE@@"))
    tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
    return {"probe_error": f"probe exited {proc.returncode}: {tail[0][:300]}"}


# --------------------------------------------------------------------------- other measures


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


def install_doc(library: str) -> Path | None:
    for name in (library, library.replace("_", "-"), library.replace("_", "")):
        p = REPO / "docs" / f"{name}-install.md"
        if p.exists():
            return p
    return None


INSTALL_COMMAND = re.compile(r"^(sudo\s+)?(\S+/)?(pip3?|python3?\s+-m\s+pip|conda|mamba|"
                             r"apt(-get)?|git\s+clone|uv\s+pip)\b")


def doc_commands(path: Path) -> int:
    """Install commands (pip / conda / apt / git clone lines) in an install guide's code blocks;
    a line continued with a backslash counts once."""
    n, inside, continued = 0, False, False
    for line in path.read_text().splitlines():
        if line.lstrip().startswith("```"):
            inside, continued = not inside, False
            continue
        s = line.strip()
        if inside and not continued and INSTALL_COMMAND.match(s):
            n += 1
        continued = inside and s.endswith("\\")
    return n


def _public(path: Path, base: Path) -> bool:
    parts = path.relative_to(base).parts
    return not any(p.startswith("_") and p != "__init__.py" for p in parts) and not any(
        p in ("tests", "test") for p in parts)


def api_signals(package_dir: Path) -> dict[str, Any]:
    """Public functions/methods with docstrings and with full type hints; source lines."""
    n = doc = typed = lines = files = 0
    for path in sorted(package_dir.rglob("*.py")):
        try:
            text = path.read_text(errors="replace")
            tree = ast.parse(text)
        except (SyntaxError, ValueError):
            continue
        files += 1
        lines += text.count("\n") + (not text.endswith("\n") and bool(text))
        if not _public(path, package_dir):
            continue
        for fn, is_method in _public_functions(tree):
            n += 1
            doc += ast.get_docstring(fn) is not None
            typed += _fully_annotated(fn, is_method)
    return {"public_functions": n, "with_docstring": doc, "fully_typed": typed,
            "source_lines": lines, "source_files": files}


def _public_functions(tree: ast.Module) -> list[tuple[ast.AST, bool]]:
    out: list[tuple[ast.AST, bool]] = []
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            if not node.name.startswith("_"):
                out.append((node, False))
        elif isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
            for item in node.body:
                if (isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef))
                        and not item.name.startswith("_")):
                    out.append((item, True))
    return out


def _fully_annotated(fn: Any, is_method: bool) -> bool:
    a = fn.args
    params = [*a.posonlyargs, *a.args, *a.kwonlyargs]
    if is_method and params and params[0].arg in ("self", "cls"):
        params = params[1:]
    params += [p for p in (a.vararg, a.kwarg) if p is not None]
    return fn.returns is not None and all(p.annotation is not None for p in params)


def ruff_findings(package_dir: Path) -> tuple[int | None, dict[str, int], str]:
    """(number of findings, count per rule, note) of ruff with :data:`RUFF_RULES`."""
    ruff = shutil.which("ruff", path=str(Path(sys.executable).parent)) or shutil.which("ruff")
    if ruff is None:
        return None, {}, "ruff not installed"
    cmd = [ruff, "check", "--isolated", "--no-cache", "--exit-zero", "--select", RUFF_RULES,
           "--target-version", "py310", "--output-format", "json", str(package_dir)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        found = json.loads(proc.stdout or "[]")
    except (OSError, subprocess.TimeoutExpired, json.JSONDecodeError) as exc:
        return None, {}, f"ruff failed: {type(exc).__name__}"
    per_rule: dict[str, int] = {}
    for f in found:
        code = f.get("code") or "syntax"
        per_rule[code] = per_rule.get(code, 0) + 1
    return len(found), dict(sorted(per_rule.items(), key=lambda kv: -kv[1])), ""


def workaround_counts(declared: Any, detectors: list[str]) -> tuple[int | None, list[str]]:
    """(detectors that need no workaround on CPU, the workarounds) from ``WORKAROUNDS``."""
    if declared is None:
        return None, []
    if isinstance(declared, (list, tuple)):
        declared = {"*": list(declared)}
    if not isinstance(declared, dict):
        return None, [f"unreadable WORKAROUNDS: {declared!r}"[:200]]
    items: list[str] = []
    needing: set[str] = set()
    for det, ws in declared.items():
        ws = [ws] if isinstance(ws, str) else list(ws or [])
        if not ws:
            continue
        needing |= set(detectors) if det == "*" else {str(det)}
        items += [f"{'all' if det == '*' else det}: {w}" for w in ws]
    return len([d for d in detectors if d not in needing]), items


# --------------------------------------------------------------------------- the report


def interpreter_for(library: str, given: dict[str, str]) -> str:
    """``--python library=...`` if given, else this interpreter."""
    return given.get(library, sys.executable)


def fallback_interpreter(library: str) -> str | None:
    """``<repo>/.venv-<library>/bin/python`` if the project keeps a venv for it."""
    for name in (library, library.replace("_", "-")):
        p = REPO / f".venv-{name}" / "bin" / "python"
        if p.exists():
            return str(p)
    return None


def measure_library(library: str, pythons: dict[str, str], repeats: int = 3,
                    check_pypi: bool = True, sweep_rows: pd.DataFrame | None = None
                    ) -> dict[str, Any]:
    """Every ease-of-use measure of one library (a flat record for the CSV)."""
    files = adapter_files(library)
    info = library_info(library, files)
    targets = library_imports(info, files)
    python = interpreter_for(library, pythons)
    base_args = {"repo": str(REPO), "targets": targets, "package": info.package,
                 "dist": info.dist, "adapter": ADAPTER_MODULES[library],
                 "base": list(BASE_DISTS)}
    full = run_probe(python, {**base_args, "mode": "full"})
    if not full.get("import_ok") and library not in pythons:
        alt = fallback_interpreter(library)
        if alt:
            python = alt
            full = run_probe(python, {**base_args, "mode": "full"})
    rec: dict[str, Any] = {"library": library, "package": info.package, "dist": info.dist or "",
                           "note": info.note, "python": python,
                           "imports_measured": ", ".join(targets)}
    installed = bool(full.get("import_ok"))
    rec["installed"] = installed
    rec["not_measured"] = "" if installed else (
        full.get("import_error") or full.get("probe_error") or "import failed")
    # PyPI and installation
    if info.dist:
        ok, text = on_pypi(info.dist) if check_pypi else (None, "not checked (--offline)")
        rec["on_pypi"], rec["pypi_latest"] = ok, text
    else:
        rec["on_pypi"], rec["pypi_latest"] = None, "n/a: " + (info.note or "no distribution")
    rec["installed_from"] = ("" if not installed else _installed_from(full.get("direct_url"))
                             if info.dist else info.note)
    doc = install_doc(library)
    rec["install_hint"] = INSTALL_HINTS.get(library, "")
    rec["install_doc"] = str(doc.relative_to(REPO)) if doc else ""
    rec["install_doc_commands"] = doc_commands(doc) if doc else None
    rec["version"] = full.get("dist_version") or full.get("version") or ""
    # dependencies
    rec["declared"] = ", ".join(full.get("declared", [])) if installed and info.dist else ""
    rec["n_declared"] = len(full.get("declared", [])) if info.dist and installed else None
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
    # import time on top of torch + numpy
    times = []
    if installed:
        for _ in tqdm(range(repeats), desc=f"import time {library}", leave=False):
            t = run_probe(python, {**base_args, "mode": "time", "preimport": list(PREIMPORT)})
            if t.get("import_ok"):
                times.append(t["import_seconds"])
    rec["import_seconds"] = statistics.median(times) if times else None
    # adapter
    detectors = full.get("available")
    if detectors is None:
        detectors = _detectors_from_configs(library)
        rec["detectors_source"] = "configs/detector (adapter not importable here)"
    else:
        rec["detectors_source"] = "adapter available()"
    loc = sum(code_lines(f.read_text()) for f in files)
    rec["adapter_files"] = ", ".join(_display(f) for f in files)
    rec["adapter_loc"] = loc
    rec["detectors"] = len(detectors)
    rec["adapter_loc_per_detector"] = loc / len(detectors) if detectors else None
    declared_w = full.get("workarounds") if "available" in full else module_literal(
        files, "WORKAROUNDS")
    out_of_box, workarounds = workaround_counts(declared_w, detectors)
    rec["cpu_out_of_box"] = out_of_box
    rec["cpu_with_workarounds"] = (len(detectors) - out_of_box) if out_of_box is not None else None
    rec["workarounds"] = "; ".join(workarounds) if declared_w is not None else "not declared"
    rec.update(_sweep_cpu_evidence(library, sweep_rows))
    # code signals
    pkg_dir = Path(full["package_dir"]) if installed and full.get("package_dir") else None
    if pkg_dir is not None:
        sig = api_signals(pkg_dir)
        n_find, per_rule, note = ruff_findings(pkg_dir)
        rec.update(sig)
        rec["docstring_share"] = sig["with_docstring"] / sig["public_functions"] if sig[
            "public_functions"] else None
        rec["typed_share"] = sig["fully_typed"] / sig["public_functions"] if sig[
            "public_functions"] else None
        rec["ruff_findings"] = n_find
        rec["ruff_per_1000_lines"] = (1000 * n_find / sig["source_lines"]
                                      if n_find is not None and sig["source_lines"] else None)
        rec["ruff_top_rules"] = ", ".join(f"{k} {v}" for k, v in list(per_rule.items())[:6])
        rec["ruff_note"] = note
        rec["package_dir"] = display_path(_display(pkg_dir))
    return rec


def _display(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(REPO))
    except ValueError:
        return str(path)


def _installed_from(direct_url: str | None) -> str:
    if not direct_url:
        return "package index (wheel/sdist)"
    try:
        d = json.loads(direct_url)
    except json.JSONDecodeError:
        return "direct URL (unreadable)"
    if d.get("dir_info", {}).get("editable"):
        return f"editable source checkout {d.get('url', '')}"
    if "vcs_info" in d:
        return f"VCS {d.get('url', '')}@{d['vcs_info'].get('commit_id', '')[:12]}"
    return f"source {d.get('url', '')}"


def _detectors_from_configs(library: str) -> list[str]:
    """Detector names in ``configs/detector/<library>/*.yaml`` (suites excluded)."""
    names = []
    for p in sorted((REPO / "configs" / "detector" / library).glob("*.yaml")):
        text = p.read_text()
        m = re.search(r"^\s+name:\s*(\S+)", text, re.M)
        if "detectors:" in text and m:
            names.append(m.group(1))
    return names


def _sweep_cpu_evidence(library: str, rows: pd.DataFrame | None) -> dict[str, Any]:
    if rows is None or rows.empty:
        return {"sweep_cpu_ok": None, "sweep_cpu_run": None}
    sub = rows[(rows["library"] == library) & (rows["device"].astype(str).str.startswith("cpu"))]
    if sub.empty:
        return {"sweep_cpu_ok": None, "sweep_cpu_run": 0}
    ok = sub.groupby("label")["status"].apply(lambda s: bool((s == "ok").all()))
    return {"sweep_cpu_ok": int(ok.sum()), "sweep_cpu_run": len(ok)}


COLUMNS_MD = [
    ("on PyPI", "on_pypi_text"), ("installed from", "installed_from"),
    ("extra install steps", "extra_steps"), ("version", "version"),
    ("declared deps", "n_declared"), ("needed deps (by the adapter's imports)", "n_needed"),
    ("… of them beyond torch+torchvision", "needed_beyond_torch"),
    ("imported by its code, undeclared", "undeclared"),
    ("… and pulled in by those", "undeclared_indirect"), ("declared, not needed", "unused"),
    ("declared but broken here", "broken"), ("own size MB", "own_mb"),
    ("size with deps beyond torch MB", "with_deps_over_torch_mb"),
    ("import s (after torch, torchvision, numpy)", "import_seconds"),
    ("import s (bare)", "import_seconds_bare"),
    ("adapter LOC", "adapter_loc"), ("detectors", "detectors"),
    ("adapter LOC / detector", "adapter_loc_per_detector"),
    ("CPU out of the box", "cpu_out_of_box"), ("CPU only with workarounds", "cpu_with_workarounds"),
    ("workarounds", "workarounds"), ("ran ok on CPU in this sweep", "sweep_cpu_text"),
    ("public functions", "public_functions"), ("… with docstring", "docstring_share"),
    ("… fully type-hinted", "typed_share"), ("source lines", "source_lines"),
    (f"ruff findings / 1k lines ({RUFF_RULES})", "ruff_per_1000_lines"),
    ("top ruff rules", "ruff_top_rules"), ("interpreter measured", "python"),
]


def _cell(key: str, rec: dict[str, Any]) -> str:
    if not rec.get("installed") and key not in (
            "on_pypi_text", "extra_steps", "adapter_loc", "detectors", "adapter_loc_per_detector",
            "cpu_out_of_box", "cpu_with_workarounds", "workarounds", "sweep_cpu_text", "python"):
        return "not installed here"
    if key == "on_pypi_text":
        ok = rec.get("on_pypi")
        return {True: f"yes ({rec['pypi_latest']})", False: "no"}.get(ok, rec["pypi_latest"])
    if key == "extra_steps":
        parts = [rec.get("install_hint") or ""]
        if rec.get("install_doc"):
            parts.append(f"guide `{rec['install_doc']}`: "
                         f"{int(rec['install_doc_commands'])} install commands")
        return "; ".join(p for p in parts if p) or "none"
    if key == "sweep_cpu_text":
        run, ok = rec.get("sweep_cpu_run"), rec.get("sweep_cpu_ok")
        if run is None or run != run or not run:
            return "not in this sweep"
        return f"{int(ok)}/{int(run)}"
    v = rec.get(key)
    if isinstance(v, float) and v == v and v.is_integer() and key not in FLOAT_KEYS:
        v = int(v)
    if v is None or (isinstance(v, float) and v != v):
        return "—" if key not in ("cpu_out_of_box", "cpu_with_workarounds") else "not declared"
    if key.endswith("_share"):
        return f"{v:.0%}"
    if isinstance(v, float):
        return f"{v:.2f}" if key != "adapter_loc_per_detector" else f"{v:.1f}"
    if isinstance(v, str):
        return v.replace("|", "\\|") or ("—" if key == "version" else "none")
    return str(v)


def markdown(records: list[dict[str, Any]]) -> str:
    libs = [r["library"] for r in records]
    lines = ["| measure | " + " | ".join(libs) + " |", "|---|" + "---|" * len(libs)]
    for title, key in COLUMNS_MD:
        lines.append(f"| {title} | " + " | ".join(_cell(key, r) for r in records) + " |")
    return "\n".join(lines)


def write_ease(out: Path, pythons: dict[str, str] | None = None, repeats: int = 3,
               check_pypi: bool = True, sweep_rows: pd.DataFrame | None = None,
               libraries: list[str] | None = None) -> pd.DataFrame:
    pythons = pythons or {}
    records = [measure_library(lib, pythons, repeats, check_pypi, sweep_rows)
               for lib in tqdm(libraries or list(ADAPTER_MODULES), desc="ease of use")]
    frame = pd.DataFrame(records)
    frame.to_csv(out / "ease_of_use.csv", index=False)
    text = [
        "# Ease of use, measured", "",
        "Every number below is measured by `benchmark/report_ease.py` (see its docstring for "
        "the exact definitions); 'not installed here' means the library could not be imported "
        "by the interpreter named in the last row, so nothing is claimed about it.", "",
        markdown(records), "",
        f"Measured on {os.cpu_count()} CPUs at load average {os.getloadavg()[0]:.1f} (import "
        "times grow with load; compare libraries within one report).", "",
        f"ruff rule set: `--select {RUFF_RULES}` ({RUFF_RULES_TEXT}), `--isolated`, "
        "Python 3.10 target, over the library's installed package directory.", "",
        "## Details", "",
    ]
    for r in records:
        text += [f"### {r['library']}", ""]
        for key in ("imports_measured", "needed", "needed_beyond_torch", "undeclared",
                    "undeclared_indirect", "opportunistic", "unused", "broken", "declared",
                    "extra_dists", "adapter_files", "package_dir", "not_measured"):
            if r.get(key):
                text.append(f"- {key.replace('_', ' ')}: {r[key]}")
        text.append("")
    (out / "ease_of_use.md").write_text("\n".join(text))
    return frame


def summary_frame(frame: pd.DataFrame) -> pd.DataFrame:
    cols = ["library", "on_pypi", "n_undeclared", "import_seconds", "adapter_loc_per_detector",
            "cpu_out_of_box", "detectors", "docstring_share", "typed_share",
            "ruff_per_1000_lines"]
    return frame[[c for c in cols if c in frame]]


__all__ = ["write_ease", "measure_library", "code_lines", "api_signals", "workaround_counts"]

"""What importing a library costs, measured inside a fresh interpreter (standard library only).

Run as a program, not imported: ``python probe.py '<json args>'`` in the interpreter to measure
(it may lack ood-bench's dependencies). Prints one line ``@@PROBE@@<json>``.

Arguments: ``repo`` (put on ``sys.path`` so the adapter imports), ``targets`` (the library
modules the adapter imports), ``package`` (the library's import package), ``dist`` (its
distribution, or null), ``adapter`` (the adapter module), ``base`` (distributions the size
comparison treats as already there), ``mode`` (``time``: import time only; ``full``:
everything), ``preimport`` (modules imported before the clock starts), ``setup``
(``"module:function"`` the adapter runs before importing its library; run before the clock).
"""

from __future__ import annotations

import ast
import importlib
import importlib.metadata as md
import json
import os
import re
import sys
import time
from typing import Any

MARK = "@@PROBE@@"


def norm(name: str) -> str:
    """A distribution name in PEP 503 normal form."""
    return re.sub(r"[-_.]+", "-", name).lower()


def parse_requirement(req: str) -> tuple[str | None, Any]:
    """(normalised name, packaging Requirement) of a ``Requires-Dist`` line; (None, None) when
    its marker excludes it here (extras left out)."""
    try:
        from packaging.requirements import Requirement
    except ImportError:
        name = re.split(r"[ ;<>=!~\[(]", req, maxsplit=1)[0]
        return (None if ";" in req and "extra" in req.split(";", 1)[-1] else norm(name)), None
    r = Requirement(req)
    if r.marker is not None:
        try:
            if not r.marker.evaluate({"extra": ""}):
                return None, None
        except Exception:
            return None, None
    return norm(r.name), r


class Distributions:
    """The installed distributions by normalised name, with requirement closures and sizes."""

    def __init__(self) -> None:
        self.by_name: dict[str, md.Distribution] = {}
        for d in md.distributions():
            name = d.metadata["Name"]
            if name and norm(name) not in self.by_name:
                self.by_name[norm(name)] = d

    def requires(self, name: str) -> list[str]:
        d = self.by_name.get(name)
        names = [parse_requirement(req)[0] for req in ((d.requires or []) if d else [])]
        return [n for n in names if n]

    def closure(self, names: set[str] | list[str]) -> set[str]:
        seen: set[str] = set()
        todo = list(names)
        while todo:
            n = todo.pop()
            if n not in seen:
                seen.add(n)
                todo.extend(self.requires(n))
        return seen

    def size(self, name: str) -> int:
        d = self.by_name.get(name)
        total = 0
        for f in (d.files or []) if d else []:
            try:
                total += os.path.getsize(d.locate_file(f))
            except OSError:
                pass
        return total


def dir_size(path: str) -> int:
    total = 0
    for root, _, files in os.walk(path):
        for f in files:
            try:
                total += os.path.getsize(os.path.join(root, f))
            except OSError:
                pass
    return total


def imported_by_source(package_dir: str) -> set[str]:
    """Top-level modules named in the import statements of the package's own source."""
    direct: set[str] = set()
    for root, _, files in os.walk(package_dir):
        for f in files:
            if not f.endswith(".py"):
                continue
            try:
                with open(os.path.join(root, f), encoding="utf-8", errors="replace") as fh:
                    tree = ast.parse(fh.read())
            except (SyntaxError, ValueError):
                continue
            for node in ast.walk(tree):
                if isinstance(node, ast.Import):
                    direct.update(a.name.split(".")[0] for a in node.names)
                elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                    direct.add(node.module.split(".")[0])
    return direct


def time_imports(args: dict[str, Any]) -> tuple[dict[str, Any], set[str]]:
    """Import the targets after ``preimport``; the record and the modules that came with them."""
    out: dict[str, Any] = {"python": sys.version.split()[0], "executable": sys.executable}
    for m in args.get("preimport", []):
        try:
            importlib.import_module(m)
        except Exception:
            pass
    if args.get("setup"):
        module, _, func = args["setup"].partition(":")
        try:
            getattr(importlib.import_module(module), func)()
        except Exception as exc:
            out["setup_error"] = (type(exc).__name__ + ": " + str(exc))[:300]
    before = set(sys.modules)
    t0 = time.perf_counter()
    try:
        for m in args["targets"]:
            importlib.import_module(m)
        out["import_ok"] = True
    except BaseException as exc:  # a broken library can raise anything on import
        out["import_ok"] = False
        out["import_error"] = (type(exc).__name__ + ": " + str(exc))[:300]
    out["import_seconds"] = time.perf_counter() - t0
    return out, set(sys.modules) - before


def declared_dependencies(out: dict[str, Any], dists: Distributions, me: str) -> list[str]:
    """Record the library's declared requirements and those broken here; returns their names."""
    d = dists.by_name[me]
    out["dist_version"] = d.version
    out["direct_url"] = d.read_text("direct_url.json")
    declared, broken = [], []
    for req in d.requires or []:
        n, r = parse_requirement(req)
        if not n:
            continue
        declared.append(n)
        if n not in dists.by_name:
            broken.append(req + " (not installed)")
        elif r is not None and r.specifier and not r.specifier.contains(
                dists.by_name[n].version, prereleases=True):
            broken.append(req + " (installed " + dists.by_name[n].version + ")")
    out["declared"] = sorted(set(declared))
    out["broken"] = broken
    return declared


def full_probe(args: dict[str, Any], out: dict[str, Any], new: set[str]) -> dict[str, Any]:
    """Dependencies (declared, needed, undeclared, unused, broken), footprint, adapter facts."""
    dists = Distributions()
    pkg = args["package"]
    if out["import_ok"]:
        mod = sys.modules[pkg]
        out["package_dir"] = os.path.dirname(mod.__file__ or "")
        out["own_bytes"] = dir_size(out["package_dir"])
        out["version"] = getattr(mod, "__version__", None)
    tops = sorted({m.split(".")[0] for m in new} - set(sys.stdlib_module_names))
    owners = md.packages_distributions()
    needed: dict[str, list[str]] = {}
    unmapped = []
    for t in tops:
        ds = owners.get(t)
        if ds:
            for d in dict.fromkeys(ds):
                needed.setdefault(norm(d), []).append(t)
        elif not t.startswith("_"):
            unmapped.append(t)
    direct = imported_by_source(out["package_dir"]) if out["import_ok"] else set()
    me = norm(args["dist"]) if args.get("dist") else None
    host = None
    if me is None and out["import_ok"]:
        hosts = [norm(d) for d in owners.get(pkg.split(".")[0], [])][:1]
        host = hosts[0] if hosts else None
    for skip in (me, host):
        needed.pop(skip, None)
    direct_dists = {d for d, mods in needed.items() if set(mods) & direct}
    out["unmapped_modules"] = unmapped
    declared: list[str] = []
    declared_closure: set[str] = set()
    if me is not None and me in dists.by_name:
        declared = declared_dependencies(out, dists, me)
        declared_closure = dists.closure(declared)
    else:
        out["dist_missing"] = me is not None
    reach = dists.closure(direct_dists | set(declared))
    out["opportunistic"] = sorted(n for n in needed if n not in reach)
    needed = {n: m for n, m in needed.items() if n in reach}
    out["needed"] = needed
    if me is not None and me in dists.by_name:
        out["undeclared"] = sorted(n for n in direct_dists if n not in declared_closure)
        out["undeclared_indirect"] = sorted(n for n in needed if n not in declared_closure
                                            and n not in direct_dists)
        out["unused"] = sorted(n for n in set(declared) if n not in needed)
        out["own_bytes"] = dists.size(me) or out.get("own_bytes", 0)
    base = dists.closure([n for n in args["base"] if n in dists.by_name])
    extra = (declared_closure | dists.closure(set(needed))) - base - {me, host}
    out["extra_dists"] = sorted(n for n in extra if n in dists.by_name)
    out["needed_beyond_base"] = sorted(n for n in needed if n not in base)
    out["extra_bytes"] = sum(dists.size(n) for n in out["extra_dists"])
    try:
        adapter = importlib.import_module(args["adapter"])
        out["available"] = list(adapter.available())
        info = getattr(adapter, "LIBRARY_INFO", None)
        workarounds = getattr(info, "workarounds", None)
        out["workarounds"] = dict(workarounds) if workarounds is not None else None
    except BaseException as exc:  # the adapter may need what this interpreter lacks
        out["adapter_error"] = (type(exc).__name__ + ": " + str(exc))[:300]
    return out


def main(argv: list[str]) -> int:
    args = json.loads(argv[0])
    sys.path.insert(0, args["repo"])
    out, new = time_imports(args)
    if args["mode"] != "time":
        out = full_probe(args, out, new)
    print(MARK + json.dumps(out, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

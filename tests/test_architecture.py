"""The layout's rules, checked: stages and reports name no library, reports never reach a
model, module-level imports have no cycles (``docs/architecture.md``)."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LIBRARY_NAME = re.compile(r"['\"](pytorch_ood|openood|oodeel|inhouse)['\"]")


def _modules(*folders: str) -> list[Path]:
    return sorted(p for f in folders for p in (REPO / f).rglob("*.py"))


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def test_stages_and_reports_name_no_library() -> None:
    """A library's facts live in its adapter's LIBRARY_INFO, not in the runner or a report."""
    found = [f"{p.relative_to(REPO)}:{i}: {line.strip()}"
             for p in _modules("benchmark/runner", "benchmark/pipeline", "benchmark/report")
             for i, line in enumerate(p.read_text().splitlines(), 1)
             if LIBRARY_NAME.search(line)]
    assert not found, "\n".join(found)


def test_reports_import_no_stage_and_no_runner() -> None:
    """Importing every report module pulls in nothing that runs a model."""
    names = [_module_name(p) for p in _modules("benchmark/report")
             if p.name != "__main__.py"]
    code = ("import sys\n" + "".join(f"import {n}\n" for n in names)
            + "print(sorted(m for m in sys.modules if m.startswith(('benchmark.pipeline', "
              "'benchmark.runner', 'benchmark.studies.robustness.probes', "
              "'benchmark.studies.ease.measure'))))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=REPO, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]", proc.stdout


def _top_level_imports(path: Path) -> set[str]:
    """Modules of the project imported at module level (not in functions, not for typing)."""
    out: set[str] = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            continue
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            out.add(node.module)
            out |= {f"{node.module}.{a.name}" for a in node.names}
    return {m for m in out if m.split(".")[0] in ("benchmark", "adapters")}


def test_no_import_cycles() -> None:
    paths = {_module_name(p): p for p in _modules("benchmark", "adapters")}
    graph = {m: {d for d in _top_level_imports(p) if d in paths and d != m}
             for m, p in paths.items()}
    state: dict[str, int] = {}

    def visit(m: str, trail: list[str]) -> None:
        state[m] = 1
        for d in sorted(graph[m]):
            assert state.get(d) != 1, "import cycle: " + " -> ".join([*trail, m, d])
            if d not in state:
                visit(d, [*trail, m])
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [])


def test_tests_mirror_the_code() -> None:
    for room in ("pipeline", "runner", "studies", "report", "inhouse", "adapters"):
        assert list((REPO / "tests" / room).glob("test_*.py")), f"no tests/{room}/"

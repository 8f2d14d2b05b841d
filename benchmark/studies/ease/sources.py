"""Measures of source code: code lines, import statements, install commands in a guide,
public-API docstrings and type hints, ruff findings."""

from __future__ import annotations

import ast
import io
import json
import re
import shutil
import subprocess
import sys
import tokenize
from pathlib import Path
from typing import Any

RUFF_RULES = "E4,E7,E9,F,B"
RUFF_RULES_TEXT = ("pycodestyle errors E4/E7/E9 (imports, statements, syntax), pyflakes F "
                   "(unused/undefined names), flake8-bugbear B (likely bugs)")


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

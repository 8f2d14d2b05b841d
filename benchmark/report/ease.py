"""The ease-of-use part of the report, rendered from the study's ``ease_of_use.csv``."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd

from benchmark.render import markdown_table
from benchmark.studies.ease import CSV_FILE
from benchmark.studies.ease.sources import RUFF_RULES, RUFF_RULES_TEXT

FLOAT_KEYS = {"own_mb", "with_deps_over_torch_mb", "import_seconds", "import_seconds_bare",
              "adapter_loc_per_detector", "ruff_per_1000_lines", "docstring_share",
              "typed_share"}
# shown even for a library that is not installed here (facts of the adapter, not the library)
ADAPTER_KEYS = {"on_pypi_text", "extra_steps", "adapter_loc", "detectors",
                "adapter_loc_per_detector", "cpu_out_of_box", "cpu_with_workarounds",
                "workarounds", "sweep_cpu_text", "python"}
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
DETAIL_KEYS = ("imports_measured", "needed", "needed_beyond_torch", "undeclared",
               "undeclared_indirect", "opportunistic", "unused", "broken", "declared",
               "extra_dists", "adapter_files", "package_dir", "not_measured")


def _missing(v: Any) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def read(folder: Path) -> list[dict[str, Any]] | None:
    """The study's records (missing values as None), or None when the folder has none."""
    path = folder / CSV_FILE
    if not path.exists():
        return None
    frame = pd.read_csv(path, keep_default_na=True)
    frame = frame.astype(object).where(frame.notna(), None)
    return frame.to_dict("records")


def _cell(key: str, rec: dict[str, Any]) -> str:
    if not rec.get("installed") and key not in ADAPTER_KEYS:
        return "not installed here"
    if key == "on_pypi_text":
        ok = rec.get("on_pypi")
        return {True: f"yes ({rec['pypi_latest']})", False: "no"}.get(ok, rec["pypi_latest"])
    if key == "extra_steps":
        parts = [rec.get("install_hint") or ""]
        if rec.get("install_doc") and not _missing(rec.get("install_doc_commands")):
            parts.append(f"guide `{rec['install_doc']}`: "
                         f"{int(rec['install_doc_commands'])} install commands")
        return "; ".join(p for p in parts if p) or "none"
    if key == "sweep_cpu_text":
        run, ok = rec.get("sweep_cpu_run"), rec.get("sweep_cpu_ok")
        if _missing(run) or not run:
            return "not in this sweep"
        return f"{int(ok)}/{int(run)}"
    v = rec.get(key)
    if isinstance(v, float) and not math.isnan(v) and v.is_integer() and key not in FLOAT_KEYS:
        v = int(v)
    if _missing(v):
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
    rows = [[title, *(_cell(key, r) for r in records)] for title, key in COLUMNS_MD]
    return markdown_table(["measure", *libs], rows)


def write_markdown(folder: Path, records: list[dict[str, Any]]) -> str:
    """``ease_of_use.md`` next to the CSV; returns the table for the report."""
    table = markdown(records)
    first = records[0] if records else {}
    load = first.get("load_average")
    text = [
        "# Ease of use, measured", "",
        "Every number below is measured by `benchmark/studies/ease/measure.py` (see its "
        "docstring for the exact definitions); 'not installed here' means the library could "
        "not be imported by the interpreter named in the last row, so nothing is claimed about "
        "it.", "", table, "",
        f"Measured on {first.get('cpus')} CPUs at load average "
        f"{'?' if _missing(load) else f'{load:.1f}'} (import times grow with load; compare "
        "libraries within one report).", "",
        f"ruff rule set: `--select {RUFF_RULES}` ({RUFF_RULES_TEXT}), `--isolated`, "
        "Python 3.10 target, over the library's installed package directory.", "",
        "## Details", "",
    ]
    for r in records:
        text += [f"### {r['library']}", ""]
        text += [f"- {key.replace('_', ' ')}: {r[key]}" for key in DETAIL_KEYS if r.get(key)]
        text.append("")
    (folder / "ease_of_use.md").write_text("\n".join(text))
    return table

"""The ease-of-use study: measured by code from the adapters' LIBRARY_INFO and a probe
program in a fresh interpreter; the report renders its CSV."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pandas as pd

from adapters import registry
from benchmark.report import ease as ease_part
from benchmark.studies.ease import measure, sources
from benchmark.studies.ease.probe import MARK

PROBE = Path(measure.__file__).with_name("probe.py")


def test_code_lines_skip_blanks_comments_and_docstrings() -> None:
    src = '"""Module doc\n\nmore."""\n\n# comment\nx = 1  # trailing\n\n\ndef f(a):\n' \
          '    """Doc."""\n    return (a +\n            1)\n'
    assert sources.code_lines(src) == 4  # x = 1, def, return (2 lines)


def test_workaround_counts() -> None:
    dets = ["a", "b", "c"]
    assert measure.workaround_counts(None, dets) == (None, [])
    assert measure.workaround_counts(["shim .cuda()"], dets) == (0, ["all: shim .cuda()"])
    n, items = measure.workaround_counts({"b": ["x", "y"]}, dets)
    assert n == 2 and items == ["b: x", "b: y"]


def test_the_probe_is_a_standalone_program() -> None:
    """It imports only the standard library (it runs in interpreters without ood-bench's
    dependencies) and answers for a package it is pointed at."""
    tree = ast.parse(PROBE.read_text())
    tops = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import)
            for a in n.names}
    tops |= {n.module.split(".")[0] for n in ast.walk(tree)
             if isinstance(n, ast.ImportFrom) and n.module and not n.level}
    assert tops <= set(sys.stdlib_module_names) | {"__future__", "packaging"}, tops
    args = ('{"repo": ".", "targets": ["yaml"], "package": "yaml", "dist": "PyYAML", '
            '"adapter": "adapters.inhouse", "base": [], "mode": "full"}')
    proc = subprocess.run([sys.executable, str(PROBE), args], capture_output=True, text=True,
                          timeout=300, cwd=Path(__file__).resolve().parents[2])
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith(MARK))
    answer = __import__("json").loads(line.removeprefix(MARK))
    assert answer["import_ok"] and answer["dist_version"]
    assert answer["available"] == ["Grouped", "MaSF", "NeuralFP", "Statistical"]
    assert answer["workarounds"] == {}


def test_measures_pytorch_ood_from_its_library_info() -> None:
    rec = measure.measure_library("pytorch_ood", {}, repeats=1, check_pypi=False)
    assert rec["installed"] and rec["version"] == "0.4.0"
    assert "torch" in rec["declared"].split(", ") and rec["n_declared"] >= 3
    assert "scipy" in rec["needed"] and rec["import_seconds"] > 0
    assert rec["detectors"] == len(registry.available("pytorch_ood")) == 34
    files = registry.adapter_files("pytorch_ood")
    assert {f.name for f in files} == {"__init__.py", "adapter.py"}
    raw = sum(len(f.read_text().splitlines()) for f in files)
    assert 0.3 * raw < rec["adapter_loc"] < raw  # docstrings and comments do not count
    assert rec["public_functions"] > 10 and 0 <= rec["docstring_share"] <= 1
    assert rec["ruff_per_1000_lines"] is not None and rec["source_lines"] > 1000
    assert rec["cpu_out_of_box"] == rec["detectors"]  # pytorch-ood declares no CPU workaround
    assert rec["install_hint"] == registry.library_info("pytorch_ood").install_hint


def test_a_new_adapter_appears_by_itself_and_is_not_guessed(tmp_path, monkeypatch) -> None:
    (tmp_path / "fake_new_adapter.py").write_text(
        "import numpy as np\n\n\ndef available():\n    return ['x']\n\n\n"
        "def build(name, params):\n    raise ImportError('its library is not installed')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    frame = measure.write_ease(tmp_path, repeats=1, check_pypi=False,
                               names=["fake_new_adapter"])
    row = frame.set_index("library").loc["fake_new_adapter"]
    assert not row["installed"] and row["adapter_loc"] == 5 and row["detectors"] == 1
    records = ease_part.read(tmp_path)
    table = ease_part.write_markdown(tmp_path, records)
    assert "not installed here" in table and "fake_new_adapter" in table
    assert pd.read_csv(tmp_path / "ease_of_use.csv").library.tolist() == ["fake_new_adapter"]


def test_a_library_needing_the_adapters_import_shim_is_measured_with_it(openood) -> None:
    """OpenOOD imports imgaug, which breaks on numpy 2; the adapter registers a placeholder
    first (LIBRARY_INFO.import_setup), and so does the probe: the import is measured, not
    reported as failed."""
    info = registry.library_info("openood")
    assert info.import_setup == "adapters.openood.compat:ensure_importable"
    rec = measure.measure_library("openood", {}, repeats=1, check_pypi=False)
    assert rec["installed"], rec["not_measured"]
    assert rec["import_seconds"] > 0 and rec["with_deps_over_torch_mb"] > 100


def test_oodeel_is_measured_as_installed_without_its_numpy_pin(oodeel) -> None:
    rec = measure.measure_library("oodeel", {}, repeats=1, check_pypi=False)
    assert rec["installed"] and rec["version"] == "0.4.0"
    assert "numpy" in rec["broken"]  # its declared numpy<=1.26.4, unmet beside numpy 2
    assert rec["cpu_out_of_box"] == rec["detectors"] == 15


def test_install_source_names_no_path_of_this_machine() -> None:
    """A wheel installed from a local file is named by its file name (the committed CSVs must
    not carry /tmp/... or home paths); a VCS or index URL is kept."""
    local = '{"url": "file:///tmp/dl/oodeel-0.4.0-py3-none-any.whl", "archive_info": {}}'
    assert measure._installed_from(local) == "source local file oodeel-0.4.0-py3-none-any.whl"
    vcs = ('{"url": "https://github.com/Jingkang50/OpenOOD", '
           '"vcs_info": {"vcs": "git", "commit_id": "3c35632ee91b54b09d1"}}')
    assert measure._installed_from(vcs) == "VCS https://github.com/Jingkang50/OpenOOD@3c35632ee91b"
    assert measure._installed_from(None) == "package index (wheel/sdist)"

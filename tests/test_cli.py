"""Override checking and wildcard expansion, without running anything."""

from __future__ import annotations

from benchmark.config_groups import check_overrides, expand_patterns, group_options, is_suite
from tests.conftest import REPO


def test_group_options_include_nested_detectors() -> None:
    opts = group_options("detector")
    assert "pytorch_ood/msp" in opts and "default" in opts


def test_suites_are_recognised() -> None:
    assert is_suite("detector", "pytorch_ood/all") and is_suite("detector", "default")
    assert not is_suite("detector", "pytorch_ood/msp")


def test_wildcard_expands_to_single_detectors_only() -> None:
    (arg,) = expand_patterns(["detector=pytorch_ood/*"])
    names = arg.removeprefix("detector=").split(",")
    assert "pytorch_ood/odin" in names and "pytorch_ood/all" not in names
    assert "pytorch_ood/default" not in names and len(names) >= 30
    assert check_overrides([arg]) is None


def test_wrong_names_list_the_valid_ones() -> None:
    msg = check_overrides(["pair=nope", "detector=pytorch_ood/msp"])
    assert "no pair named 'nope'" in msg and "Valid pair options: " in msg and "mnist" in msg
    msg = check_overrides(["-m", "detector=pytorch_ood/msp,pytorch_ood/typo"])
    assert "'pytorch_ood/typo'" in msg and "pytorch_ood/msp" in msg
    assert check_overrides(["data.max_ood=10", "detectors.x.params.k=3"]) is None


def _script(function: str, args: list[str]):
    import subprocess
    import sys

    code = (f"import sys; from benchmark.cli import {function}; sys.argv[1:] = {args!r}; "
            f"{function}()")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300)


def test_tables_and_report_commands_fail_with_a_message(tmp_path) -> None:
    for function, args, message in (
            ("tables_main", ["table=nope"], "Valid table options: "),
            ("tables_main", [], "usage: ood-bench-tables table=<name>"),
            ("novelty_main", ["novelty=nope"], "Valid novelty options: "),
            ("novelty_main", [], "usage: ood-bench-novelty novelty=<name>"),
            ("report_main", [str(tmp_path / "absent")], "does not exist"),
            ("report_main", [str(tmp_path)], "no run (a folder with metrics.csv)"),
            ("report_main", ["--store", str(tmp_path / "no-store"), "--out", str(tmp_path)],
             "no results store at"),
            ("report_main", ["--where", "auroc > 0.5", str(tmp_path)], "give --store DIR too"),
            ("tables_main", ["table=neuralfp", "--store"], "--store wants the results store"),
            ("main", ["--resume"], "usage: ood-bench --resume <sweep folder>"),
            ("main", ["--resume", str(tmp_path)], "is not a sweep folder (no multirun.yaml)")):
        proc = _script(function, args)
        assert proc.returncode == 2, (function, args, proc.stderr[-2000:])
        assert message in proc.stderr and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    # a report of nothing writes nothing (it once left an empty results/<folder name>)
    assert not (REPO / "results" / tmp_path.name).exists()

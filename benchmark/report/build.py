"""``report.md``: the libraries of a sweep compared criterion by criterion, from files only.

Reads the runs (``benchmark.results``) and the study CSVs in the report folder
(``ease_of_use.csv``, ``robustness.csv``, written by the studies); writes the parts
``sweep.{csv,md,tex}``, ``timing.{md,csv}``, ``ease_of_use.md``, ``robustness.md``,
``plots/*.png`` and ``report.md`` linking them. Nothing here runs a model: every library the
registry knows appears, and a new adapter needs no change here.
"""

from __future__ import annotations

import datetime as dt
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from benchmark.jobs import status_lines
from benchmark.paths import scrub_paths
from benchmark.render import CONVENTION, markdown_table
from benchmark.report import ease as ease_part
from benchmark.report import robustness as robustness_part
from benchmark.report import significance
from benchmark.report.html import write_html
from benchmark.report.plots import write_plots
from benchmark.report.summary import (
    decide_performance,
    ease_rows,
    performance_rows,
    report_libraries,
    robustness_rows,
    same_method_speed_rows,
    same_method_table,
    speed_rows,
    summary_table,
)
from benchmark.report.sweep import SPREAD_NOTE, ood_order, pivot_markdown, write_sweep_tables
from benchmark.report.timing import NOTES as TIMING_NOTES
from benchmark.report.timing import markdown as timing_markdown
from benchmark.report.timing import sweep_line, write_timing
from benchmark.results import Collection, collect, sweep_commands


def default_out(roots: list[Path]) -> Path:
    root = roots[0].resolve()
    name = root.name
    if re.fullmatch(r"\d\d-\d\d-\d\d", name) and re.fullmatch(r"\d{4}-\d\d-\d\d", root.parent.name):
        name = f"{root.parent.name}_{name}"
    return Path("results") / name


@dataclass
class Studies:
    """The study results found in the report folder (None: that study has not been run)."""

    ease: list[dict[str, Any]] | None
    robustness: pd.DataFrame | None

    @classmethod
    def read(cls, out: Path) -> Studies:
        return cls(ease_part.read(out), robustness_part.read(out))


def build_report(roots: list[Path], out: Path, commands: list[str] | None = None,
                 report_command: str | None = None, coll: Collection | None = None,
                 html: bool = False) -> Path:
    """Write every part and ``report.md`` into ``out`` (and ``report.html`` with ``html``);
    returns the report's path. ``coll``: runs already collected (e.g. from the results
    store) instead of those under ``roots``."""
    out.mkdir(parents=True, exist_ok=True)
    coll = coll if coll is not None else collect(roots)
    tables = write_sweep_tables(coll, out)
    timing = write_timing(coll, out)
    plots = write_plots(coll, out)
    studies = Studies.read(out)
    libs = report_libraries(coll)
    rows = (performance_rows(coll, tables) + speed_rows(coll, timing)
            + same_method_speed_rows(coll, tables, timing)
            + ease_rows(coll, studies.ease) + robustness_rows(coll, studies.robustness))
    tester = significance.Tester(coll)  # scores loaded once for every test of the report
    decide_performance(rows, coll, tester)
    text = _report_text(coll, out, tables, timing, plots, studies, libs, rows,
                        commands or [], report_command, tester)
    path = out / "report.md"
    path.write_text(text)
    if html:
        write_html(coll, out, _title(libs), _commands(coll, commands or [], report_command),
                   _generated(coll), status_lines(coll.roots), summary_table(rows, libs),
                   timing_markdown(timing), plots)
    scrub_paths(out)
    return path


def _rel(path: Path, out: Path) -> str:
    return os.path.relpath(path, out)


def _commands(coll: Collection, commands: list[str], report_command: str | None) -> list[str]:
    cmds = list(commands) or sweep_commands(coll.roots)  # --command lines replace Hydra's
    return [*cmds, report_command] if report_command else cmds


def _generated(coll: Collection) -> str:
    manifests = [r.manifest for r in coll.runs if r.manifest]
    m0 = manifests[0] if manifests else {}
    versions: dict[str, list[str]] = {}
    for m in manifests:
        for k, v in (m.get("versions") or {}).items():
            if v and str(v) not in versions.setdefault(k, []):
                versions[k].append(str(v))
    commits = sorted({str(m.get("git_commit")) for m in manifests})
    return (f"Generated {dt.datetime.now().isoformat(timespec='seconds')}; {len(coll.runs)} "
            f"runs, {coll.rows['label'].nunique()} detectors; device: {m0.get('device', '?')}; "
            f"git {', '.join(commits) or '?'}; versions (a / b = runs in different "
            "environments): " + ", ".join(f"{k} {' / '.join(v)}" for k, v in versions.items())
            + ".")


def _title(libs: list[str]) -> str:
    return "OOD detector libraries compared: " + ", ".join(libs)


def _header(coll: Collection, libs: list[str], commands: list[str],
            report_command: str | None) -> list[str]:
    return [f"# {_title(libs)}", "",
            "Commands that produced this report:", "", "```bash",
            *_commands(coll, commands, report_command), "```", "",
            f"> {CONVENTION}", "", _generated(coll), ""]


def _study_sections(out: Path, studies: Studies) -> list[str]:
    t = ["## 3. Ease of use", ""]
    if studies.ease is not None:
        t += ["Files: [ease_of_use.md](ease_of_use.md), [ease_of_use.csv](ease_of_use.csv) "
              "(definitions and per-library details there).", "",
              ease_part.write_markdown(out, studies.ease), ""]
    else:
        t += ["Not run for this report (add `--ease`).", ""]
    t += ["## 4. Robustness", ""]
    if studies.robustness is not None:
        t += ["Files: [robustness.md](robustness.md) (probe definitions), "
              "[robustness.csv](robustness.csv).", "",
              robustness_part.write_markdown(out, studies.robustness), ""]
    else:
        t += ["Not run for this report (add `--robustness`).", ""]
    return t


def _plot_section(out: Path, plots: list[Path]) -> list[str]:
    t = ["## 5. Plots", ""]
    bars = [p for p in plots if p.name.endswith("auroc_bar.png")]
    rocs = [p for p in plots if "roc_" in p.name and p not in bars]
    hists = [p for p in plots if p.name.startswith("hist_") or "_hist_" in p.name]
    for p in bars + rocs:
        t += [f"![{p.stem}]({_rel(p, out)})", ""]
    if hists:
        t += ["Score histograms (ID vs each OOD set), one per detector:", ""]
        t += [f"- [{p.stem.removeprefix('hist_')}]({_rel(p, out)})" for p in hists]
        t += [""]
    return t


def _best_section(coll: Collection, tables: dict[str, Any], tester: significance.Tester
                  ) -> list[str]:
    """Per setting and per column (near + far, near, far): the top detector by mean AUROC and
    every detector not significantly below it."""
    t = ["### Best detectors", "",
         "Per column, the detector with the highest mean AUROC (all = near + far OOD sets), and "
         "every detector not significantly below it (paired DeLong, Holm-corrected over the "
         f"comparisons with the top one, adjusted p >= {significance.ALPHA}): on these samples "
         "they cannot be told apart.", ""]
    for (id_ds, bb), table in tables["auroc"].items():
        sub = coll.rows[(coll.rows["id_dataset"] == id_ds) & (coll.rows["backbone"] == bb)]
        for column in ("all", "near", "far"):
            if column not in table or table[column].isna().all():
                continue
            best = significance.best_detectors(tester, table, sub, column)
            if best.empty:
                continue
            tied = best[best["tied_with_top"]]
            below = len(best) - len(tied)
            t += [f"ID {id_ds}, backbone {bb}, **{column}**: top {best.iloc[0].label}; "
                  f"{len(tied) - 1} other detector(s) not significantly below it, {below} "
                  "significantly below.", ""]
            rows = [[str(r.label), str(r.library), f"{r.value:.4f}",
                     "top" if pd.isna(r.p_holm) else f"{r.difference:+.4f}",
                     "—" if pd.isna(r.p_holm) else f"{r.p_holm:.2g}"]
                    for r in tied.itertuples()]
            t += [markdown_table(["detector", "library", f"mean AUROC ({column})",
                                  "difference to top", "p (Holm)"], rows, right=(2, 3, 4)), ""]
    return t


def _report_text(coll: Collection, out: Path, tables: dict[str, Any], timing: pd.DataFrame,
                 plots: list[Path], studies: Studies, libs: list[str],
                 rows: list[dict[str, Any]], commands: list[str],
                 report_command: str | None, tester: significance.Tester) -> str:
    t = _header(coll, libs, commands, report_command)
    t += status_lines(coll.roots)  # missing, failed or interrupted jobs first
    t += ["## Summary by criterion", "",
          "One row per measure. Performance: 'better' names a library only when its best "
          "detector is significantly above every other library's best (paired DeLong test of "
          "the mean AUROC over the row's OOD sets on the same samples, replicates combined, "
          f"Holm-corrected over the table's comparisons, adjusted p < {significance.ALPHA}); "
          "otherwise 'tie'. Other criteria: the better measured value (times, sizes, "
          "findings: lower). Details and definitions are in the parts linked below.", "",
          summary_table(rows, libs), ""]
    t += _best_section(coll, tables, tester)
    same = same_method_table(coll, tables, timing, tester)
    if same:
        t += ["### The same method in several libraries", "",
              "Mean AUROC over the OOD sets, and the timings of section 2, for every method "
              "more than one library implements and this sweep ran (same backbone, same cached "
              "features; methods matched by their canonical id in each adapter's "
              "LIBRARY_INFO).", "", same, ""]
    t += ["## 1. Sweep: detectors x OOD sets", "",
          "Files: [sweep.md](sweep.md), [sweep.csv](sweep.csv), [sweep.tex](sweep.tex) "
          "(booktabs), raw rows [sweep_rows.csv](sweep_rows.csv).", ""]
    for (id_ds, bb), table in tables["auroc"].items():
        sub = coll.rows[(coll.rows["id_dataset"] == id_ds) & (coll.rows["backbone"] == bb)]
        t += [f"AUROC, ID {id_ds}, backbone {bb} (higher = better; FPR@95TPR and failures in "
              f"sweep.md). {SPREAD_NOTE}", "",
              pivot_markdown(table, "auroc", dict(ood_order(sub))), ""]
    t += ["## 2. Timing", "", "Files: [timing.md](timing.md), [timing.csv](timing.csv).", "",
          TIMING_NOTES, "", sweep_line(coll), "", timing_markdown(timing), ""]
    t += _study_sections(out, studies)
    t += _plot_section(out, plots)
    return "\n".join(t)

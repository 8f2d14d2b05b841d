"""``ood-bench-report``: one report comparing the libraries of a sweep, criterion by criterion.

    ood-bench-report <sweep_or_run_dir> [more dirs] [--out results/<name>] [--robustness]
                     [--ease] [--python openood=/path/to/python]

writes ``<out>/report.md`` with a summary by criterion (performance, speed, ease of use,
robustness, code quality) and links to its five parts: ``sweep.{csv,md,tex}``,
``timing.{md,csv}``, ``ease_of_use.{md,csv}``, ``robustness.{md,csv}`` and ``plots/*.png``.
Every library in ``adapters.registry.ADAPTER_MODULES`` appears; a new adapter needs no change
here. Ease of use and robustness cost minutes (fresh interpreters; a few small fits per
detector), so they run only when asked (``--ease``, ``--robustness``, or ``--all``).
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import math
import os
import re
import shlex
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from adapters.registry import ADAPTER_MODULES
from benchmark.metrics import CONVENTION
from benchmark.report_plots import write_plots
from benchmark.report_sweep import (
    Collection,
    collect,
    markdown_table,
    ood_order,
    write_sweep_tables,
)
from benchmark.report_timing import NOTES as TIMING_NOTES
from benchmark.report_timing import markdown as timing_markdown
from benchmark.report_timing import sweep_line, write_timing

log = logging.getLogger("ood-bench-report")

# The same method under each library's name (metrics.csv ``method``), for side-by-side rows.
SAME_METHOD = {
    "msp": ("MaxSoftmax", "msp"), "maxlogit": ("MaxLogit", "mls"),
    "energy": ("EnergyBased", "ebo"), "gen": ("GEN", "gen"), "klm": ("KLMatching", "klm"),
    "tempscale": ("TemperatureScaling", "temp_scaling"), "openmax": ("OpenMax", "openmax"),
    "mahalanobis": ("Mahalanobis", "mds"), "rmd": ("RMD", "rmds"), "gmm": ("GMM", "gmm"),
    "knn": ("KNN", "knn"), "vim": ("ViM", "vim"), "dice": ("DICE", "dice"),
    "she": ("SHE", "she"), "fdbd": ("fDBD", "fdbd"), "nci": ("NCI", "nci"),
    "nnguide": ("NNGuide", "nnguide"), "react": ("ReAct", "react"), "ash": ("ASH", "ash"),
    "scale": ("SCALE", "scale"), "vra": ("VRA", "vra"), "rankfeat": ("RankFeat", "rankfeat"),
    "gram": ("Gram", "gram"), "odin": ("ODIN", "odin"), "gradnorm": ("GradNorm", "gradnorm"),
}
SAME_METHOD_LIBS = ("pytorch_ood", "openood")


def default_out(roots: list[Path]) -> Path:
    root = roots[0].resolve()
    name = root.name
    if re.fullmatch(r"\d\d-\d\d-\d\d", name) and re.fullmatch(r"\d{4}-\d\d-\d\d", root.parent.name):
        name = f"{root.parent.name}_{name}"
    return Path("results") / name


def sweep_commands(roots: list[Path]) -> list[str]:
    """The ``ood-bench`` command lines behind the runs, from what Hydra saved.

    Every ``multirun.yaml`` under a root is one sweep; a run outside any sweep is a single
    ``ood-bench`` call (its ``.hydra/overrides.yaml``).
    """
    cmds = []
    for root in roots:
        sweeps = sorted(root.rglob("multirun.yaml"))
        for multirun in sweeps:
            h = (yaml.safe_load(multirun.read_text()) or {}).get("hydra", {})
            ovr = h.get("overrides", {})
            hydra_args = [a for a in ovr.get("hydra", []) or []
                          if not str(a).startswith("hydra.mode=")]
            args = list(ovr.get("task", []) or []) + hydra_args
            cmds.append("ood-bench -m " + " ".join(shlex.quote(str(a)) for a in args))
        swept = [m.parent for m in sweeps]
        for single in sorted(root.rglob(".hydra/overrides.yaml")):
            run = single.parent.parent
            if any(s == run or s in run.parents for s in swept):
                continue
            args = yaml.safe_load(single.read_text()) or []
            cmds.append("ood-bench " + " ".join(shlex.quote(str(a)) for a in args))
    return cmds or ["(no Hydra overrides saved under the given folders)"]


# --------------------------------------------------------------------------- summary


def _isnan(v: Any) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def _libraries(coll: Collection) -> list[str]:
    return list(dict.fromkeys(list(ADAPTER_MODULES) + list(coll.rows["library"].astype(str))))


def performance_rows(coll: Collection, tables: dict[str, Any]) -> list[dict[str, Any]]:
    """Per library: best detector by mean AUROC, median over detectors, best near / far."""
    aurocs = pd.concat(tables["auroc"].values()) if tables["auroc"] else pd.DataFrame()
    rows: list[dict[str, Any]] = []
    specs = [("best detector, mean AUROC over near+far OOD sets", "all", "max_label", True),
             ("median over its detectors of mean AUROC", "all", "median", True),
             ("best near-OOD AUROC", "near", "max", True),
             ("best far-OOD AUROC", "far", "max", True)]
    for title, col, how, higher in specs:
        rec: dict[str, Any] = {"criterion": "performance", "measure": title, "higher": higher}
        for lib in _libraries(coll):
            sub = aurocs[aurocs["library"] == lib][col].dropna() if len(aurocs) else pd.Series()
            if sub.empty:
                rec[lib] = None
            elif how == "median":
                rec[lib] = float(sub.median())
            elif how == "max_label":
                rec[lib] = (float(sub.max()), str(sub.idxmax()))
            else:
                rec[lib] = float(sub.max())
        rows.append(rec)
    rec = {"criterion": "performance", "measure": "detectors ok / run (all OOD sets ok)",
           "higher": None}
    for lib in _libraries(coll):
        sub = coll.rows[coll.rows["library"] == lib]
        if sub.empty:
            rec[lib] = None
            continue
        ok = sub.groupby("label")["status"].apply(lambda s: bool((s == "ok").all()))
        rec[lib] = f"{int(ok.sum())}/{len(ok)}"
    rows.append(rec)
    return rows


def speed_rows(coll: Collection, timing: pd.DataFrame) -> list[dict[str, Any]]:
    rows = []
    for title, col in (("median fit seconds, all its detectors", "fit_seconds"),
                       ("median scoring s / 1,000 samples, all its detectors",
                        "score_s_per_1000"),
                       ("median peak memory MiB, all its detectors", "peak_memory_mb")):
        rec: dict[str, Any] = {"criterion": "speed", "measure": title, "higher": False}
        for lib in _libraries(coll):
            sub = timing[timing["library"] == lib][col].dropna()
            rec[lib] = float(sub.median()) if len(sub) else None
        rows.append(rec)
    return rows


def same_method_speed_rows(coll: Collection, tables: dict[str, Any], timing: pd.DataFrame
                           ) -> list[dict[str, Any]]:
    """Median fit / scoring time over the methods both pytorch-ood and OpenOOD ran here."""
    pairs = _same_method_labels(tables)
    if not pairs:
        return []
    tim = timing.set_index("label")
    rows = []
    for title, col in (("median fit seconds, same methods", "fit_seconds"),
                       ("median scoring s / 1,000, same methods", "score_s_per_1000")):
        rec: dict[str, Any] = {"criterion": "speed",
                               "measure": f"{title} ({len(pairs)} in both)", "higher": False}
        for lib in _libraries(coll):
            if lib in SAME_METHOD_LIBS:
                i = SAME_METHOD_LIBS.index(lib)
                vals = [tim.loc[p[i], col] for p in pairs.values() if p[i] in tim.index]
                rec[lib] = float(pd.Series(vals).median()) if vals else None
            else:
                rec[lib] = None
        rows.append(rec)
    return rows


def _same_method_labels(tables: dict[str, Any]) -> dict[str, tuple[str, str]]:
    """``{method: (pytorch_ood label, openood label)}`` for methods both libraries ran ok."""
    if not tables["auroc"]:
        return {}
    t = pd.concat(tables["auroc"].values())
    out = {}
    for canon, names in SAME_METHOD.items():
        labels = []
        for lib, name in zip(SAME_METHOD_LIBS, names, strict=True):
            sub = t[(t["library"] == lib) & (t["method"] == name)]["all"].dropna()
            labels.append(str(sub.index[0]) if len(sub) else None)
        if all(labels):
            out[canon] = (labels[0], labels[1])
    return out


def ease_rows(coll: Collection, ease: pd.DataFrame | None) -> list[dict[str, Any]]:
    if ease is None:
        return []
    by = {r["library"]: r for r in ease.to_dict("records")}
    specs = [("ease of use", "installable from PyPI", "on_pypi", True),
             ("ease of use", "dependencies its code imports but does not declare", "n_undeclared",
              False),
             ("ease of use", "declared dependencies broken in the working install",
              "n_broken", False),
             ("ease of use", "size with deps beyond torch, MB", "with_deps_over_torch_mb", False),
             ("ease of use", "import seconds (after torch)", "import_seconds", False),
             ("ease of use", "adapter lines of code per detector", "adapter_loc_per_detector",
              False),
             ("ease of use", "detectors working on CPU out of the box", "cpu_out_of_box", True),
             ("code quality", "public functions with docstring", "docstring_share", True),
             ("code quality", "public functions fully type-hinted", "typed_share", True),
             ("code quality", "ruff findings per 1,000 lines", "ruff_per_1000_lines", False)]
    rows = []
    for crit, title, col, higher in specs:
        rec: dict[str, Any] = {"criterion": crit, "measure": title, "higher": higher}
        for lib in _libraries(coll):
            r = by.get(lib, {})
            v = r.get(col)
            if col != "on_pypi" and not r.get("installed", False) and col not in (
                    "adapter_loc_per_detector", "cpu_out_of_box"):
                v = None
            if col == "cpu_out_of_box" and _isnan(v):
                v = "not declared" if r else None
            if isinstance(v, float) and not _isnan(v) and col.startswith(("n_", "cpu_")):
                v = int(v)
            rec[lib] = None if _isnan(v) else v
        rows.append(rec)
    return rows


def robustness_rows(coll: Collection, robust: pd.DataFrame | None) -> list[dict[str, Any]]:
    if robust is None or robust.empty:
        return []
    from benchmark.report_robustness import summary

    s = summary(robust)
    rec: dict[str, Any] = {"criterion": "robustness", "measure": "probes ok (share)",
                           "higher": True}
    rec2: dict[str, Any] = {"criterion": "robustness", "measure": "probes error / changed",
                            "higher": None}
    for lib in _libraries(coll):
        if lib in s.index:
            r = s.loc[lib]
            rec[lib] = (float(r["ok_share"]), f"{int(r['ok'])}/{int(r['probes'])}")
            rec2[lib] = f"{int(r['error'])} / {int(r['changed'])}"
        else:
            rec[lib] = rec2[lib] = None
    return [rec, rec2]


def _value(v: Any) -> Any:
    return v[0] if isinstance(v, tuple) else v


def _text(v: Any) -> str:
    if v is None:
        return "—"
    if isinstance(v, tuple):
        val, note = v
        return f"{_text(val)} ({note})"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return "0" if v == 0 else f"{v:.4f}" if abs(v) < 1 else f"{v:.2f}"
    return str(v)


def _winner(rec: dict[str, Any], libs: list[str]) -> str:
    if rec.get("higher") is None:
        return ""
    vals = {lib: _value(rec.get(lib)) for lib in libs}
    vals = {k: (float(v) if isinstance(v, bool) else v) for k, v in vals.items()
            if isinstance(v, (int, float)) and not _isnan(v)}
    if len(vals) < 2:
        return ""
    best = max(vals.values()) if rec["higher"] else min(vals.values())
    winners = [k for k, v in vals.items() if math.isclose(v, best, rel_tol=1e-9)]
    return ", ".join(winners) if len(winners) < len(vals) else "tie"


def summary_table(rows: list[dict[str, Any]], libs: list[str]) -> str:
    lines = ["| criterion | measure | " + " | ".join(libs) + " | better |",
             "|---|---|" + "---|" * len(libs) + "---|"]
    for rec in rows:
        cells = [rec["criterion"], rec["measure"]]
        for lib in libs:
            v = rec.get(lib)
            text = _text(v)
            if "share" in rec["measure"] or "with docstring" in rec["measure"] or (
                    "type-hinted" in rec["measure"]):
                val = _value(v)
                if isinstance(val, float):
                    text = f"{val:.0%}" + (f" ({v[1]})" if isinstance(v, tuple) else "")
            cells.append(text)
        cells.append(_winner(rec, libs))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def same_method_table(coll: Collection, tables: dict[str, Any], timing: pd.DataFrame) -> str:
    """The same method in pytorch-ood and OpenOOD side by side: mean AUROC over OOD sets, fit
    seconds, scoring seconds per 1,000 samples."""
    if not tables["auroc"]:
        return ""
    t = pd.concat(tables["auroc"].values())["all"]
    tim = timing.set_index("label")

    def cells(label: str) -> tuple[float, float, float]:
        fit = tim.loc[label, "fit_seconds"] if label in tim.index else float("nan")
        score = tim.loc[label, "score_s_per_1000"] if label in tim.index else float("nan")
        return float(t.loc[[label]].dropna().iloc[0]), float(fit), float(score)

    lines = []
    for canon, (label_a, label_b) in _same_method_labels(tables).items():
        pod_name, oo_name = SAME_METHOD[canon]
        a, b = cells(label_a), cells(label_b)
        lines.append(f"| {canon} ({pod_name} / {oo_name}) | {a[0]:.4f} | {b[0]:.4f} | "
                     f"{a[0] - b[0]:+.4f} | {a[1]:.3g} | {b[1]:.3g} | {a[2]:.3g} | "
                     f"{b[2]:.3g} |")
    if not lines:
        return ""
    head = ("| method (pytorch-ood / OpenOOD name) | AUROC pytorch_ood | AUROC openood | "
            "difference | fit s pytorch_ood | fit s openood | score s/1k pytorch_ood | "
            "score s/1k openood |")
    return "\n".join([head, "|---|" + "---:|" * 7, *lines])


# --------------------------------------------------------------------------- the report


def _rel(path: Path, out: Path) -> str:
    return os.path.relpath(path, out)


def build_report(roots: list[Path], out: Path, *, ease: bool = False, robustness: bool = False,
                 pythons: dict[str, str] | None = None, repeats: int = 3,
                 check_pypi: bool = True, probe_settings: Any = None,
                 commands: list[str] | None = None, report_command: str | None = None) -> Path:
    """Write every part and ``report.md``; returns the report's path."""
    out.mkdir(parents=True, exist_ok=True)
    coll = collect(roots)
    tables = write_sweep_tables(coll, out)
    timing = write_timing(coll, out)
    plots = write_plots(coll, out)
    ease_frame = robust_frame = None
    if ease:
        from benchmark.report_ease import write_ease

        ease_frame = write_ease(out, pythons, repeats, check_pypi, coll.rows)
    if robustness:
        from benchmark.report_robustness import ProbeSettings, write_robustness

        robust_frame = write_robustness(coll, out, probe_settings or ProbeSettings(),
                                        pythons)
    libs = _libraries(coll)
    rows = (performance_rows(coll, tables) + speed_rows(coll, timing)
            + same_method_speed_rows(coll, tables, timing)
            + ease_rows(coll, ease_frame) + robustness_rows(coll, robust_frame))
    text = _report_text(coll, out, tables, timing, plots, ease_frame, robust_frame, libs, rows,
                        commands or [], report_command)
    path = out / "report.md"
    path.write_text(text)
    scrub_paths(out)
    return path


def scrub_paths(out: Path) -> None:
    """Write machine paths portably in every text file of the report (it gets committed):
    the repository as ``.``, the home directory as ``~``, temporary folders as ``<tmp>``."""
    repo = str(Path(__file__).resolve().parents[1])
    home = str(Path.home())
    for f in out.rglob("*"):
        if f.suffix not in {".md", ".csv", ".tex", ".json", ".txt"} or not f.is_file():
            continue
        text = f.read_text()
        new = text.replace(repo + "/", "./").replace(repo, ".").replace(home + "/", "~/")
        new = re.sub(r"(?<![\w./~-])/tmp/[^\s,'\"|)]*", "<tmp>", new)  # absolute /tmp only
        if new != text:
            f.write_text(new)


def _report_text(coll: Collection, out: Path, tables: dict[str, Any], timing: pd.DataFrame,
                 plots: list[Path], ease_frame: pd.DataFrame | None,
                 robust_frame: pd.DataFrame | None, libs: list[str],
                 rows: list[dict[str, Any]], commands: list[str],
                 report_command: str | None) -> str:
    manifests = [r.manifest for r in coll.runs if r.manifest]
    m0 = manifests[0] if manifests else {}
    versions: dict[str, list[str]] = {}
    for m in manifests:
        for k, v in (m.get("versions") or {}).items():
            if v and str(v) not in versions.setdefault(k, []):
                versions[k].append(str(v))
    commits = sorted({str(m.get("git_commit")) for m in manifests})
    cmds = list(commands) or sweep_commands(coll.roots)  # --command lines replace Hydra's
    if report_command:
        cmds.append(report_command)
    t = ["# OOD detector libraries compared: " + ", ".join(libs), "",
         "Commands that produced this report:", "", "```bash", *cmds, "```", "",
         f"> {CONVENTION}", "",
         f"Generated {dt.datetime.now().isoformat(timespec='seconds')}; {len(coll.runs)} runs, "
         f"{coll.rows['label'].nunique()} detectors; device: {m0.get('device', '?')}; "
         f"git {', '.join(commits) or '?'}; versions (a / b = runs in different "
         "environments): " + ", ".join(f"{k} {' / '.join(v)}" for k, v in versions.items())
         + ".", "",
         "## Summary by criterion", "",
         "One row per measure; 'better' names the library with the better value where at "
         "least two libraries have one (AUROC: higher is better; times, sizes, findings: "
         "lower). Details and definitions are in the parts linked below.", "",
         summary_table(rows, libs), ""]
    same = same_method_table(coll, tables, timing)
    if same:
        t += ["### The same method in both libraries", "",
              "Mean AUROC over the OOD sets, and the timings of section 2, for every method "
              "both libraries implement and this sweep ran (same backbone, same cached "
              "features).", "", same, ""]
    t += ["## 1. Sweep: detectors x OOD sets", "",
          "Files: [sweep.md](sweep.md), [sweep.csv](sweep.csv), [sweep.tex](sweep.tex) "
          "(booktabs), raw rows [sweep_rows.csv](sweep_rows.csv).", ""]
    for (id_ds, bb), table in tables["auroc"].items():
        sub = coll.rows[(coll.rows["id_dataset"] == id_ds) & (coll.rows["backbone"] == bb)]
        t += [f"AUROC, ID {id_ds}, backbone {bb} (higher = better; FPR@95TPR and failures in "
              "sweep.md):", "", markdown_table(table, "auroc", dict(ood_order(sub))), ""]
    t += ["## 2. Timing", "", "Files: [timing.md](timing.md), [timing.csv](timing.csv).", "",
          TIMING_NOTES, "", sweep_line(coll), "", timing_markdown(timing), ""]
    t += ["## 3. Ease of use", ""]
    if ease_frame is not None:
        from benchmark.report_ease import markdown as ease_markdown

        t += ["Files: [ease_of_use.md](ease_of_use.md), [ease_of_use.csv](ease_of_use.csv) "
              "(definitions and per-library details there).", "",
              ease_markdown(ease_frame.to_dict("records")), ""]
    else:
        t += ["Not run for this report (add `--ease`).", ""]
    t += ["## 4. Robustness", ""]
    if robust_frame is not None:
        from benchmark.report_robustness import markdown as robust_markdown

        t += ["Files: [robustness.md](robustness.md) (probe definitions), "
              "[robustness.csv](robustness.csv).", "", robust_markdown(robust_frame), ""]
    else:
        t += ["Not run for this report (add `--robustness`).", ""]
    t += ["## 5. Plots", ""]
    bars = [p for p in plots if p.name.endswith("auroc_bar.png")]
    rocs = [p for p in plots if "roc_" in p.name and p not in bars]
    hists = [p for p in plots if p.name.startswith("hist_") or "_hist_" in p.name]
    for p in bars + rocs:
        t += [f"![{p.stem}]({_rel(p, out)})", ""]
    if hists:
        t += ["Score histograms (ID vs each OOD set), one per detector:", ""]
        t += [f"- [{p.stem.removeprefix('hist_')}]({_rel(p, out)})" for p in hists]
        t += [""]
    return "\n".join(t)


def _parse_pythons(items: list[str]) -> dict[str, str]:
    out = {}
    for item in items:
        if "=" not in item:
            raise SystemExit(f"ood-bench-report: --python wants library=/path/to/python, "
                             f"got {item!r}")
        lib, path = item.split("=", 1)
        out[lib] = path
    return out


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    p = argparse.ArgumentParser(prog="ood-bench-report", description=__doc__.split("\n")[0])
    p.add_argument("dirs", nargs="+", type=Path, help="sweep (multirun) or run directories")
    p.add_argument("--out", type=Path, help="output folder (default results/<sweep name>)")
    p.add_argument("--ease", action="store_true", help="measure ease of use (minutes)")
    p.add_argument("--robustness", action="store_true", help="run the robustness probes")
    p.add_argument("--all", action="store_true", help="--ease and --robustness")
    p.add_argument("--python", action="append", default=[], metavar="LIB=PYTHON",
                   help="interpreter that has LIB installed (ease of use, robustness)")
    p.add_argument("--repeats", type=int, default=3, help="import-time repetitions")
    p.add_argument("--offline", action="store_true", help="do not ask PyPI")
    p.add_argument("--probe-n-id", type=int, default=500)
    p.add_argument("--probe-n-ood", type=int, default=500)
    p.add_argument("--probe-fit-cap", type=int, default=2000)
    p.add_argument("--command", action="append", default=[],
                   help="the exact command that produced the runs (repeatable); listed at the "
                   "top of report.md instead of the lines rebuilt from Hydra's overrides")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    for d in args.dirs:
        if not d.exists():
            p.error(f"{d} does not exist")
    out = args.out or default_out(args.dirs)
    settings = None
    if args.all or args.robustness:
        from benchmark.report_robustness import ProbeSettings

        settings = ProbeSettings(n_id=args.probe_n_id, n_ood=args.probe_n_ood,
                                 fit_cap=args.probe_fit_cap)
    try:
        path = build_report(
            args.dirs, out, ease=args.all or args.ease, robustness=args.all or args.robustness,
            pythons=_parse_pythons(args.python), repeats=args.repeats,
            check_pypi=not args.offline, probe_settings=settings, commands=args.command,
            report_command="ood-bench-report " + " ".join(shlex.quote(a) for a in argv))
    except FileNotFoundError as exc:
        print(f"ood-bench-report: error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    print(f"report: {path}")


if __name__ == "__main__":
    main()

"""The report's summary: one row per measure and library, criterion by criterion, and the same
method from several libraries side by side (methods matched by their canonical id)."""

from __future__ import annotations

import itertools
import math
from typing import Any

import pandas as pd

from adapters.registry import libraries, library_info
from benchmark.render import markdown_table
from benchmark.report import significance
from benchmark.report.robustness import summary as robustness_summary
from benchmark.results import Collection


def report_libraries(coll: Collection) -> list[str]:
    """Every library the registry knows, then any other the sweep used."""
    return list(dict.fromkeys(libraries() + list(coll.rows["library"].astype(str))))


def canonical_method(library: str, method: str) -> str:
    """The method id shared across libraries (``LIBRARY_INFO.methods``; else its own name)."""
    try:
        return library_info(library).method(method)
    except Exception:  # an adapter not importable here
        return method


def _isnan(v: Any) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def _aurocs(tables: dict[str, Any]) -> pd.DataFrame:
    return pd.concat(tables["auroc"].values()) if tables["auroc"] else pd.DataFrame()


def performance_rows(coll: Collection, tables: dict[str, Any]) -> list[dict[str, Any]]:
    """Per library: best detector by mean AUROC, median over detectors, best near / far."""
    aurocs = _aurocs(tables)
    rows: list[dict[str, Any]] = []
    specs = [("best detector, mean AUROC over near+far OOD sets", "all", "max_label", True),
             ("median over its detectors of mean AUROC", "all", "median", True),
             ("best near-OOD AUROC", "near", "max", True),
             ("best far-OOD AUROC", "far", "max", True)]
    for title, col, how, higher in specs:
        rec: dict[str, Any] = {"criterion": "performance", "measure": title, "higher": higher}
        if how == "median":
            rec["better"] = "not tested"  # no paired test for a median over detectors
        else:
            rec["compare"] = {"column": col, "labels": {}}
        for lib in report_libraries(coll):
            sub = aurocs[aurocs["library"] == lib][col].dropna() if len(aurocs) else pd.Series()
            if sub.empty:
                rec[lib] = None
                continue
            if how == "median":
                rec[lib] = float(sub.median())
                continue
            rec["compare"]["labels"][lib] = str(sub.idxmax())
            rec[lib] = ((float(sub.max()), str(sub.idxmax())) if how == "max_label"
                        else float(sub.max()))
        rows.append(rec)
    rec = {"criterion": "performance", "measure": "detectors ok / run (all OOD sets ok)",
           "higher": None}
    for lib in report_libraries(coll):
        sub = coll.rows[coll.rows["library"] == lib]
        if sub.empty:
            rec[lib] = None
            continue
        ok = sub.groupby("label")["status"].apply(lambda s: bool((s == "ok").all()))
        rec[lib] = f"{int(ok.sum())}/{len(ok)}"
    rows.append(rec)
    return rows


def decide_performance(rows: list[dict[str, Any]], coll: Collection,
                       tester: significance.Tester | None = None) -> None:
    """Set ``better`` of every row that compares the libraries' best detectors: the library
    whose best is significantly above every other library's best (paired DeLong on the
    column's OOD sets, Holm over all the table's comparisons), else ``tie``."""
    tester = tester or significance.Tester(coll)
    planned: list[tuple[dict[str, Any], str, str, significance.Test]] = []
    for rec in rows:
        cmp = rec.get("compare")
        if not cmp or len(cmp["labels"]) < 2:
            continue
        labels = cmp["labels"]
        for lib_a, lib_b in itertools.combinations(labels, 2):
            a, b = labels[lib_a], labels[lib_b]
            sets = significance.group_sets(coll.rows[coll.rows["label"] == a], cmp["column"])
            test = tester.test(a, b, sets)
            if test is not None:
                planned.append((rec, lib_a, lib_b, test))
    adj = significance.adjusted([t for *_, t in planned])
    for rec in rows:
        cmp = rec.get("compare")
        if not cmp or len(cmp["labels"]) < 2:
            continue
        wins: dict[str, set[str]] = {lib: set() for lib in cmp["labels"]}
        tested: dict[str, set[str]] = {lib: set() for lib in cmp["labels"]}
        for r, lib_a, lib_b, t in planned:
            if r is not rec:
                continue
            tested[lib_a].add(lib_b)
            tested[lib_b].add(lib_a)
            if adj[(t.a, t.b, t.sets)] < significance.ALPHA:
                wins[lib_a if t.difference > 0 else lib_b].add(lib_b if t.difference > 0
                                                               else lib_a)
        others = set(cmp["labels"])
        winner = [lib for lib in cmp["labels"] if wins[lib] == others - {lib}]
        if winner:
            rec["better"] = winner[0]
        elif not any(tested.values()):
            rec["better"] = "not tested (no shared scores)"
        else:
            rec["better"] = "tie"


def speed_rows(coll: Collection, timing: pd.DataFrame) -> list[dict[str, Any]]:
    rows = []
    for title, col in (("median fit seconds, all its detectors", "fit_seconds"),
                       ("median scoring s / 1,000 samples, all its detectors",
                        "score_s_per_1000"),
                       ("median peak memory MiB, all its detectors", "peak_memory_mb")):
        rec: dict[str, Any] = {"criterion": "speed", "measure": title, "higher": False}
        for lib in report_libraries(coll):
            sub = timing[timing["library"] == lib][col].dropna()
            rec[lib] = float(sub.median()) if len(sub) else None
        rows.append(rec)
    return rows


def shared_methods(tables: dict[str, Any]) -> dict[str, dict[str, tuple[str, str]]]:
    """``{method id: {library: (label, library's own name)}}`` for every method that at least
    two libraries ran with a mean AUROC (their default rows; tuned rows are left out)."""
    t = _aurocs(tables)
    if t.empty:
        return {}
    by_method: dict[str, dict[str, tuple[str, str]]] = {}
    for label, row in t.iterrows():
        if pd.isna(row["all"]) or bool(row.get("tuned", False)):  # defaults vs defaults
            continue
        canon = canonical_method(str(row["library"]), str(row["method"]))
        by_method.setdefault(canon, {}).setdefault(str(row["library"]),
                                                   (str(label), str(row["method"])))
    return {m: libs for m, libs in by_method.items() if len(libs) >= 2}


def _compared(shared: dict[str, dict[str, tuple[str, str]]], coll: Collection) -> list[str]:
    present = {lib for libs in shared.values() for lib in libs}
    return [lib for lib in report_libraries(coll) if lib in present]


def same_method_speed_rows(coll: Collection, tables: dict[str, Any], timing: pd.DataFrame
                           ) -> list[dict[str, Any]]:
    """Median fit / scoring time per library over the methods several libraries ran here."""
    shared = shared_methods(tables)
    if not shared:
        return []
    libs = _compared(shared, coll)
    where = "in both" if len(libs) == 2 else "in several"
    tim = timing.set_index("label")
    rows = []
    for title, col in (("median fit seconds, same methods", "fit_seconds"),
                       ("median scoring s / 1,000, same methods", "score_s_per_1000")):
        rec: dict[str, Any] = {"criterion": "speed",
                               "measure": f"{title} ({len(shared)} {where})", "higher": False}
        for lib in report_libraries(coll):
            vals = [tim.loc[m[lib][0], col] for m in shared.values()
                    if lib in m and m[lib][0] in tim.index]
            rec[lib] = float(pd.Series(vals).median()) if vals else None
        rows.append(rec)
    return rows


def same_method_table(coll: Collection, tables: dict[str, Any], timing: pd.DataFrame,
                      tester: significance.Tester | None = None) -> str:
    """The same method from several libraries side by side: mean AUROC over OOD sets, fit
    seconds, scoring seconds per 1,000 samples (and the AUROC difference of two libraries)."""
    shared = shared_methods(tables)
    if not shared:
        return ""
    libs = _compared(shared, coll)
    t = _aurocs(tables)["all"]
    tim = timing.set_index("label")

    def value(frame: Any, label: str | None, col: str | None = None) -> float:
        if label is None or label not in frame.index:
            return float("nan")
        v = frame.loc[label] if col is None else frame.loc[label, col]
        return float(v.dropna().iloc[0] if isinstance(v, pd.Series) else v)

    def fmt(v: float, spec: str) -> str:
        return "—" if math.isnan(v) else format(v, spec)

    two = len(libs) == 2
    verdicts = (_same_method_verdicts(shared, libs, tester or significance.Tester(coll))
                if two else {})
    head = [f"method ({' / '.join(library_title(lib) for lib in libs)} name)"]
    head += [f"AUROC {lib}" for lib in libs] + (["difference", "p (Holm)", "better"] if two
                                                else ["spread"])
    head += [f"fit s {lib}" for lib in libs] + [f"score s/1k {lib}" for lib in libs]
    rows = []
    for canon, by_lib in shared.items():
        labels = {lib: by_lib[lib][0] if lib in by_lib else None for lib in libs}
        names = " / ".join(by_lib[lib][1] if lib in by_lib else "—" for lib in libs)
        auroc = [value(t, labels[lib]) for lib in libs]
        finite = [a for a in auroc if not math.isnan(a)]
        gap = auroc[0] - auroc[1] if two else max(finite) - min(finite)
        tested = [verdicts[canon][0], verdicts[canon][1]] if canon in verdicts else (
            ["—", "not tested"] if two else [])
        rows.append([f"{canon} ({names})", *(fmt(a, ".4f") for a in auroc), fmt(gap, "+.4f"),
                     *tested,
                     *(fmt(value(tim, labels[lib], "fit_seconds"), ".3g") for lib in libs),
                     *(fmt(value(tim, labels[lib], "score_s_per_1000"), ".3g") for lib in libs)])
    return markdown_table(head, rows, right=range(1, len(head)))


def _same_method_verdicts(shared: dict[str, dict[str, tuple[str, str]]], libs: list[str],
                          tester: significance.Tester) -> dict[str, tuple[str, str]]:
    """Per method run by both libraries: (Holm-adjusted p, "tie" or the better library) of
    the paired DeLong test of their mean AUROC (the sweep's ``all`` sets)."""
    coll = tester.coll
    tests = {}
    for canon, by_lib in shared.items():
        if all(lib in by_lib for lib in libs):
            a, b = by_lib[libs[0]][0], by_lib[libs[1]][0]
            sets = significance.group_sets(coll.rows[coll.rows["label"] == a], "all")
            if (t := tester.test(a, b, sets)) is not None:
                tests[canon] = t
    adj = significance.adjusted(list(tests.values()))
    out = {}
    for canon, t in tests.items():
        p = adj[(t.a, t.b, t.sets)]
        better = (libs[0] if t.difference > 0 else libs[1]) if p < significance.ALPHA else "tie"
        out[canon] = (f"{p:.2g}", better)
    return out


def library_title(library: str) -> str:
    try:
        return library_info(library).title
    except Exception:
        return library


def ease_rows(coll: Collection, ease: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    if ease is None:
        return []
    by = {r["library"]: r for r in ease}
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
        for lib in report_libraries(coll):
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
    s = robustness_summary(robust)
    rec: dict[str, Any] = {"criterion": "robustness", "measure": "probes ok (share)",
                           "higher": True}
    rec2: dict[str, Any] = {"criterion": "robustness", "measure": "probes error / changed",
                            "higher": None}
    for lib in report_libraries(coll):
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
    body = []
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
        cells.append(rec["better"] if "better" in rec else _winner(rec, libs))
        body.append(cells)
    return markdown_table(["criterion", "measure", *libs, "better"], body)

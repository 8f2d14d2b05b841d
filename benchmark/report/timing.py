"""Timing report: per detector, fit time, scoring time per 1,000 samples, peak memory, device.

Everything is read from what the runs wrote (``metrics.csv`` rows and ``manifest.json``); no
model is run again.

* ``fit_seconds``: the detector's ``fit`` on the ID fit split (one value per detector).
* ``import_seconds``: importing the library's modules in that process before the fit (the
  first detector of a library in a process pays it; kept out of ``fit_seconds``).
* ``score_s_per_1000``: all scoring time (ID test + every OOD set) divided by the number of
  samples scored, times 1,000.
* ``peak_memory_mb``: peak resident memory above the start while the detector ran (sampled).
* ``extraction_share``: the share of the run's wall time spent in the shared feature extraction
  (``manifest.timings.extraction_seconds / total_seconds``); when the representations came
  from the cache this is the time to load them (``representations_cached``).
* ``timings_from_cache``: the scores (and so these timings) were reused from an earlier,
  identical computation (``cache_scores=true``); the numbers are those measured then.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd

from benchmark.render import MISSING, frame_markdown, is_missing, markdown_table
from benchmark.results import Collection

COLUMNS = ["label", "library", "detector", "consumes", "device", "fit_seconds", "import_seconds",
           "score_seconds_total", "n_scored", "score_s_per_1000", "peak_memory_mb",
           "extraction_seconds", "run_total_seconds", "extraction_share",
           "representations_cached", "timings_from_cache", "run"]


def per_1000(seconds: float, n: int) -> float:
    """Seconds per 1,000 samples."""
    return float("nan") if not n else 1000.0 * seconds / n


def _as_float(v: Any) -> float:
    """``v`` as a float; NaN when it is not a number (missing cells)."""
    try:
        f = float(v)
    except (TypeError, ValueError):
        return float("nan")
    return f


def detector_timing(grp: pd.DataFrame) -> dict[str, Any]:
    """Timing of one detector from its metric rows (one row per OOD set, same run)."""
    first = grp.iloc[0]
    ood_seconds = sum(_as_float(v) for v in grp["score_seconds"] if not math.isnan(_as_float(v)))
    id_seconds = _as_float(first.get("id_score_seconds"))
    n_ood = int(sum(_as_float(v) for v in grp["n_ood"] if not math.isnan(_as_float(v))))
    n_id = _as_float(first.get("n_id"))
    total = ood_seconds + (0.0 if math.isnan(id_seconds) else id_seconds)
    n = n_ood + (0 if math.isnan(n_id) else int(n_id))
    scored = grp["score_seconds"].notna().any() or not math.isnan(id_seconds)
    return {
        "label": first["label"], "library": first["library"], "detector": first["detector"],
        "consumes": first.get("consumes", ""), "device": first.get("device", ""),
        "fit_seconds": _as_float(first.get("fit_seconds")),
        "import_seconds": _as_float(first.get("import_seconds")),
        "score_seconds_total": total if scored else float("nan"),
        "n_scored": n, "score_s_per_1000": per_1000(total, n) if scored else float("nan"),
        "peak_memory_mb": _as_float(first.get("peak_memory_mb")),
        "timings_from_cache": bool(str(first.get("from_cache", "")).lower() == "true"),
        "run": first["run"],
    }


def timing_frame(coll: Collection) -> pd.DataFrame:
    manifests = {r.rel: r.manifest for r in coll.runs}
    out = []
    for _, grp in coll.rows.groupby("label", sort=False):
        rec = detector_timing(grp[grp["run"] == grp["run"].iloc[0]])  # one replicate's times
        m = manifests.get(rec["run"], {})
        t = m.get("timings", {})
        rec["extraction_seconds"] = _as_float(t.get("extraction_seconds"))
        rec["run_total_seconds"] = _as_float(t.get("total_seconds"))
        rec["extraction_share"] = (rec["extraction_seconds"] / rec["run_total_seconds"]
                                   if rec["run_total_seconds"] else float("nan"))
        reps = m.get("representations", {})
        rec["representations_cached"] = (all(v.get("from_cache") for v in reps.values())
                                         if reps else None)
        if m.get("device"):
            rec["device"] = m["device"]
        out.append(rec)
    return pd.DataFrame(out, columns=COLUMNS)


def _formatted(v: Any, fmt: str) -> str:
    return MISSING if is_missing(v) else format(v, fmt)


def markdown(frame: pd.DataFrame) -> str:
    head = ["detector", "library", "reads", "fit s", "score s / 1k", "peak MiB",
            "extraction share of run", "device"]
    rows = []
    for _, r in frame.sort_values(["library", "label"]).iterrows():
        cached = " (reps cached)" if r["representations_cached"] else ""
        mark = " †" if r["timings_from_cache"] else ""
        rows.append([
            f"{r['label']}{mark}", str(r["library"]), str(r["consumes"]),
            _formatted(r["fit_seconds"], ".3g"), _formatted(r["score_s_per_1000"], ".3g"),
            _formatted(r["peak_memory_mb"], ".1f"),
            f"{_formatted(r['extraction_share'], '.1%')} of "
            f"{_formatted(r['run_total_seconds'], '.1f')} s{cached}", str(r["device"])])
    return markdown_table(head, rows, right=range(3, 7))


NOTES = (
    "fit s: the detector's fit on the ID fit split. score s / 1k: all scoring time (ID test + "
    "every OOD set) per 1,000 samples. peak MiB: peak resident memory above the start while "
    "the detector ran (sampled every 10 ms). Extraction share: the run's shared feature "
    "extraction (one forward pass per split, or loading it from the cache: 'reps cached') "
    "over the run's wall time. † = scores reused from the score cache; the timings are those "
    "measured when they were computed."
)


def library_summary(frame: pd.DataFrame) -> pd.DataFrame:
    """Medians per library (the summary table's speed rows)."""
    return frame.groupby("library").agg(
        detectors=("label", "count"), median_fit_seconds=("fit_seconds", "median"),
        median_score_s_per_1000=("score_s_per_1000", "median"),
        median_peak_memory_mb=("peak_memory_mb", "median"))


def sweep_line(coll: Collection) -> str:
    """Where the sweep's wall time went: runs, extraction computed vs loaded from the cache."""
    runs = [r.manifest for r in coll.runs if r.manifest.get("timings")]
    if not runs:
        return ""
    total = sum(_as_float(m["timings"].get("total_seconds")) for m in runs)
    fresh = [m for m in runs if not all(v.get("from_cache") for v in
                                        m.get("representations", {}).values())]
    loaded = [m for m in runs if m not in fresh]
    ext = [_as_float(m["timings"].get("extraction_seconds")) for m in fresh]
    load = sorted(_as_float(m["timings"].get("extraction_seconds")) for m in loaded)
    parts = [f"Sweep: {len(runs)} runs, {total:.1f} s of run wall time in all."]
    if fresh:
        parts.append(f"The shared features were extracted in {len(fresh)} run(s) "
                     f"({sum(ext):.1f} s, {sum(ext) / total:.1%} of the sweep's wall time).")
    if load:
        parts.append(f"{len(load)} run(s) loaded them from the cache (median "
                     f"{load[len(load) // 2]:.2f} s each).")
    return " ".join(parts)


def write_timing(coll: Collection, out: Path) -> pd.DataFrame:
    frame = timing_frame(coll)
    frame.to_csv(out / "timing.csv", index=False)
    text = ["# Timing per detector", "", NOTES, "", sweep_line(coll), "", markdown(frame), "",
            "## Per library (medians over its detectors)", "",
            frame_markdown(library_summary(frame)), ""]
    (out / "timing.md").write_text("\n".join(text))
    return frame

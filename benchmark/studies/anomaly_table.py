"""``ood-bench-tables table=anomaly``: the anomaly track's table (``kind: anomaly``).

A protocol with a ``sweep`` (one-class CIFAR-10: ``pair.normal_class`` over the ten classes)
becomes one run per value; each run goes through the normal runner (caches reused). The table
shows, per protocol and detector: AUROC (per class and the mean ± sd over classes for a sweep;
with its 95 % bootstrap interval for a single run), AUPRC (anomalies positive), accuracy,
precision, recall and F1 at the Youden threshold picked on the validation split, the fit time,
and the published values beside ours with the difference. Nothing is typed in: every number
comes from the runs' ``metrics.csv``; a published value comes from the table config with its
source.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from benchmark.render import CONVENTION, frame_markdown

AT_VAL = ("accuracy_at_val", "precision_at_val", "recall_at_val", "f1_at_val")
NAMES = {"auroc": "AUROC", "aupr_out": "AUPRC", "accuracy_at_val": "accuracy",
         "precision_at_val": "precision", "recall_at_val": "recall", "f1_at_val": "F1"}


def expand_runs(spec: dict[str, Any]) -> dict[str, Any]:
    """``spec`` with ``runs`` made from its protocols: ``<protocol>`` for a single run,
    ``<protocol>_<value>`` per value of a protocol's sweep."""
    runs: dict[str, Any] = {}
    for name, proto in spec["protocols"].items():
        optional = bool(proto.get("optional", False))  # left out when its data is not here
        sweep = proto.get("sweep")
        if not sweep:
            runs[name] = {"overrides": list(proto["overrides"]), "optional": optional}
            continue
        for value in sweep["values"]:
            runs[f"{name}_{value}"] = {"overrides": [*proto["overrides"],
                                                     f"{sweep['key']}={value}"],
                                       "optional": optional}
    return {**spec, "runs": runs}


def _run_names(name: str, proto: dict[str, Any]) -> list[tuple[str, str]]:
    """(value shown in the table, run name) per run of a protocol."""
    sweep = proto.get("sweep")
    if not sweep:
        return [(name, name)]
    return [(str(v), f"{name}_{v}") for v in sweep["values"]]


def _runs_of(name: str, proto: dict[str, Any], runs: dict[str, list]) -> list[tuple[str, Any]]:
    return [(value, runs[run][0]) for value, run in _run_names(name, proto) if run in runs]


def left_out_protocols(spec: dict[str, Any], runs: dict[str, list],
                       left_out: dict[str, dict[Any, str]]) -> dict[str, str]:
    """Protocols none of whose runs were made (optional data not here): name -> reason."""
    out = {}
    for pname, proto in spec["protocols"].items():
        names = [run for _, run in _run_names(pname, proto)]
        if not any(run in runs for run in names):
            reasons = left_out.get(names[0]) or {}
            out[pname] = next(iter(reasons.values()), "not run")
    return out


def records(spec: dict[str, Any], runs: dict[str, list], rows: dict[str, tuple[str, str]]
            ) -> pd.DataFrame:
    """Long records: protocol, run value, row label, OOD set, and every metric of the cell."""
    out = []
    for pname, proto in spec["protocols"].items():
        for value, res in _runs_of(pname, proto, runs):
            frame = res.frame
            for label, (_, det) in rows.items():
                for _, r in frame[frame.detector == det].iterrows():
                    rec = {"protocol": pname, "run": value, "row": label,
                           "ood": r.ood_dataset, "group": r.ood_group, "status": r.status}
                    for col in ("auroc", "auroc_lo", "auroc_hi", "aupr_out", *AT_VAL,
                                "val_threshold", "fit_seconds", "score_seconds"):
                        rec[col] = r.get(col)
                    out.append(rec)
    return pd.DataFrame(out)


def wide(long: pd.DataFrame, labels: list[str]) -> pd.DataFrame:
    """AUROC cells, one row per table row, one column per (protocol, run, set): the LaTeX."""
    cells = long.assign(cell=long.auroc.map(_num),
                        column=long.protocol + " " + long.run + " " + long.ood)
    return cells.pivot(index="row", columns="column", values="cell").loc[labels]


def _num(v: Any, digits: int = 4) -> str:
    return "—" if v is None or pd.isna(v) else f"{v:.{digits}f}"


def _published(proto: dict[str, Any], label: str, metric: str) -> float | None:
    value = ((proto.get("published") or {}).get("values") or {}).get(label, {}).get(metric)
    return None if value is None else float(value)


def _with_published(ours: float | None, pub: float | None) -> str:
    if pub is None:
        return "—"
    diff = "" if ours is None or pd.isna(ours) else f" ({ours - pub:+.4f})"
    return f"{pub:.3f}{diff}"


def sweep_section(pname: str, proto: dict[str, Any], long: pd.DataFrame,
                  labels: list[str]) -> list[str]:
    """Per-class AUROC, the mean ± sd over classes, the published mean and the difference."""
    sub = long[(long.protocol == pname) & (long.ood == proto["ood"])]
    names = proto["sweep"].get("labels") or [str(v) for v in proto["sweep"]["values"]]
    values = [str(v) for v in proto["sweep"]["values"]]
    table = []
    for label in labels:
        cells = sub[sub.row == label].set_index("run")
        aurocs = [cells.auroc.get(v) if v in cells.index and cells.status.get(v) == "ok"
                  else None for v in values]
        ok = [a for a in aurocs if a is not None and not pd.isna(a)]
        mean = float(np.mean(ok)) if len(ok) == len(values) else None
        sd = float(np.std(ok, ddof=1)) if mean is not None and len(ok) > 1 else None
        row = {"detector": label}
        row.update({n: _num(a, 3) for n, a in zip(names, aurocs, strict=True)})
        row["mean AUROC ± sd"] = (f"{mean:.4f} ± {sd:.4f}" if mean is not None
                                  else f"{len(ok)}/{len(values)} classes")
        for metric in ("aupr_out", "f1_at_val"):
            vals = [cells[metric].get(v) for v in values if v in cells.index]
            row[f"mean {NAMES[metric]}"] = (_num(float(np.mean(vals))) if len(vals) == len(values)
                                            else "—")
        row["published mean AUROC (ours - published)"] = _with_published(
            mean, _published(proto, label, "auroc"))
        fit = [cells.fit_seconds.get(v) for v in values if v in cells.index]
        row["mean fit s"] = _num(float(np.nanmean(fit)), 1) if fit else "—"
        table.append(row)
    return [f"## {proto.get('title', pname)}", "", proto.get("text", "").strip(), "",
            frame_markdown(pd.DataFrame(table).set_index("detector")), ""]


def single_section(pname: str, proto: dict[str, Any], long: pd.DataFrame,
                   labels: list[str]) -> list[str]:
    """One run: AUROC [interval], AUPRC and the validation-threshold metrics per detector,
    the published values beside; then AUROC per OOD group's sets (e.g. corruption kind)."""
    sub = long[long.protocol == pname]
    head = sub[sub.ood == proto["ood"]].set_index("row")
    table = []
    for label in labels:
        if label not in head.index:
            continue
        r = head.loc[label]
        row = {"detector": label}
        if r.status != "ok":
            row["AUROC [95 % CI]"] = "failed"
            table.append(row)
            continue
        row["AUROC [95 % CI]"] = (f"{r.auroc:.4f} [{r.auroc_lo:.3f}, {r.auroc_hi:.3f}]"
                                  if not pd.isna(r.auroc_lo) else _num(r.auroc))
        for metric in ("aupr_out", *AT_VAL):
            row[NAMES[metric]] = _num(r[metric])
        row["published AUROC (diff)"] = _with_published(r.auroc, _published(proto, label,
                                                                            "auroc"))
        row["published F1 (diff)"] = _with_published(r.f1_at_val, _published(proto, label, "f1"))
        row["fit s"] = _num(r.fit_seconds, 1)
        row["score s"] = _num(r.score_seconds, 2)
        table.append(row)
    lines = [f"## {proto.get('title', pname)}", "", proto.get("text", "").strip(), "",
             frame_markdown(pd.DataFrame(table).set_index("detector")), ""]
    kinds = sub[sub.group == proto.get("by_kind_group")] if proto.get("by_kind_group") else None
    if kinds is not None and len(kinds):
        wide = kinds.pivot_table(index="row", columns="ood", values="auroc", aggfunc="first")
        wide = wide.loc[[lab for lab in labels if lab in wide.index]]
        lines += [f"AUROC per corruption kind (each alone, severity 3, "
                  f"{proto.get('by_kind_note', 'same normal test images')}):", "",
                  frame_markdown(wide), ""]
    return lines


def copy_heatmaps(spec: dict[str, Any], runs: dict[str, list], out_root: Path) -> list[str]:
    """Each run's FCDD heatmap grid, copied to ``<name>_heatmaps/<run>.png``; Markdown links."""
    folder = out_root / f"{spec['name']}_heatmaps"
    shutil.rmtree(folder, ignore_errors=True)
    links = []
    for run_name, reps in runs.items():
        for png in sorted(Path(reps[0].out).glob("anomaly/*/heatmaps.png")):
            folder.mkdir(parents=True, exist_ok=True)
            target = folder / f"{run_name}.png"
            shutil.copyfile(png, target)
            links.append(f"- {run_name}: [{folder.name}/{target.name}]({folder.name}/"
                         f"{target.name})")
    return links


def markdown(spec: dict[str, Any], long: pd.DataFrame, runs: dict[str, list],
             rows: dict[str, tuple[str, str]], extra: list[str], out_root: Path,
             left_out: dict[str, dict[Any, str]]) -> str:
    labels = list(rows)
    lines = [f"# {spec.get('title', spec['name'])}", "",
             f"Command: `ood-bench-tables table={spec['name']}{' ' if extra else ''}"
             f"{' '.join(extra)}`", "",
             f"> {CONVENTION} Here the normal images are the ID class and the anomalies the "
             "OOD (positive) class: AUPRC = AUPR-Out. Accuracy, precision, recall and F1 are "
             "at the Youden threshold (max TPR - FPR) picked on the validation split, then "
             "applied to the test split.", ""]
    skipped = left_out_protocols(spec, runs, left_out)
    for pname, proto in spec["protocols"].items():
        if pname in skipped:
            lines += [f"## {proto.get('title', pname)}", "", f"Not run here: {skipped[pname]}",
                      ""]
            continue
        section = sweep_section if proto.get("sweep") else single_section
        lines += section(pname, proto, long, labels)
        source = (proto.get("published") or {}).get("source")
        if source:
            lines += [f"Published: {source.strip()}", ""]
    if spec.get("notes"):
        lines += [spec["notes"].strip(), ""]
    links = copy_heatmaps(spec, runs, out_root)
    if links:
        lines += ["## FCDD heatmaps", "", "The most and least anomalous test images of each "
                  "run with FCDD's receptive-field upsampled heatmaps:", "", *links, ""]
    lines += ["## Runs", ""]
    for run_name, reps in runs.items():
        m = reps[0].manifest
        lines.append(f"- **{run_name}**: backbone {m['backbone']['name']} (features only), "
                     f"checkpoint sha256 `{m['backbone']['sha256'][:16]}…`; splits "
                     f"{m.get('splits')}; manifest: [{spec['name']}_runs/{run_name}/"
                     f"manifest.json]({spec['name']}_runs/{run_name}/manifest.json)")
    failed = long[long.status != "ok"]
    if len(failed):
        lines += ["", "## Failed cells", ""]
        lines += [f"- {r.protocol} {r.run} {r.row} {r.ood}" for r in failed.itertuples()]
    return "\n".join(lines) + "\n"

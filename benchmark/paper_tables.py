"""``ood-bench-tables table=<name>``: regenerate a paper table from ood-bench runs.

A table config (``configs/table/<name>.yaml``) lists the runs (Hydra overrides), the rows
(label -> detector option) and the columns (run, OOD set), plus published reference values.
Each run goes through the normal runner, so every cache is reused; the table puts our number
beside the published one with the difference, and says "missing" (with the reason) where a
source or dataset is not available, never inventing a value.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import yaml
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf, open_dict

from benchmark.cli import CONFIG_DIR, group_options
from benchmark.metrics import CONVENTION
from benchmark.tables import frame_to_markdown

REPO = CONFIG_DIR.parent


def load_table(name: str) -> dict[str, Any]:
    path = CONFIG_DIR / "table" / f"{name}.yaml"
    if not path.exists():
        valid = ", ".join(group_options("table"))
        raise SystemExit(f"ood-bench-tables: error: no table named {name!r}. Valid: {valid}")
    return yaml.safe_load(path.read_text())


def run_config(overrides: list[str], detector_options: list[str], extra: list[str]):
    """The run's config with every requested detector (each composed from its own option)."""
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        merged: dict[str, Any] = {}
        for option in detector_options:
            cfg = compose("config", overrides=[*overrides, f"detector={option}", *extra])
            merged.update(OmegaConf.to_container(cfg.detectors))
        cfg = compose("config", overrides=[*overrides, f"detector={detector_options[0]}", *extra])
    with open_dict(cfg):
        cfg.detectors = merged
    return cfg


def detector_id(option: str) -> str:
    body = yaml.safe_load((CONFIG_DIR / "detector" / f"{option}.yaml").read_text())
    return next(iter(body["detectors"]))


def build(name: str, extra: list[str], out_root: Path = REPO / "results" / "tables",
          spec: dict[str, Any] | None = None, runs_root: Path = REPO / "outputs" / "tables"
          ) -> Path:
    from benchmark.run import run

    spec = spec or load_table(name)
    rows = spec["detectors"]
    runs: dict[str, pd.DataFrame] = {}
    manifests: dict[str, dict] = {}
    for run_name, run_spec in spec["runs"].items():
        cfg = run_config(run_spec["overrides"], list(rows.values()), extra)
        out = runs_root / name / run_name
        print(f"[{name}] run {run_name}: {' '.join(run_spec['overrides'] + extra)}")
        runs[run_name] = run(cfg, out)
        manifests[run_name] = json.loads((out / "manifest.json").read_text())
        keep = out_root / f"{name}_runs" / run_name
        keep.mkdir(parents=True, exist_ok=True)
        for f in ("manifest.json", "metrics.csv", "metrics.md"):
            (keep / f).write_bytes((out / f).read_bytes())
    metric = spec.get("metric", "auroc")
    published = spec.get("published", {})
    records = []
    for label, option in rows.items():
        det = detector_id(option)
        for j, col in enumerate(spec["columns"]):
            frame = runs[col["run"]]
            hit = frame[(frame.detector == det) & (frame.ood_dataset == col["ood"])]
            skipped = manifests[col["run"]].get("skipped_ood_sets", {})
            pub = (published.get(label) or [None] * len(spec["columns"]))[j]
            if len(hit) and hit.status.iloc[0] == "ok":
                ours, status = float(hit[metric].iloc[0]), "ok"
            elif col["ood"] in skipped:
                ours, status = None, "missing: dataset not available here (needs a download)"
            elif len(hit):
                ours, status = None, f"failed: {hit.error.iloc[0]}"
            else:
                ours, status = None, "missing: not in the run"
            records.append({"row": label, "column": col["label"], "ours": ours,
                            "published": pub,
                            "difference": None if ours is None or pub is None else ours - pub,
                            "status": status})
    long = pd.DataFrame(records)
    out_root.mkdir(parents=True, exist_ok=True)
    long.to_csv(out_root / f"{name}.csv", index=False)
    (out_root / f"{name}.md").write_text(_markdown(spec, long, manifests, extra))
    (out_root / f"{name}.tex").write_text(_latex(spec, long))
    return out_root / f"{name}.md"


def _cell(r: pd.Series) -> str:
    if r.ours is None or pd.isna(r.ours):
        return "missing" if r.status.startswith("missing") else "failed"
    text = f"{r.ours:.4f}"
    if r.published is not None and not pd.isna(r.published):
        text += f" ({r.published:.4f}, {r.difference:+.4f})"
    return text


def _wide(long: pd.DataFrame, cols: list[str]) -> pd.DataFrame:
    wide = long.assign(cell=long.apply(_cell, axis=1)).pivot(index="row", columns="column",
                                                             values="cell")
    return wide.loc[list(dict.fromkeys(long.row)), cols]


def _markdown(spec: dict, long: pd.DataFrame, manifests: dict, extra: list[str]) -> str:
    cols = [c["label"] for c in spec["columns"]]
    lines = [f"# {spec.get('title', spec['name'])}", "",
             f"Command: `ood-bench-tables table={spec['name']}{' ' if extra else ''}"
             f"{' '.join(extra)}`", "", f"> {CONVENTION}", "",
             "Cells: ours (published, ours - published); 'missing' = the dataset or source is "
             "not available on this machine (see below), never filled in by hand.", "",
             frame_to_markdown(_wide(long, cols)), "", "## Runs", ""]
    for run_name, m in manifests.items():
        lines.append(f"- **{run_name}**: backbone {m['backbone']['name']}, ID test accuracy "
                     f"{m['backbone']['id_test_accuracy']:.4f}, checkpoint sha256 "
                     f"`{m['backbone']['sha256'][:16]}…`; manifest: "
                     f"[{spec['name']}_runs/{run_name}/manifest.json]"
                     f"({spec['name']}_runs/{run_name}/manifest.json)")
        for ood, reason in m.get("skipped_ood_sets", {}).items():
            lines.append(f"  - {ood} skipped: {reason}")
    notes = sorted(set(long.status) - {"ok"})
    if notes:
        lines += ["", "## Not ok", ""] + [f"- {n}" for n in notes]
    return "\n".join(lines) + "\n"


def _latex(spec: dict, long: pd.DataFrame) -> str:
    cols = [c["label"] for c in spec["columns"]]
    wide = _wide(long, cols)

    def esc(s: str) -> str:
        return (str(s).replace("\\", r"\textbackslash{}").replace("&", r"\&")
                .replace("%", r"\%").replace("_", r"\_").replace("#", r"\#"))

    lines = [r"\begin{tabular}{l" + "r" * len(cols) + "}", r"\toprule",
             " & ".join(["method"] + [esc(c) for c in cols]) + r" \\", r"\midrule"]
    for row, values in wide.iterrows():
        lines.append(" & ".join([esc(row)] + [esc(v) for v in values]) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    names = [a.split("=", 1)[1] for a in args if a.startswith("table=")]
    extra = [a for a in args if not a.startswith("table=")]
    if not names:
        raise SystemExit("usage: ood-bench-tables table=<name> [hydra overrides]; tables: "
                         + ", ".join(group_options("table")))
    for name in names:
        print(f"table: {build(name, extra)}")


if __name__ == "__main__":
    main()

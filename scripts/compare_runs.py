"""Compare two ood-bench runs cell by cell: are they bit-identical, and how far apart?

    python scripts/compare_runs.py RUN_A RUN_B [--out results/reproducibility/x.md]

Prints (and writes with --out) whether the checkpoints' sha256 agree, whether every non-timing
column of metrics.csv is identical, and per metric the largest and median absolute difference
over the (detector, OOD set) cells, with the cells that moved most.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd

from benchmark.render import frame_markdown

METRICS = ["auroc", "aupr_in", "aupr_out", "fpr95tpr", "id_accuracy"]
KEY = ["library", "detector", "ood_dataset"]


def timing_columns(frame: pd.DataFrame) -> list[str]:
    return [c for c in frame.columns if c.endswith(("seconds", "_mb")) or c == "from_cache"]


def compare(a: Path, b: Path) -> str:
    fa, fb = pd.read_csv(a / "metrics.csv"), pd.read_csv(b / "metrics.csv")
    ma = json.loads((a / "manifest.json").read_text())
    mb = json.loads((b / "manifest.json").read_text())
    sha_a, sha_b = ma["backbone"]["sha256"], mb["backbone"]["sha256"]
    same_cols = fa.drop(columns=timing_columns(fa)).equals(fb.drop(columns=timing_columns(fb)))
    lines = [f"# {a} vs {b}", "",
             f"- checkpoint sha256: {sha_a[:16]}… vs {sha_b[:16]}… "
             f"({'identical' if sha_a == sha_b else 'DIFFERENT'})",
             f"- compute: threads {ma['compute']['threads']} vs {mb['compute']['threads']}, "
             f"CPU kernels {ma['compute']['cpu_capability']} vs {mb['compute']['cpu_capability']}, "
             f"oneDNN {ma['compute']['onednn_enabled']} vs {mb['compute']['onednn_enabled']}",
             f"- metrics.csv without timing columns: "
             f"{'byte-identical values' if same_cols else 'DIFFERENT'} ({len(fa)} rows)", ""]
    if not same_cols:
        ok = (fa.status == "ok") & (fb.status == "ok")
        merged = fa[ok].merge(fb[ok], on=KEY, suffixes=("_a", "_b"))
        stats = []
        for m in METRICS:
            diff = (merged[f"{m}_a"] - merged[f"{m}_b"]).abs()
            worst = merged.loc[diff.idxmax()]
            stats.append({"metric": m, "max abs difference": diff.max(),
                          "median abs difference": diff.median(),
                          "cells differing": int((diff > 0).sum()),
                          "largest at": f"{worst.detector} / {worst.ood_dataset}"})
        lines += [frame_markdown(pd.DataFrame(stats), index=False), ""]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("a", type=Path)
    parser.add_argument("b", type=Path)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    text = compare(args.a, args.b)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)


if __name__ == "__main__":
    main()

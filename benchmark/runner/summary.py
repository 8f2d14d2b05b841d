"""The console summary printed at the end of a run: AUROC per detector x OOD set."""

from __future__ import annotations

from pathlib import Path

import pandas as pd


def auroc_matrix(frame: pd.DataFrame) -> pd.DataFrame:
    ok = frame[frame.status == "ok"]
    if ok.empty:
        return pd.DataFrame()
    table = ok.pivot_table(index="detector", columns="ood_dataset", values="auroc")
    table["mean"] = table.mean(axis=1)
    return table.sort_values("mean", ascending=False)


def print_summary(frame: pd.DataFrame, out_dir: Path) -> None:
    table = auroc_matrix(frame)
    if not table.empty:
        print("\nAUROC (higher = better; OOD positive, scores higher = more OOD)")
        print(table.round(4).to_string())
    failed = sorted(set(frame.loc[frame.status != "ok", "detector"]))
    if failed:
        print(f"\nfailed: {', '.join(failed)} (errors in metrics.csv)")
    print(f"\ntables: {out_dir / 'metrics.md'}\n        {out_dir / 'metrics.csv'}\n"
          f"manifest: {out_dir / 'manifest.json'}")

"""The console summary printed at the end of a run: AUROC per detector x OOD set."""

from __future__ import annotations

from pathlib import Path

import pandas as pd


def auroc_matrix(frame: pd.DataFrame) -> pd.DataFrame:
    """AUROC per detector x OOD set; ``mean`` only for detectors with a result on every set
    (a mean over fewer sets would rank them on easier ground): partial rows get NaN and say
    how many sets they have in ``sets``."""
    ok = frame[frame.status == "ok"]
    if ok.empty:
        return pd.DataFrame()
    every = list(dict.fromkeys(frame.ood_dataset))
    table = ok.pivot_table(index="detector", columns="ood_dataset", values="auroc")
    table = table.reindex(columns=every)
    have = table.notna().sum(axis=1)
    table["mean"] = table.mean(axis=1).where(have == len(every))
    table["sets"] = [f"{n}/{len(every)}" + ("" if n == len(every) else " partial")
                     for n in have]
    return table.sort_values("mean", ascending=False, na_position="last")


def print_summary(frame: pd.DataFrame, out_dir: Path) -> None:
    table = auroc_matrix(frame)
    if not table.empty:
        print("\nAUROC (higher = better; OOD positive, scores higher = more OOD)")
        print(table.round(4).to_string())
        if table["sets"].str.contains("partial").any():
            print("(mean: detectors with a result on every OOD set only; partial rows "
                  "failed on the others)")
    failed = sorted(set(frame.loc[frame.status != "ok", "detector"]))
    if failed:
        print(f"\nfailed: {', '.join(failed)} (errors in metrics.csv)")
    print(f"\ntables: {out_dir / 'metrics.md'}\n        {out_dir / 'metrics.csv'}\n"
          f"manifest: {out_dir / 'manifest.json'}")

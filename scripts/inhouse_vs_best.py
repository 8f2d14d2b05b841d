"""Per OOD set and seed: the best in-house detector against the best detector of the other
libraries, by DeLong's paired test on the saved scores (same samples), Holm over the table.

    python scripts/inhouse_vs_best.py multirun/mnist_inhouse \
        --out results/mnist_inhouse/inhouse_vs_best.md

"At or above" = the in-house AUROC is higher, or the difference is not significant (Holm-adjusted
p >= 0.05): a tie. Reads run folders only (metrics.csv, scores/*.npz).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from benchmark.render import CONVENTION, frame_markdown
from benchmark.results import ID_TEST, find_runs, load_scores, ood_key
from benchmark.stats.paired import compare, holm

INHOUSE = "inhouse"


def rows_of(run: Path) -> list[dict]:
    metrics = pd.read_csv(run / "metrics.csv")
    metrics = metrics[metrics.status == "ok"]
    seed = run.name.split("_")[0]
    out = []
    for ood, part in metrics.groupby("ood_dataset"):
        own = part[part.library == INHOUSE].sort_values("auroc", ascending=False)
        other = part[part.library != INHOUSE].sort_values("auroc", ascending=False)
        if own.empty or other.empty:
            continue
        a, b = own.iloc[0], other.iloc[0]
        sa, sb = load_scores(run, a.detector), load_scores(run, b.detector)
        key = ood_key(str(ood))
        test = compare({"id": sa[ID_TEST], "x": sa[key]}, {"id": sb[ID_TEST], "x": sb[key]},
                       ["x"])
        out.append({"seed": seed, "ood_dataset": ood, "best in-house": a.detector,
                    "in-house AUROC": a.auroc, "best other": b.detector,
                    "other AUROC": b.auroc, "difference": test.difference, "p": test.p})
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("sweep", type=Path)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    rows = [r for run in find_runs(args.sweep) for r in rows_of(run)]
    frame = pd.DataFrame(rows)
    frame["p (Holm)"] = holm(frame.p.to_numpy())
    frame["verdict"] = np.where(frame.difference >= 0, "at or above",
                                np.where(frame["p (Holm)"] >= 0.05, "tie (not significant)",
                                         "below"))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(args.out.with_suffix(".csv"), index=False)
    text = ["# Best in-house detector vs the best other detector, per OOD set and seed", "",
            f"Command: `python scripts/inhouse_vs_best.py {args.sweep} --out {args.out}`", "",
            CONVENTION, "",
            "Paired DeLong test on the same samples, Holm-corrected over every row; 'tie' = "
            "the in-house AUROC is lower but not significantly (adjusted p >= 0.05).", "",
            frame_markdown(frame.set_index(["seed", "ood_dataset"])), ""]
    args.out.write_text("\n".join(text))
    print("\n".join(text))


if __name__ == "__main__":
    main()

"""Batch mode for screening uploads: Benjamini-Hochberg over a batch of conformal p-values.

"Of what is flagged, at most a share q is ID": conformal p-values calibrated on one shared set
are positively dependent (PRDS), so BH controls this false discovery rate (Bates et al. 2023).
Measured on seeded mixtures of ID test and OOD inputs with 1 %, 10 % and 50 % OOD: realised
FDR (ID share of the flagged) and power (OOD share flagged), mean over draws, per q.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from benchmark.inhouse import benjamini_hochberg
from benchmark.representations import Representations
from benchmark.results import ID_TEST

from .common import ood_sets

SHARES = (0.01, 0.1, 0.5)
LEVELS = (0.01, 0.05, 0.1, 0.2)
BATCH = 2000
DRAWS = 20


def screening(adapter: Any, reps: dict[str, Representations], seed: int) -> pd.DataFrame:
    id_p = adapter.pvalues(reps[ID_TEST])
    rng = np.random.default_rng(seed + 11)
    rows = []
    for name, rep in ood_sets(reps).items():
        ood_p = adapter.pvalues(rep)
        for share in SHARES:
            n_ood = max(1, min(len(ood_p), round(share * BATCH)))
            n_id = min(len(id_p), BATCH - n_ood)
            stats = {q: [] for q in LEVELS}
            for _ in range(DRAWS):
                p = np.r_[rng.choice(id_p, n_id, replace=False),
                          rng.choice(ood_p, n_ood, replace=False)]
                is_ood = np.r_[np.zeros(n_id, bool), np.ones(n_ood, bool)]
                for q in LEVELS:
                    flagged = benjamini_hochberg(p, q)
                    false = int((flagged & ~is_ood).sum())
                    stats[q].append((false / max(1, int(flagged.sum())),
                                     float((flagged & is_ood).sum() / n_ood)))
            for q, vals in stats.items():
                fdr, power = np.array(vals).T
                rows.append({"ood_dataset": name, "ood_share": share, "q": q,
                             "batch": n_id + n_ood, "draws": DRAWS, "fdr": float(fdr.mean()),
                             "fdr_sd": float(fdr.std(ddof=1)), "power": float(power.mean())})
    return pd.DataFrame(rows)


def plot(frame: pd.DataFrame, title: str, path) -> None:
    sets = list(dict.fromkeys(frame.ood_dataset))
    fig = Figure(figsize=(3.2 * len(sets), 5.6))
    FigureCanvasAgg(fig)
    axes = fig.subplots(2, len(sets), squeeze=False)
    for j, name in enumerate(sets):
        part = frame[frame.ood_dataset == name]
        for share, grp in part.groupby("ood_share"):
            axes[0][j].plot(grp.q, grp.fdr, "o-", ms=3, label=f"{share:.0%} OOD")
            axes[1][j].plot(grp.q, grp.power, "o-", ms=3, label=f"{share:.0%} OOD")
        axes[0][j].plot(LEVELS, LEVELS, "k:", lw=1, label="FDR = q")
        axes[0][j].set(title=name, ylabel="realised FDR (ID share of flagged)")
        axes[1][j].set(xlabel="q", ylabel="power (OOD share flagged)", ylim=(0, 1.02))
        axes[0][j].legend(fontsize=6)
    fig.suptitle(f"{title}: Benjamini-Hochberg screening of batches of {BATCH}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)

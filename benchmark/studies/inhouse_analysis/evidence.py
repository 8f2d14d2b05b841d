"""Where the evidence comes from: each test's (or group's) AUROC alone per OOD set, its mean
share of the statistic on ID and OOD inputs, and the OOD share flagged at each alpha."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from adapters.inhouse import extra_arrays
from benchmark.pipeline.metrics import compute_metrics
from benchmark.representations import Representations
from benchmark.results import ID_TEST

from .common import DECISION_ALPHAS, inner, ood_sets


def layer_analysis(adapter: Any, reps: dict[str, Representations]) -> tuple[pd.DataFrame,
                                                                           pd.DataFrame]:
    d = inner(adapter)
    id_test = reps[ID_TEST]

    def logp(r: Representations) -> np.ndarray:
        return d.test_log_pvalues(r.layer_stats, r.predictions, extra_arrays(r))

    id_logp = logp(id_test)
    auroc_rows, share_rows = [], []
    id_expl = adapter.explain(id_test)
    share_rows.append({"set": "ID (test)", **{t: float(id_expl.shares[:, j].mean())
                                              for j, t in enumerate(id_expl.tests)}})
    for name, r in ood_sets(reps).items():
        ood_logp = logp(r)
        row = {"ood_dataset": name}
        for j, test in enumerate(d.test_names):
            row[test] = compute_metrics(-id_logp[:, j], -ood_logp[:, j])["auroc"]
        auroc_rows.append(row)
        expl = adapter.explain(r)
        share_rows.append({"set": name, **{t: float(expl.shares[:, j].mean())
                                           for j, t in enumerate(expl.tests)}})
    return pd.DataFrame(auroc_rows), pd.DataFrame(share_rows)


def tpr_at_alpha(adapter: Any, reps: dict[str, Representations]) -> pd.DataFrame:
    rows = []
    id_p = adapter.pvalues(reps[ID_TEST])
    for name, r in ood_sets(reps).items():
        p = adapter.pvalues(r)
        for a in DECISION_ALPHAS:
            rows.append({"ood_dataset": name, "alpha": a, "tpr": float((p <= a).mean()),
                         "id_fpr": float((id_p <= a).mean())})
    return pd.DataFrame(rows)


def plot_layers(auroc: pd.DataFrame, shares: pd.DataFrame, title: str, path) -> None:
    tests = [c for c in auroc.columns if c != "ood_dataset"]
    fig = Figure(figsize=(11, 4))
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 2)
    x = np.arange(len(tests))
    width = 0.8 / max(1, len(auroc))
    for i, (_, row) in enumerate(auroc.iterrows()):
        axes[0].bar(x + i * width, [row[t] for t in tests], width, label=row.ood_dataset)
    axes[0].set(xticks=x + width * (len(auroc) - 1) / 2, ylabel="AUROC of -log p (test alone)",
                ylim=(0.5, 1.0), title="per-test AUROC")
    axes[0].set_xticklabels(tests, rotation=60, ha="right", fontsize=7)
    axes[0].legend(fontsize=7, loc="lower right")
    width = 0.8 / max(1, len(shares))
    for i, (_, row) in enumerate(shares.iterrows()):
        axes[1].bar(x + i * width, [row[t] for t in tests], width, label=row["set"])
    axes[1].set(xticks=x + width * (len(shares) - 1) / 2, ylabel="mean share of the statistic",
                title="where the evidence comes from")
    axes[1].set_xticklabels(tests, rotation=60, ha="right", fontsize=7)
    axes[1].legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)

"""Where the detector fails, and whether it flags what the classifier gets wrong.

- galleries: the ID test inputs most confidently flagged and, per OOD set, the OOD inputs most
  confidently passed, each tile with its predicted class and the test (or group) that carried
  most of the evidence;
- shift vs failure: misclassification AUROC (score predicting a wrong prediction) and the area
  under the risk-coverage curve on the ID test set and every covariate-shift set, beside MSP's.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from sklearn.metrics import roc_auc_score

from benchmark.representations import Representations
from benchmark.results import ID_TEST
from benchmark.studies.pictures import rows_of, show

from .common import ood_sets, shifted_sets

PER_ROW = 8


def _carrier(adapter: Any, rep: Representations, rows: np.ndarray) -> list[str]:
    """The test with the largest share of each row's evidence ("" without explanations)."""
    if not hasattr(adapter, "explain"):
        return [""] * len(rows)
    expl = adapter.explain(rep.subset(np.asarray(rows)))
    return [expl.tests[int(j)] for j in expl.shares.argmax(axis=1)]


def _tiles(adapter: Any, rep: Representations, rows: np.ndarray, scores: np.ndarray
           ) -> list[tuple[np.ndarray, str]]:
    images = rows_of(rep, rows) or []
    carriers = _carrier(adapter, rep, rows)
    preds = rep.predictions[rows]
    return [(img, f"pred {int(c)}, s {scores[r]:.1f}\n{t.split('/')[0][:14]}")
            for img, c, r, t in zip(images, preds, rows, carriers, strict=False)]


def galleries(adapter: Any, reps: dict[str, Representations], folder: Path) -> list[str]:
    """One PNG per OOD set (top row: ID flagged most confidently; bottom: that set's inputs
    passed most confidently); returns the file names written (none without inputs)."""
    id_test = reps[ID_TEST]
    if id_test.inputs is None:
        return []
    id_scores = adapter.score(id_test, None)
    id_rows = np.argsort(-id_scores, kind="stable")[:PER_ROW]
    id_tiles = _tiles(adapter, id_test, id_rows, id_scores)
    written = []
    for name, rep in ood_sets(reps).items():
        if rep.inputs is None:
            continue
        scores = adapter.score(rep, None)
        rows = np.argsort(scores, kind="stable")[:PER_ROW]
        fig = Figure(figsize=(1.6 * PER_ROW, 4.2))
        FigureCanvasAgg(fig)
        axes = fig.subplots(2, PER_ROW, squeeze=False)
        for r, (label, tiles) in enumerate((("ID flagged", id_tiles),
                                            (f"{name} passed", _tiles(adapter, rep, rows,
                                                                      scores)))):
            for j, ax in enumerate(axes[r]):
                ax.axis("off")
                if j < len(tiles):
                    img, title = tiles[j]
                    ax.imshow(show(img), cmap="gray" if img.shape[0] == 1 else None)
                    ax.set_title(title, fontsize=6)
            axes[r][0].text(-0.15, 0.5, label, transform=axes[r][0].transAxes, rotation=90,
                            va="center", ha="right", fontsize=8)
        fig.suptitle(f"most confident failures: ID flagged (top), {name} passed (bottom); "
                     "score s = -log p", fontsize=8)
        fig.tight_layout()
        path = folder / f"failures_{name}.png"
        fig.savefig(path, dpi=110)
        written.append(path.name)
    return written


def _msp_uncertainty(rep: Representations) -> np.ndarray:
    z = rep.logits - rep.logits.max(axis=1, keepdims=True)
    prob = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    return -prob.max(axis=1)


def aurc(uncertainty: np.ndarray, wrong: np.ndarray) -> float:
    """Area under the risk-coverage curve: accept the most confident first; mean over coverage
    levels of the error rate among the accepted (lower = better)."""
    order = np.argsort(uncertainty, kind="stable")
    errors = np.cumsum(wrong[order])
    return float(np.mean(errors / np.arange(1, len(wrong) + 1)))


def misclassification(adapter: Any, reps: dict[str, Representations]) -> pd.DataFrame:
    """Per shifted set: accuracy, share flagged at alpha 0.05, misclassification AUROC and AURC
    of the detector's score and of MSP."""
    rows = []
    for name, rep in shifted_sets(reps).items():
        wrong = (rep.predictions != rep.labels).astype(float)
        scores = adapter.score(rep, None)
        flagged = float((adapter.pvalues(rep) <= 0.05).mean()) if hasattr(adapter,
                                                                           "pvalues") else None
        row = {"set": name, "n": len(rep), "accuracy": 1 - float(wrong.mean()),
               "flagged_at_0.05": flagged}
        for method, u in (("detector", scores), ("MSP", _msp_uncertainty(rep))):
            both = 0 < wrong.sum() < len(wrong)
            row[f"{method}_misclassification_auroc"] = (float(roc_auc_score(wrong, u))
                                                        if both else None)
            row[f"{method}_aurc"] = aurc(u, wrong)
        rows.append(row)
    return pd.DataFrame(rows)

"""Which differences in a sweep are significant: paired DeLong tests on the saved scores.

Two detectors are compared on the samples both scored (same backbone checkpoint, same split
seed: the same ID test and OOD rows), on the mean AUROC over a group of OOD sets. With
replicates (several seeds / checkpoints), each replicate is tested on its own and the tests are
combined: the mean difference, with a variance that is the larger of the DeLong variance of
that mean and the replicates' own spread of the difference (so seed-to-seed variation counts).
A family of comparisons (one table's) is Holm-corrected; "better" needs adjusted p < ALPHA.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.stats import norm

from benchmark.report.sweep import column_sets, ood_order
from benchmark.results import ID_TEST, OOD_PREFIX, Collection
from benchmark.stats import paired

ALPHA = 0.05


@dataclass(frozen=True)
class Test:
    """Label ``a`` minus label ``b`` on mean AUROC over ``sets``: difference, p (raw)."""

    a: str
    b: str
    sets: tuple[str, ...]
    difference: float
    p: float
    replicates: int


def group_sets(rows: pd.DataFrame, column: str) -> list[str]:
    """The OOD sets behind a table column, as the sweep tables average them."""
    return column_sets(ood_order(rows), column)


def _replicate_key(rows: pd.DataFrame) -> tuple:
    first = rows.iloc[0]
    return (first.get("id_dataset"), first.get("backbone"), first.get("checkpoint_sha256"),
            first.get("split_seed"), first.get("n_id"))


def replicate_scores(coll: Collection, label: str) -> dict[tuple, dict[str, np.ndarray]]:
    """``{replicate key: {"id": ..., <ood set>: ...}}`` of one label, one entry per run."""
    rows = coll.rows[coll.rows["label"] == label]
    out = {}
    for rel, grp in rows.groupby("run", sort=False):
        scores = coll.run(rel).scores(str(grp["detector"].iloc[0]))
        if ID_TEST not in scores:
            continue
        out[_replicate_key(grp)] = {("id" if k == ID_TEST else k.removeprefix(OOD_PREFIX)): v
                                    for k, v in scores.items()}
    return out


class Tester:
    """Paired tests between labels of one collection (scores loaded once per label)."""

    def __init__(self, coll: Collection) -> None:
        self.coll = coll
        self._scores: dict[str, dict[tuple, dict[str, np.ndarray]]] = {}

    def scores(self, label: str) -> dict[tuple, dict[str, np.ndarray]]:
        if label not in self._scores:
            self._scores[label] = replicate_scores(self.coll, label)
        return self._scores[label]

    def test(self, a: str, b: str, sets: list[str]) -> Test | None:
        """``a`` vs ``b`` over ``sets`` on their shared replicates (None: nothing shared)."""
        sa, sb = self.scores(a), self.scores(b)
        diffs, variances = [], []
        for key in sa.keys() & sb.keys():
            if not all(s in sa[key] and s in sb[key] for s in sets):
                continue
            try:
                c = paired.compare(sa[key], sb[key], sets)
            except ValueError:
                continue
            diffs.append(c.difference)
            variances.append(c.se ** 2)
        if not diffs:
            return None
        r = len(diffs)
        diff = float(np.mean(diffs))
        var = float(np.sum(variances)) / r ** 2
        if r > 1:
            var = max(var, float(np.var(diffs, ddof=1)) / r)
        if var == 0:
            p = 1.0 if diff == 0 else 0.0
        else:
            p = float(2 * norm.sf(abs(diff) / np.sqrt(var)))
        return Test(a, b, tuple(sets), diff, p, r)


def adjusted(tests: list[Test]) -> dict[tuple[str, str, tuple[str, ...]], float]:
    """Holm-adjusted p of each test of one family, by (a, b, sets)."""
    adj = paired.holm([t.p for t in tests])
    return {(t.a, t.b, t.sets): float(p) for t, p in zip(tests, adj, strict=True)}


def best_detectors(tester: Tester, table: pd.DataFrame, rows: pd.DataFrame,
                   column: str = "all") -> pd.DataFrame:
    """Every detector not significantly below the top one on ``column`` (mean AUROC).

    Returns one row per detector compared with the top: difference to the top, Holm-adjusted
    p over these comparisons, and ``tied_with_top`` (adjusted p >= ALPHA). The top detector is
    the first row with ``difference`` 0."""
    ranked = table[column].dropna().sort_values(ascending=False, kind="mergesort")
    if ranked.empty:
        return pd.DataFrame()
    top = str(ranked.index[0])
    sets = group_sets(rows, column)
    tests = [t for label in ranked.index[1:]
             if (t := tester.test(top, str(label), sets)) is not None]
    adj = adjusted(tests)
    out = [{"label": top, "library": table.loc[top, "library"], "value": ranked.iloc[0],
            "difference": 0.0, "p_holm": float("nan"), "tied_with_top": True}]
    for t in tests:
        p = adj[(t.a, t.b, t.sets)]
        out.append({"label": t.b, "library": table.loc[t.b, "library"],
                    "value": ranked[t.b], "difference": -t.difference, "p_holm": p,
                    "tied_with_top": p >= ALPHA})
    return pd.DataFrame(out)

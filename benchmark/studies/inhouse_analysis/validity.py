"""Is the false-alarm guarantee kept, and how much does one calibration draw move it?

- run split: the realised ID test FPR at each alpha, tested one-sided against the
  beta-binomial law valid conformal calibration gives (per calibration group), beside its
  Clopper-Pearson band (test-sample noise only);
- fresh calibration draws: half-size subsamples of the calibration split, each tested the same way;
- resplits of calibration + ID test pooled: a *code check* (exchangeable by construction, so it
  cannot see a shift between calibration and test);
- exchangeability: a two-sample test of the calibration statistics against the ID test ones,
  which is the question validity rests on;
- per predicted class: the FPR with pooled and with class-conditional calibration;
- calibration size: FPR spread over resplits for several calibration sizes against the law.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats as sps
from tqdm.auto import tqdm

from adapters.inhouse import extra_arrays
from benchmark.inhouse import MaSF
from benchmark.inhouse.conformal import ConformalCalibrator
from benchmark.inhouse.diagnostics import (
    DEFAULT_ALPHAS,
    clopper_pearson,
    exchangeability_test,
    run_split_check,
)
from benchmark.representations import Representations
from benchmark.results import ID_TEST

from .common import DECISION_ALPHAS, calibration, has_statistic, inner, statistic

ALPHAS = DEFAULT_ALPHAS
CALIBRATION_SIZES = (100, 250, 500, 1000, 2500, 5000)
SIZE_TEST_ROWS = 2000
FRESH_DRAWS = 20


def _calibrator_like(adapter: Any) -> ConformalCalibrator:
    d = inner(adapter)
    return ConformalCalibrator(d.calibrate_per_class, d.min_class_calibration)


def check_counts(calib: ConformalCalibrator | None, pvalues: np.ndarray,
                 classes: np.ndarray, alpha: float) -> dict[str, Any]:
    """The run-split verdict at ``alpha``: beta-binomial per calibration group; without a
    conformal calibrator (MaSF) a one-sided binomial test against the claimed rate alpha."""
    flagged = pvalues <= alpha
    if calib is None:
        k, n = int(flagged.sum()), len(flagged)
        p_anti = float(sps.binom.sf(k - 1, n, alpha))
        p_cons = float(sps.binom.cdf(k, n, alpha))
        verdict = ("anti-conservative" if p_anti < 0.05 else
                   "conservative" if p_cons < 0.05 else "valid")
        return {"alpha": alpha, "count": k, "n": n, "fpr": k / n, "expected_fpr": alpha,
                "p_anti": p_anti, "p_conservative": p_cons, "verdict": verdict,
                "reference": "binomial(n, alpha): no conformal calibration"}
    groups = calib.group_of(classes)
    sizes = calib.group_sizes()
    keys = sorted(set(groups.tolist()))
    out = run_split_check([int(flagged[groups == g].sum()) for g in keys],
                          [int((groups == g).sum()) for g in keys],
                          [sizes[g] for g in keys], alpha)
    out["reference"] = "beta-binomial (one calibration draw), per calibration group"
    return out


def _rows(pvalues: np.ndarray, method: str, split: str, calib: ConformalCalibrator | None,
          classes: np.ndarray, alphas=ALPHAS, check: bool = True) -> list[dict[str, Any]]:
    rows = []
    for a in alphas:
        k = int((pvalues <= a).sum())
        lo, hi = clopper_pearson(k, len(pvalues))
        row = {"method": method, "split": split, "alpha": float(a), "fpr": k / len(pvalues),
               "n": len(pvalues), "cp_low": float(lo), "cp_high": float(hi)}
        if check:
            c = check_counts(calib, pvalues, classes, a)
            row.update({"verdict": c["verdict"], "p_anti": c["p_anti"],
                        "p_conservative": c["p_conservative"],
                        "expected_fpr": c["expected_fpr"]})
        rows.append(row)
    return rows


def calibration_analysis(adapter: Any, reps: dict[str, Representations], n_resplits: int,
                         seed: int) -> tuple[pd.DataFrame, dict[str, Any] | None]:
    """Rows per (method, split, alpha) and the exchangeability test (None without T)."""
    d = inner(adapter)
    id_test = reps[ID_TEST]
    calib = getattr(d, "calibrator_", None)
    calib = calib if isinstance(calib, ConformalCalibrator) else None
    p_run = adapter.pvalues(id_test)
    method = "chi-square (as published)" if isinstance(d, MaSF) else "conformal (run split)"
    rows = _rows(p_run, method, ID_TEST, calib, id_test.predictions)
    if hasattr(d, "naive_pvalues"):
        naive = d.naive_pvalues(id_test.layer_stats, id_test.predictions, extra_arrays(id_test))
        rows += _rows(naive, f"naive {d.across} tail (invalid)", ID_TEST, None,
                      id_test.predictions, check=False)
    rng = np.random.default_rng(seed)
    exchange = None
    if has_statistic(adapter):
        cal_t, cal_cls = calibration(adapter)
        test_t = statistic(adapter, id_test)
        exchange = exchangeability_test(cal_t, test_t)
        for r in range(FRESH_DRAWS):  # half-size calibration draws, each checked on its own
            sub = np.sort(rng.choice(len(cal_t), size=len(cal_t) // 2, replace=False))
            fresh = _calibrator_like(adapter).fit(cal_t[sub], cal_cls[sub])
            rows += _rows(fresh.pvalues(test_t, id_test.predictions),
                          "conformal (fresh calibration draw)", f"draw {r}", fresh,
                          id_test.predictions, DECISION_ALPHAS)
        pooled_t = np.r_[cal_t, test_t]
        pooled_cls = np.r_[cal_cls, id_test.predictions]
        for r in tqdm(range(n_resplits), desc="calibration resplits", leave=False):
            perm = rng.permutation(len(pooled_t))
            c, t = np.sort(perm[:len(cal_t)]), np.sort(perm[len(cal_t):])
            cal = _calibrator_like(adapter).fit(pooled_t[c], pooled_cls[c])
            rows += _rows(cal.pvalues(pooled_t[t], pooled_cls[t]), "conformal (resplit)",
                          f"resplit {r}", cal, pooled_cls[t], check=False)
    elif "calibration" in reps and hasattr(d, "calibrate"):  # NeuralFP: its own bands
        pooled = reps["calibration"].concat(id_test, name="calibration+test")
        n_cal = len(reps["calibration"])
        for r in tqdm(range(n_resplits), desc="calibration resplits", leave=False):
            perm = rng.permutation(len(pooled))
            c, t = np.sort(perm[:n_cal]), np.sort(perm[n_cal:])
            det = copy.deepcopy(d)
            det.calibrate(pooled.subset(c).layer_stats)
            rows += _rows(det.pvalues(pooled.subset(t).layer_stats), "conformal (resplit)",
                          f"resplit {r}", None, np.zeros(len(t), int), check=False)
    return pd.DataFrame(rows), exchange


def per_class_analysis(adapter: Any, reps: dict[str, Representations]) -> pd.DataFrame:
    """FPR per predicted class at each decision alpha: pooled vs class-conditional calibration
    (classes below ``min_class_calibration`` calibrated together)."""
    cal_t, cal_cls = calibration(adapter)
    id_test = reps[ID_TEST]
    test_t, test_cls = statistic(adapter, id_test), id_test.predictions
    d = inner(adapter)
    versions = {"pooled": ConformalCalibrator(False).fit(cal_t),
                "per class": ConformalCalibrator(True, d.min_class_calibration).fit(cal_t,
                                                                                    cal_cls)}
    rows = []
    for name, calib in versions.items():
        p = calib.pvalues(test_t, test_cls)
        for cls in np.unique(test_cls):
            mine = test_cls == cls
            for a in DECISION_ALPHAS:
                k = int((p[mine] <= a).sum())
                lo, hi = clopper_pearson(k, int(mine.sum()))
                rows.append({"calibration": name, "predicted_class": int(cls),
                             "n_test": int(mine.sum()), "n_calibration": int((cal_cls == cls)
                                                                             .sum()),
                             "alpha": a, "fpr": k / int(mine.sum()), "cp_low": float(lo),
                             "cp_high": float(hi)})
    return pd.DataFrame(rows)


def size_analysis(adapter: Any, reps: dict[str, Representations], seed: int,
                  draws: int = 50) -> pd.DataFrame:
    """FPR over resplits of calibration + ID test statistics for each calibration size, with
    the beta-binomial law's mean and 5-95 % range for that size (pooled calibration)."""
    cal_t, _ = calibration(adapter)
    pooled = np.r_[cal_t, statistic(adapter, reps[ID_TEST])]
    n_test = min(SIZE_TEST_ROWS, len(pooled) // 2)
    rng = np.random.default_rng(seed + 7)
    rows = []
    for n_cal in [s for s in CALIBRATION_SIZES if s + n_test <= len(pooled)]:
        for r in range(draws):
            perm = rng.permutation(len(pooled))
            ref = np.sort(pooled[perm[:n_cal]])
            test = pooled[perm[n_cal:n_cal + n_test]]
            p = (1 + n_cal - np.searchsorted(ref, test, side="left")) / (n_cal + 1)
            for a in DECISION_ALPHAS:
                ell = int(np.floor((n_cal + 1) * a + 1e-9))
                law = sps.betabinom(n_test, max(ell, 1), n_cal + 1 - max(ell, 1))
                rows.append({"n_calibration": n_cal, "draw": r, "alpha": a,
                             "fpr": float((p <= a).mean()), "n_test": n_test,
                             "law_mean": law.mean() / n_test if ell else 0.0,
                             "law_q05": law.ppf(0.05) / n_test if ell else 0.0,
                             "law_q95": law.ppf(0.95) / n_test if ell else 0.0})
    return pd.DataFrame(rows)

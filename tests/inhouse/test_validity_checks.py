"""The four validity defects of the in-house method, each by simulation against what it must be:
small classes calibrated on their own points, the run-split check against the beta-binomial law,
the exchangeability test (which a resplit cannot be), and the law itself."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as sps

from benchmark.inhouse import calibration_law, exchangeability_test, run_split_check
from benchmark.inhouse.conformal import SMALL_CLASSES, ConformalCalibrator
from benchmark.inhouse.diagnostics import clopper_pearson


def _two_classes(rng: np.random.Generator, n_big: int, n_small: int):
    """A big class (statistics N(0, 1)) and a rare class whose statistics run hot (N(2, 1))."""
    classes = np.r_[np.zeros(n_big, int), np.ones(n_small, int)]
    scores = rng.normal(size=len(classes)) + 2.0 * classes
    return scores, classes


def test_a_small_class_keeps_its_false_alarm_rate() -> None:
    """The rare class (60 < min_class_samples calibration points) was scored against the pooled
    set, which the big class dominates: it was flagged ~70 % of the time at alpha = 0.1."""
    rng = np.random.default_rng(0)
    alpha, small_fpr, overall = 0.1, [], []
    for _ in range(300):
        cal, cal_cls = _two_classes(rng, 2000, 60)
        test, test_cls = _two_classes(rng, 2000, 60)
        calib = ConformalCalibrator(per_class=True, min_class_samples=200).fit(cal, cal_cls)
        flagged = calib.pvalues(test, test_cls) <= alpha
        small_fpr.append(flagged[test_cls == 1].mean())
        overall.append(flagged.mean())
    # E[FPR] of a group of n = 60 is floor(61 alpha) / 61 = 0.098; 300 draws of 60: sd ~0.005
    assert np.mean(small_fpr) == pytest.approx(6 / 61, abs=0.015)
    assert np.mean(overall) <= alpha + 0.005


def test_small_classes_share_one_calibration_group() -> None:
    rng = np.random.default_rng(1)
    scores = rng.normal(size=700)
    classes = np.r_[np.zeros(500, int), np.ones(120, int), np.full(80, 2)]
    calib = ConformalCalibrator(per_class=True, min_class_samples=200).fit(scores, classes)
    assert calib.small_classes_ == [1, 2] and calib.group_sizes() == {0: 500, SMALL_CLASSES: 200}
    assert calib.smallest_n == 200
    # class 9 was never seen at calibration: it goes with the small classes
    groups = calib.group_of(np.array([0, 1, 2, 9]))
    assert groups.tolist() == [0, SMALL_CLASSES, SMALL_CLASSES, SMALL_CLASSES]
    small = np.sort(scores[classes > 0])
    x = np.array([0.3])
    assert calib.pvalues(x, np.array([9]))[0] == (1 + (small >= 0.3).sum()) / 201


def test_the_calibration_law_is_the_realised_fpr_distribution() -> None:
    """Over fresh calibration draws the ID false-alarm count follows BetaBinom(n_test, l,
    n_cal + 1 - l), l = floor((n_cal + 1) alpha): its mean and its spread."""
    rng = np.random.default_rng(2)
    n_cal, n_test, alpha = 500, 400, 0.05
    counts = []
    for _ in range(2000):
        cal = np.sort(rng.normal(size=n_cal))
        test = rng.normal(size=n_test)
        p = (1 + n_cal - np.searchsorted(cal, test, side="left")) / (n_cal + 1)
        counts.append(int((p <= alpha).sum()))
    pmf = calibration_law(n_test, n_cal, alpha)
    ell = int((n_cal + 1) * alpha)
    law = sps.betabinom(n_test, ell, n_cal + 1 - ell)
    np.testing.assert_allclose(pmf, law.pmf(np.arange(n_test + 1)))
    assert np.mean(counts) == pytest.approx(law.mean(), rel=0.03)
    assert np.std(counts) == pytest.approx(law.std(), rel=0.08)
    assert calibration_law(10, 5, 0.1)[0] == 1.0  # alpha < 1 / (n + 1): nothing can be flagged


def _valid_run(rng, n_cal: int, n_test: int, shift: float = 0.0):
    cal = np.sort(rng.normal(size=n_cal))
    test = rng.normal(size=n_test) + shift
    return (1 + n_cal - np.searchsorted(cal, test, side="left")) / (n_cal + 1)


def test_the_run_split_check_passes_valid_runs_and_catches_the_others() -> None:
    """An exactly valid detector was marked "NO" 25-55 % of the time by the two-sided
    Clopper-Pearson band; the one-sided beta-binomial test flags it at about its level."""
    rng = np.random.default_rng(3)
    n_cal, n_test, alpha = 1000, 2000, 0.05
    verdicts, band_no = [], []
    for _ in range(400):
        p = _valid_run(rng, n_cal, n_test)
        k = int((p <= alpha).sum())
        verdicts.append(run_split_check([k], [n_test], [n_cal], alpha)["verdict"])
        lo, hi = clopper_pearson(k, n_test)
        band_no.append(not lo <= alpha <= hi)
    assert np.mean(band_no) > 0.2  # what the old "alpha in band" column did
    assert np.mean([v == "anti-conservative" for v in verdicts]) < 0.09
    assert np.mean([v == "valid" for v in verdicts]) > 0.85
    hot = _valid_run(rng, n_cal, n_test, shift=0.3)
    cold = _valid_run(rng, n_cal, n_test, shift=-0.5)
    for p, want in ((hot, "anti-conservative"), (cold, "conservative")):
        out = run_split_check([int((p <= alpha).sum())], [n_test], [n_cal], alpha)
        assert out["verdict"] == want, out


def test_groups_add_up_as_independent_laws() -> None:
    """Per-class calibration: the count is a sum over groups; two identical groups give the
    law of their convolution (mean twice the mean)."""
    one = run_split_check([10], [500], [400], 0.05)
    two = run_split_check([10, 10], [500, 500], [400, 400], 0.05)
    assert two["n"] == 1000 and two["expected_fpr"] == pytest.approx(one["expected_fpr"])
    assert two["p_anti"] < one["p_anti"] or two["p_conservative"] != one["p_conservative"]


def test_the_exchangeability_test_sees_a_shift_that_a_resplit_cannot() -> None:
    """ID test shifted by 0.3 sd: the run split's FPR rises to ~0.09 while pooling calibration
    and test and resplitting them at random still gives ~0.05 (exchangeable by construction,
    so that check is a code check). The two-sample test on the statistic catches the shift."""
    rng = np.random.default_rng(4)
    cal, test = rng.normal(size=5000), rng.normal(size=10000) + 0.3
    ref = np.sort(cal)
    p_run = (1 + len(ref) - np.searchsorted(ref, test, side="left")) / (len(ref) + 1)
    assert (p_run <= 0.05).mean() > 0.08
    pooled, resplit = np.r_[cal, test], []
    for _ in range(20):
        perm = rng.permutation(len(pooled))
        c, t = np.sort(pooled[perm[:5000]]), pooled[perm[5000:]]
        resplit.append(((1 + 5000 - np.searchsorted(c, t, side="left")) / 5001 <= 0.05).mean())
    assert np.mean(resplit) == pytest.approx(0.05, abs=0.005)
    shifted = exchangeability_test(cal, test)
    assert shifted["mwu_greater_p"] < 1e-6 and shifted["ks_p"] < 1e-6
    assert shifted["p_test_above_cal"] == pytest.approx(sps.norm.cdf(0.3 / np.sqrt(2)), abs=0.02)
    same = exchangeability_test(cal, rng.normal(size=10000))
    assert same["mwu_greater_p"] > 0.001 and abs(same["p_test_above_cal"] - 0.5) < 0.02

"""The in-house package's statistical core against independent computations: exact intervals,
Benjamini-Hochberg, per-class calibration, the pooled fallback, rank counts across blocks,
chi-square tails, naive p-values, tie-breaking, the k-NN bank, NeuralFP's training and bands,
and the extra evidence reaching every entry point. (Written from mutation testing: each test
kills mutants the earlier suite let live.)"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from scipy import special
from scipy import stats as sps

from benchmark.inhouse import (
    KNNEvidence,
    NeuralFP,
    StatisticalDetector,
    benjamini_hochberg,
    clopper_pearson,
    fpr_curve,
)
from benchmark.inhouse import ranks as ranks_mod
from benchmark.inhouse.combiners import across_naive_pvalue, chi2_logsf_even
from benchmark.inhouse.conformal import ConformalCalibrator, tie_break
from benchmark.inhouse.knn import kth_neighbour_distance
from benchmark.inhouse.ranks import SortedReference, two_sided_pvalues
from tests.inhouse.test_inhouse import brute_pvalues, synthetic_stats


def _upper_tail(reference: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """The conformal formula literally: (1 + #{ref >= s}) / (n + 1)."""
    return (1 + (reference[None, :] >= scores[:, None]).sum(1)) / (len(reference) + 1)


# ------------------------------------------------------------------------ intervals and FDR
def test_clopper_pearson_is_the_exact_beta_interval_with_its_edges() -> None:
    for k, n in ((3, 20), (1, 7), (19, 20), (50, 1000)):
        lo, hi = clopper_pearson(k, n, 0.9)
        assert float(lo) == pytest.approx(sps.beta.ppf(0.05, k, n - k + 1), rel=1e-12)
        assert float(hi) == pytest.approx(sps.beta.ppf(0.95, k + 1, n - k), rel=1e-12)
    lo, hi = clopper_pearson(np.array([0, 20]), 20)
    assert lo[0] == 0.0 and hi[1] == 1.0  # nothing (all) flagged: the band touches 0 (1)
    assert hi[0] == pytest.approx(1 - 0.025 ** (1 / 20))
    assert lo[1] == pytest.approx(0.025 ** (1 / 20))


def test_fpr_curve_counts_p_at_or_below_alpha() -> None:
    p = np.array([0.01, 0.05, 0.05, 0.2, 0.7])
    c = fpr_curve(p, (0.01, 0.05, 0.5), level=0.95)
    assert c["count"].tolist() == [1, 3, 4] and c["n"].tolist() == [5, 5, 5]
    np.testing.assert_allclose(c["fpr"], [0.2, 0.6, 0.8])
    lo, hi = clopper_pearson(np.array([1, 3, 4]), 5, 0.95)
    np.testing.assert_array_equal(c["lower"], lo)
    np.testing.assert_array_equal(c["upper"], hi)


def test_benjamini_hochberg_edges() -> None:
    empty = benjamini_hochberg(np.array([]), 0.05)
    assert empty.shape == (0,) and empty.dtype == bool
    assert benjamini_hochberg(np.array([0.05]), 0.05).tolist() == [True]  # p = q: rejected
    assert benjamini_hochberg(np.array([0.0500001]), 0.05).tolist() == [False]
    # unsorted input: the k-th smallest sits exactly on its line q k / m
    p = np.array([0.9, 0.02, 0.5, 0.01])
    out = benjamini_hochberg(p, 0.04)
    assert out.dtype == bool and out.tolist() == [False, True, False, True]
    assert not benjamini_hochberg(np.array([0.5, 0.6]), 0.05).any()


# ------------------------------------------------------------------------ calibration
def test_per_class_calibration_ranks_within_each_class_and_small_classes_together() -> None:
    rng = np.random.default_rng(11)
    scores = rng.normal(size=600)
    classes = np.r_[np.zeros(300, int), np.ones(250, int), np.full(50, 2)]
    scores[classes == 1] += 2.0  # class 1 runs hotter
    cal = ConformalCalibrator(per_class=True, min_class_samples=100).fit(scores, classes)
    # class 2 (50 < 100 points) is calibrated on the small classes' own points, not the pool
    assert sorted(cal.by_class_) == [0, 1] and cal.small_classes_ == [2] and cal.smallest_n == 50
    test = rng.normal(size=90) + 1.0
    test_cls = np.repeat([0, 1, 2], 30)
    got = cal.pvalues(test, test_cls)
    for c, ref in ((0, scores[classes == 0]), (1, scores[classes == 1]),
                   (2, scores[classes == 2])):
        rows = test_cls == c
        np.testing.assert_array_equal(got[rows], _upper_tail(ref, test[rows]))
    pooled = ConformalCalibrator().fit(scores)
    np.testing.assert_array_equal(pooled.pvalues(test), _upper_tail(scores, test))
    with pytest.raises(ValueError, match="needs the predicted classes"):
        cal.pvalues(test)
    with pytest.raises(ValueError, match="non-empty 1-D"):
        ConformalCalibrator().fit(np.array([]))
    with pytest.raises(ValueError, match="NaN in calibration"):
        ConformalCalibrator().fit(np.array([0.0, np.nan]))


def test_a_small_class_is_scored_against_the_pooled_reference() -> None:
    rng = np.random.default_rng(5)
    fit, y = synthetic_stats(rng, 800)
    y[:30] = 7  # 30 reference inputs: below min_class_reference
    det = StatisticalDetector(reductions=("max",), min_class_reference=100).fit(fit, y)
    test, _ = synthetic_stats(rng, 40)
    counts = det.references_.reference_for(7).tail_counts(np.concatenate(
        [test[layer]["max"] for layer in ("block1", "block2", "head")], axis=1))
    everything = np.concatenate([fit[layer]["max"] for layer in ("block1", "block2", "head")],
                                axis=1)
    expected = brute_pvalues(everything, np.concatenate(
        [test[layer]["max"] for layer in ("block1", "block2", "head")], axis=1))
    np.testing.assert_array_equal(ranks_mod.pvalues_from_counts(counts, len(everything)),
                                  expected)


def test_tail_counts_across_several_blocks_with_ties(monkeypatch) -> None:
    """Blocks of a few queries each (the 2**16 default fits every test in one block)."""
    monkeypatch.setattr(ranks_mod, "_BLOCK_ELEMENTS", 7)
    rng = np.random.default_rng(3)
    ref = (rng.integers(-3, 4, (40, 9)) * 0.5).astype(np.float32)
    values = (rng.integers(-4, 5, (13, 9)) * 0.5).astype(np.float32)
    np.testing.assert_array_equal(two_sided_pvalues(ref, values), brute_pvalues(ref, values))
    tiny = (np.arange(1, 21, dtype=np.float32) * np.float32(1e-9))[:, None]  # distinct, near 0
    expected = brute_pvalues(tiny, tiny[[0, -1]])
    assert expected.max() < 0.2  # the extremes of 20 distinct values
    np.testing.assert_array_equal(two_sided_pvalues(tiny, tiny[[0, -1]]), expected)
    with pytest.raises(ValueError, match="non-empty n x C"):
        SortedReference.from_values(np.zeros((0, 3), np.float32))
    with pytest.raises(ValueError, match="expected m x 9 statistics"):
        SortedReference.from_values(ref).tail_counts(values[:, :4])


def test_tie_break_keeps_shifts_within_eps_and_in_order() -> None:
    primary = np.zeros(5)
    secondary = np.array([-1e9, -3.0, 0.0, 2.0, 1e12])
    out = tie_break(primary, secondary, eps=1e-6)
    assert np.all(np.abs(out) < 1e-6) and np.all(np.diff(out) > 0) and out[2] == 0.0
    assert tie_break(np.array([1.0]), np.array([5.0]), eps=0.1)[0] == pytest.approx(
        1 + 0.1 * math.log1p(5) / (1 + math.log1p(5)))


# ------------------------------------------------------------------------ combiners
def test_chi2_tail_far_series_and_near_one() -> None:
    for df in (4, 8, 20):
        k, x = df // 2, np.array([2000.0, 3000.0])
        y = x / 2
        independent = -y + special.logsumexp(
            np.array([i * np.log(y) - math.lgamma(i + 1) for i in range(k)]), axis=0)
        np.testing.assert_allclose(chi2_logsf_even(x, df), independent, rtol=1e-10)
    # where the tail is ~1, log(1 - cdf) keeps its relative accuracy
    assert chi2_logsf_even(np.array([1e-10]), 2)[0] == pytest.approx(-5e-11, rel=1e-9, abs=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert np.isfinite(chi2_logsf_even(np.array([5000.0, 1e5]), 2)).all()
    for df in (0, -2, 3):
        with pytest.raises(ValueError, match="positive even integer"):
            chi2_logsf_even(np.array([1.0]), df)


def test_naive_pvalues_of_each_combiner() -> None:
    stat = np.array([0.0, 1.0, 4.0])
    np.testing.assert_allclose(across_naive_pvalue(stat, "fisher", 2), sps.chi2.sf(stat, 4))
    for method in ("simes", "minp"):
        np.testing.assert_allclose(across_naive_pvalue(stat, method, 3), np.exp(-stat))
    np.testing.assert_allclose(across_naive_pvalue(stat, "cauchy", 3),
                               [0.5, 0.25, 0.5 - np.arctan(4.0) / np.pi])
    with pytest.raises(ValueError, match="valid"):
        across_naive_pvalue(stat, "stouffer", 3)


# ------------------------------------------------------------------------ k-NN evidence
def test_knn_bank_cap_is_a_seeded_subsample() -> None:
    rng = np.random.default_rng(8)
    bank, queries = rng.normal(size=(500, 6)), rng.normal(size=(20, 6))
    capped = KNNEvidence(k=5, max_bank=100, seed=3).fit(bank)
    assert capped.bank_.shape == (100, 6)
    keep = np.sort(np.random.default_rng(3).choice(500, 100, replace=False))
    unit = bank[keep] / np.linalg.norm(bank[keep], axis=1, keepdims=True)
    q = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    brute = np.sort(np.linalg.norm(q[:, None] - unit[None], axis=2), axis=1)[:, 4]
    np.testing.assert_allclose(capped.score(queries), brute, rtol=1e-5)
    full = KNNEvidence(k=5).fit(bank)
    assert full.bank_.shape == (500, 6)
    assert not np.allclose(full.score(queries), capped.score(queries))
    np.testing.assert_allclose(kth_neighbour_distance(queries, full.bank_, 5, chunk_size=3),
                               full.score(queries), rtol=1e-6)
    with pytest.raises(ValueError, match="k must be >= 1"):
        KNNEvidence(k=0)
    with pytest.raises(ValueError, match="features must be N x D"):
        KNNEvidence().fit(np.zeros(5))


# ------------------------------------------------------------------------ NeuralFP
def test_neuralfp_trains_its_autoencoders_and_its_bands_follow_alpha() -> None:
    rng = np.random.default_rng(9)
    fit, _ = synthetic_stats(rng, 1500)
    cal, _ = synthetic_stats(rng, 600)
    untrained = NeuralFP(epochs=0, seed=0).fit(fit)
    trained = NeuralFP(epochs=15, seed=0).fit(fit)
    e0, e1 = untrained.errors(fit).mean(axis=0), trained.errors(fit).mean(axis=0)
    assert (e1 < 0.9 * e0).all(), (e0, e1)  # training lowers every layer's reconstruction error
    slow = NeuralFP(epochs=15, seed=0, lr=1e-5).fit(fit).errors(fit).mean(axis=0)
    assert (e1 < slow).all()  # the learning rate is used
    trained.calibrate(cal)
    lower, upper = trained.bands(0.3)
    errs = np.sort(trained.errors(cal), axis=0)
    k = int(np.floor(0.3 / 3 * (600 + 1) / 2 - 1 + 1e-12))
    assert k >= 0
    np.testing.assert_array_equal(lower, errs[k])
    np.testing.assert_array_equal(upper, errs[600 - 1 - k])
    lo_tiny, hi_tiny = trained.bands(1e-6)  # too small a level for 600 points: never flag
    assert np.isneginf(lo_tiny).all() and np.isposinf(hi_tiny).all()
    capped = NeuralFP(epochs=1, max_fit_samples=200, layers=["head"], bottleneck=3,
                      hidden=16).fit(fit)
    assert capped.layer_names_ == ["head"] and len(capped.models_) == 1
    layers = [m for m in capped.models_[0] if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in layers] == [(28, 16), (16, 3), (3, 16),
                                                                 (16, 28)]
    # the standardisation comes from the seeded 200-row subsample, not from all 1,500 rows
    keep = np.sort(np.random.default_rng(0).choice(1500, 200, replace=False))
    head = np.concatenate([fit["head"]["max"], fit["head"]["mean"]], axis=1)
    np.testing.assert_allclose(capped.means_[0], head[keep].mean(axis=0), rtol=1e-5)


# ------------------------------------------------------------------------ extra evidence
def test_extra_evidence_reaches_every_entry_point() -> None:
    """decide / naive_pvalues / explain see the k-NN evidence exactly as pvalues does."""
    rng = np.random.default_rng(10)
    fit, y_fit = synthetic_stats(rng, 900)
    cal, y_cal = synthetic_stats(rng, 400)
    test, y_test = synthetic_stats(rng, 200)
    feats = {n: {"features": rng.normal(size=(len(y), 5)) + (2.0 if n == "test" else 0.0)}
             for n, y in (("fit", y_fit), ("cal", y_cal), ("test", y_test))}
    det = StatisticalDetector(reductions=("max",), extra_evidence=[KNNEvidence(k=5)])
    det.fit(fit, y_fit, extra=feats["fit"]).calibrate(cal, y_cal, extra=feats["cal"])
    extra = feats["test"]
    p = det.pvalues(test, y_test, extra)
    np.testing.assert_array_equal(det.decide(test, y_test, 0.1, extra), p <= 0.1)
    expl = det.explain(test, y_test, 0.1, extra)
    np.testing.assert_array_equal(expl.pvalue, p)
    log_p = det.test_log_pvalues(test, y_test, extra)
    assert det.test_names[-1] == "knn" and log_p.shape[1] == len(det.test_names)
    np.testing.assert_array_equal(log_p[:, -1], det.evidences_[0].log_pvalues(
        extra["features"]))
    assert (log_p[:, :-1] != log_p[:, -1:]).any()  # the evidence has its own column
    naive = det.naive_pvalues(test, y_test, extra)
    np.testing.assert_allclose(naive, across_naive_pvalue(
        det.statistic(test, y_test, extra), "fisher", len(det.test_names)))

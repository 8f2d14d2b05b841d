"""Stratified bootstrap: each resample's metrics equal compute_metrics on the resampled rows,
draws are shared across detectors, and the 95 % interval covers the true AUROC ~95 % of the
time."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import norm

from benchmark.pipeline.metrics import compute_metrics
from benchmark.stats import bootstrap as bs

EXACT = {"auroc": 1e-12, "fpr95tpr": 1e-12, "aupr_in": 2e-6, "aupr_out": 2e-6}


@pytest.mark.parametrize("case", range(24))
def test_each_resample_is_compute_metrics_on_the_drawn_rows(case) -> None:
    rng = np.random.default_rng(case)
    n_id, n_ood = rng.integers(2, 80, 2)
    id_s, ood_s = rng.normal(0, 1, n_id), rng.normal(0.8, 1, n_ood)
    if case % 3 != 1:  # many ties (else continuous scores: none)
        id_s, ood_s = np.round(id_s, 1), np.round(ood_s, 1)
    if case % 4 == 0:  # tied infinities on both sides
        id_s[:2], ood_s[:3] = np.inf, np.inf
    if case % 6 == 0:  # a constant detector
        id_s[:], ood_s[:] = 3.0, 3.0
    id_d = bs.draw(n_id, 9, case, "id_test")
    ood_d = bs.draw(n_ood, 9, case, "ood/x")
    got = bs.resampled_metrics(id_s, ood_s, id_d, ood_d)
    for r in range(9):
        assert id_d.counts[r].sum() == n_id and ood_d.counts[r].sum() == n_ood  # stratified
        ref = compute_metrics(np.repeat(id_s, id_d.counts[r]), np.repeat(ood_s, ood_d.counts[r]))
        for m, tol in EXACT.items():
            assert got[m][r] == pytest.approx(ref[m], abs=tol), (r, m)


def test_unit_counts_give_the_point_estimate() -> None:
    rng = np.random.default_rng(1)
    id_s, ood_s = rng.normal(0, 1, 300), rng.normal(1, 1, 200)
    one = bs.Resamples(np.ones((1, 300), np.int32))
    got = bs.resampled_metrics(id_s, ood_s, one, bs.Resamples(np.ones((1, 200), np.int32)))
    ref = compute_metrics(id_s, ood_s)
    for m, tol in EXACT.items():
        assert got[m][0] == pytest.approx(ref[m], abs=tol)


def test_draws_depend_only_on_seed_split_and_size() -> None:
    a, b = bs.draw(50, 20, 0, "ood/a"), bs.draw(50, 20, 0, "ood/a")
    assert np.array_equal(a.counts, b.counts)
    for other in (bs.draw(50, 20, 1, "ood/a"), bs.draw(50, 20, 0, "ood/b")):
        assert not np.array_equal(a.counts, other.counts)
    assert (a.counts.sum(axis=1) == 50).all() and np.issubdtype(a.counts.dtype, np.integer)


def test_chunking_does_not_change_the_result(monkeypatch) -> None:
    rng = np.random.default_rng(2)
    id_s, ood_s = rng.normal(0, 1, 120), rng.normal(1, 1, 80)
    id_d, ood_d = bs.draw(120, 50, 0, "id_test"), bs.draw(80, 50, 0, "ood/x")
    whole = bs.resampled_metrics(id_s, ood_s, id_d, ood_d)
    monkeypatch.setattr(bs, "_CHUNK_CELLS", 300)  # two resamples per step
    pieces = bs.resampled_metrics(id_s, ood_s, id_d, ood_d)
    for m in bs.METRICS:
        np.testing.assert_array_equal(whole[m], pieces[m])


def test_sets_of_one_detector_share_the_id_side_and_threads_change_nothing(monkeypatch) -> None:
    """Several OOD sets at once (tie-free ones read as views, tied ones gathered), on 1 and 2
    threads, give each set's own resampled metrics bit for bit; a mismatched set gets its
    error and the others their numbers."""
    rng = np.random.default_rng(4)
    id_s = rng.normal(0, 1, 300)
    id_s[7:9] = id_s[6]  # a few ties (their members added one by one), and many (a segment sum)
    few = rng.normal(1, 1, 200)
    few[10:13], few[50] = few[0], few[1]
    ood = {"smooth": rng.normal(1, 1, 200), "tied": np.round(rng.normal(1, 1, 150), 1),
           "few_ties": few, "ties_id": np.concatenate([id_s[:40], rng.normal(2, 1, 60)])}
    assert bs._Side.of(id_s).extra and bs._Side.of(few).extra
    assert bs._Side.of(ood["tied"]).extra is None
    monkeypatch.setattr(bs, "_CHUNK_CELLS", 300 * 8)  # 8 chunks of 8 resamples
    id_d = bs.draw(300, 64, 0, "id_test")
    draws = {k: bs.draw(len(v), 64, 0, f"ood/{k}") for k, v in ood.items()}
    alone = {k: bs.resampled_metrics(id_s, v, id_d, draws[k]) for k, v in ood.items()}
    bad = {**ood, "short": np.ones(7)}
    for workers in (1, 2):
        got = bs.resampled_metrics_of(id_s, bad, id_d, {**draws, "short": bs.draw(9, 64, 0, "s")},
                                      workers=workers)
        assert isinstance(got["short"], ValueError)
        for k in ood:
            for m in bs.METRICS:
                np.testing.assert_array_equal(got[k][m], alone[k][m])
    for k, v in ood.items():  # and each resample is still compute_metrics on its rows
        ref = compute_metrics(np.repeat(id_s, id_d.counts[5]), np.repeat(v, draws[k].counts[5]))
        for m, tol in EXACT.items():
            assert alone[k][m][5] == pytest.approx(ref[m], abs=tol), (k, m)


def test_mismatched_counts_are_refused() -> None:
    with pytest.raises(ValueError, match="do not match"):
        bs.resampled_metrics(np.zeros(5), np.ones(4), bs.draw(5, 3, 0, "a"), bs.draw(5, 3, 0, "b"))


def test_interval_covers_the_true_auroc_about_95_percent_of_the_time() -> None:
    """Binormal scores, true AUROC = Phi(d / sqrt 2); 200 independent experiments."""
    d, n, reps = 1.0, 150, 200
    truth = norm.cdf(d / np.sqrt(2))
    rng = np.random.default_rng(0)
    covered = 0
    for k in range(reps):
        id_s, ood_s = rng.normal(0, 1, n), rng.normal(d, 1, n)
        iv = bs.intervals(id_s, ood_s, bs.draw(n, 1000, k, "id_test"),
                          bs.draw(n, 1000, k, "ood/x"))
        assert iv["auroc_lo"] < compute_metrics(id_s, ood_s)["auroc"] < iv["auroc_hi"]
        covered += iv["auroc_lo"] <= truth <= iv["auroc_hi"]
    # 95 % nominal; the binomial sd over 200 experiments is 1.5 points
    assert 0.90 <= covered / reps <= 0.99, covered / reps


def test_interval_width_shrinks_with_more_samples() -> None:
    rng = np.random.default_rng(3)
    widths = []
    for n in (100, 1600):
        id_s, ood_s = rng.normal(0, 1, n), rng.normal(1, 1, n)
        iv = bs.intervals(id_s, ood_s, bs.draw(n, 1000, 0, "id_test"), bs.draw(n, 1000, 0, "o"))
        widths.append(iv["auroc_hi"] - iv["auroc_lo"])
    assert widths[1] < widths[0] / 3  # ~ 1/sqrt(n): a factor 4 expected

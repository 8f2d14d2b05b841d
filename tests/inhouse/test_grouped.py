"""Evidence groups, the feature evidences (relative Mahalanobis, class-wise PPCA) and MaSF, on
synthetic data with a known answer: validity over fresh draws, which split references what,
the two-level combination keeping a strong test from being drowned, and each evidence against
an independent computation."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as sps
from sklearn.metrics import roc_auc_score

from benchmark.inhouse import (
    GroupedDetector,
    KNNEvidence,
    MaSF,
    OpenPCSEvidence,
    RMDEvidence,
    StatisticalDetector,
)
from benchmark.inhouse.diagnostics import clopper_pearson
from benchmark.inhouse.evidence import make_evidence
from benchmark.inhouse.feature_evidence import chi2_logsf
from benchmark.inhouse.grouped import tail_log_pvalues
from benchmark.inhouse.ranks import upper_tail_pvalues
from tests.inhouse.test_inhouse import ood_labels, synthetic_stats

LAYERS = {"reductions": ("mean",), "per_class": True, "min_class_reference": 50}


def _world(rng: np.random.Generator, n: int, shift: float = 0.0, no_class: bool = False,
           classes: int = 5):
    """Layer statistics plus 8-d class-clustered features and logits; ``no_class``: features
    near no class centre (OOD that only the features show; the layers cannot see it)."""
    stats, y = synthetic_stats(rng, n, shift=shift, classes=classes)
    centres = np.eye(classes, 8) * 3.0
    feats = (0 if no_class else centres[y]) + rng.normal(size=(n, 8))
    logits = feats[:, :classes] * 2.0
    return stats, y, {"features": feats, "logits": logits}


def _grouped(**kw) -> GroupedDetector:
    kw.setdefault("layer_params", LAYERS)
    kw.setdefault("evidence_params", {"knn": {"k": 5}})
    return GroupedDetector(**kw)


@pytest.mark.parametrize("reference", ["calibration", "fit"])
def test_grouped_pvalues_are_valid_over_fresh_draws(reference) -> None:
    rng = np.random.default_rng(0)
    hits, total = {0.05: 0, 0.1: 0}, 0
    for _ in range(12):
        fit, y_fit, x_fit = _world(rng, 1200)
        cal, y_cal, x_cal = _world(rng, 1000)
        test, y_test, x_test = _world(rng, 1000)
        det = _grouped(groups={"layers": ["layers"], "features": ["knn", "rmd"],
                               "logits": ["energy"]}, reference=reference)
        det.fit(fit, y_fit, y_fit, x_fit).calibrate(cal, y_cal, x_cal)
        p = det.pvalues(test, y_test, x_test)
        total += len(p)
        for a in hits:
            hits[a] += int((p <= a).sum())
    for a, k in hits.items():
        lo, hi = clopper_pearson(k, total, 0.999)
        assert lo <= a and hi >= 0.7 * a, (a, k / total)


def test_the_splits_are_disjoint_and_each_does_its_job() -> None:
    """reference="calibration": half the calibration split references the group p-values, the
    other half calibrates; recomputed by hand from those rows."""
    rng = np.random.default_rng(1)
    fit, y_fit, x_fit = _world(rng, 600)
    cal, y_cal, x_cal = _world(rng, 400)
    det = _grouped(groups={"knn": ["knn"]}).fit(fit, y_fit, y_fit, x_fit)
    det.calibrate(cal, y_cal, x_cal)
    assert det.split_sizes_ == {"model": 600, "reference": 200, "calibration": 200}
    perm = np.random.default_rng(det.seed + 1).permutation(400)
    ref, final = np.sort(perm[:200]), np.sort(perm[200:])
    knn = KNNEvidence(k=5).fit(x_fit["features"])
    np.testing.assert_allclose(det.group_refs_["knn"], np.sort(knn.score(x_cal["features"][ref])))
    t_final = -2 * tail_log_pvalues(det.group_refs_["knn"], knn.score(x_cal["features"][final]))
    np.testing.assert_allclose(det.calibrator_.pooled_, np.sort(t_final))
    assert "calibration-split" in det.split_roles()["reference"]
    # reference="fit": a fifth of the fit split references, the rest fits the models
    det = _grouped(groups={"knn": ["knn"]}, reference="fit", reference_fraction=0.2)
    det.fit(fit, y_fit, y_fit, x_fit).calibrate(cal, y_cal, x_cal)
    assert det.split_sizes_ == {"model": 480, "reference": 120, "calibration": 400}


def test_one_strong_group_is_not_drowned_by_many_weak_tests() -> None:
    """Only the features move: k-NN as one test among the layer tests in one Fisher sum
    (StatisticalDetector's extra evidence) loses much of its power; as its own group the
    two-level combination keeps most of it."""
    rng = np.random.default_rng(2)
    fit, y_fit, x_fit = _world(rng, 1500)
    cal, y_cal, x_cal = _world(rng, 1000)
    test, y_test, x_test = _world(rng, 1000)
    ood, y_ood, x_ood = _world(rng, 1000, no_class=True)
    flat = StatisticalDetector(reductions=("max", "mean"), min_class_reference=50,
                               extra_evidence=[KNNEvidence(k=5)])
    flat.fit(fit, y_fit, extra=x_fit).calibrate(cal, y_cal, x_cal)
    grouped = _grouped(layer_params={**LAYERS, "reductions": ("max", "mean")},
                       groups={"layers": ["layers"], "knn": ["knn"]})
    grouped.fit(fit, y_fit, y_fit, x_fit).calibrate(cal, y_cal, x_cal)
    knn_only = _grouped(groups={"knn": ["knn"]}).fit(fit, y_fit, y_fit, x_fit)
    knn_only.calibrate(cal, y_cal, x_cal)

    def auroc(det, flat_api=False):
        s_id = det.score(test, y_test, x_test)
        s_ood = det.score(ood, y_ood, x_ood)
        return roc_auc_score(ood_labels(len(s_id), len(s_ood)), np.r_[s_id, s_ood])

    a_flat, a_grouped, a_knn = auroc(flat), auroc(grouped), auroc(knn_only)
    assert a_knn > 0.8
    assert a_grouped > a_flat + 0.03, (a_flat, a_grouped, a_knn)


def test_group_weights_and_combiners() -> None:
    rng = np.random.default_rng(3)
    fit, y_fit, x_fit = _world(rng, 800)
    cal, y_cal, x_cal = _world(rng, 600)
    test, y_test, x_test = _world(rng, 300, shift=0.3)
    groups = {"layers": ["layers"], "knn": ["knn"]}
    weighted = _grouped(groups=groups, weights={"layers": 0.0}).fit(fit, y_fit, y_fit, x_fit)
    weighted.calibrate(cal, y_cal, x_cal)
    alone = _grouped(groups={"knn": ["knn"]}).fit(fit, y_fit, y_fit, x_fit)
    alone.calibrate(cal, y_cal, x_cal)
    # weight 0: the layers group has no say; the p-values are the k-NN group's own
    np.testing.assert_allclose(weighted.pvalues(test, y_test, x_test),
                               alone.pvalues(test, y_test, x_test))
    log_p = weighted.test_log_pvalues(test, y_test, x_test)
    assert log_p.shape == (300, 2) and (log_p <= 0).all()
    for across in ("cauchy", "minp", "simes"):
        det = _grouped(groups=groups, across=across).fit(fit, y_fit, y_fit, x_fit)
        p = det.calibrate(cal, y_cal, x_cal).pvalues(test, y_test, x_test)
        assert ((p > 0) & (p <= 1)).all()
    with pytest.raises(ValueError, match="weights need across"):
        _grouped(groups=groups, across="minp", weights={"knn": 2.0}).fit(fit, y_fit, y_fit,
                                                                         x_fit)
    with pytest.raises(ValueError, match="unknown groups"):
        _grouped(groups=groups, weights={"nope": 1.0}).fit(fit, y_fit, y_fit, x_fit)
    with pytest.raises(ValueError, match="unknown evidence"):
        _grouped(groups={"x": ["bogus"]}).fit(fit, y_fit, y_fit, x_fit)
    with pytest.raises(RuntimeError, match="calibrate"):
        _grouped(groups=groups).fit(fit, y_fit, y_fit, x_fit).score(test, y_test, x_test)


def test_tail_extrapolation_keeps_evidence_growing_past_the_reference() -> None:
    rng = np.random.default_rng(4)
    ref = np.sort(rng.exponential(size=1000))
    inside = np.linspace(0, ref[-1], 50)
    np.testing.assert_array_equal(tail_log_pvalues(ref, inside),
                                  np.log(upper_tail_pvalues(ref, inside)))
    beyond = ref[-1] + np.array([0.0, 1.0, 5.0])
    got = tail_log_pvalues(ref, beyond + 1e-12)
    capped = tail_log_pvalues(ref, beyond + 1e-12, tail="none")
    assert (np.diff(got) < 0).all() and np.ptp(capped) == 0
    assert got[0] == pytest.approx(-np.log(1001), abs=1e-6)
    # exponential reference: the fitted tail's scale is the mean excess, ~1
    assert (got[1] - got[2]) / 4.0 == pytest.approx(1.0, rel=0.35)


def test_rmd_is_min_class_minus_background_mahalanobis() -> None:
    rng = np.random.default_rng(5)
    x = rng.normal(size=(600, 4)) + np.repeat(np.eye(3, 4) * 2, 200, axis=0)
    y = np.repeat(np.arange(3), 200)
    ev = RMDEvidence().fit(x, y)
    q = rng.normal(size=(20, 4))
    means = np.stack([x[y == c].mean(0) for c in range(3)])
    within = np.cov(np.concatenate([x[y == c] - means[c] for c in range(3)]).T)
    background = np.cov(x.T)

    def md(v, m, cov):
        d = v - m
        return np.einsum("nd,de,ne->n", d, np.linalg.inv(cov), d)

    want = np.min([md(q, means[c], within) for c in range(3)], axis=0) - md(q, x.mean(0),
                                                                            background)
    np.testing.assert_allclose(ev.score(q), want, rtol=1e-4, atol=1e-6)
    with pytest.raises(ValueError, match="one class per fit input"):
        RMDEvidence().fit(x)


def test_openpcs_is_the_ppca_gaussian_log_likelihood() -> None:
    """Tipping & Bishop's PPCA: covariance W W^T + sigma^2 I with sigma^2 the mean of the
    discarded eigenvalues; score = minus the best class's log-likelihood."""
    rng = np.random.default_rng(6)
    x = np.concatenate([rng.normal(size=(300, 6)) @ rng.normal(size=(6, 6)) + 3 * c
                        for c in range(2)])
    y = np.repeat([0, 1], 300)
    ev = OpenPCSEvidence(n_components=2).fit(x, y)
    q = rng.normal(size=(15, 6)) + 1.5
    lls = []
    for c in range(2):
        rows = x[y == c]
        vals, vecs = np.linalg.eigh(np.cov(rows.T))
        vals, vecs = vals[::-1], vecs[:, ::-1]
        s2 = vals[2:].mean()
        w = vecs[:, :2] * np.sqrt(vals[:2] - s2)
        cov = w @ w.T + s2 * np.eye(6)
        lls.append(sps.multivariate_normal(rows.mean(0), cov).logpdf(q))
    np.testing.assert_allclose(ev.log_likelihoods(q), np.stack(lls, 1), rtol=1e-8)
    np.testing.assert_allclose(ev.score(q), -np.max(lls, axis=0), rtol=1e-8)


def test_masf_reads_fishers_statistic_off_the_chi_square_tail() -> None:
    """As published: no held-out calibration, so its rate at alpha rests on the chi-square
    reading's independence. Layers that carry the same information (here: copies) make it
    flag far more ID inputs than alpha: Fisher's T of three equal p-values p is -6 log p, and
    P(chi2_6 >= T) <= 0.05 already at p = 0.123."""
    rng = np.random.default_rng(7)
    fit, y_fit = synthetic_stats(rng, 2000)
    test, y_test = synthetic_stats(rng, 3000)
    masf = MaSF().fit(fit, y_fit)
    t = masf.detector_.statistic(test, y_test)
    np.testing.assert_allclose(masf.pvalues(test, y_test), sps.chi2.sf(t, 2 * 3), rtol=1e-8)
    assert masf.detector_.reductions == ("max",) and masf.detector_.within == "simes"

    def copies(n):
        x = np.exp(rng.normal(size=(n, 4))).astype(np.float32)
        return {f"layer{i}": {"max": x} for i in range(3)}

    masf = MaSF(per_class=False).fit(copies(2000), np.zeros(2000, int))
    flagged = masf.decide(copies(3000), np.zeros(3000, int), 0.05)
    lo, _ = clopper_pearson(int(flagged.sum()), 3000, 0.999)
    assert lo > 0.08


def test_layer_mahalanobis_is_fisher_over_each_layers_chi_square_tail() -> None:
    rng = np.random.default_rng(8)
    fit, y_fit = synthetic_stats(rng, 800)
    test, _ = synthetic_stats(rng, 30, shift=0.5)
    ev = make_evidence("layer_mahalanobis").fit(fit, y_fit)
    want = 0.0
    for layer, reds in fit.items():
        x = reds["mean"].astype(np.float64)
        q = test[layer]["mean"].astype(np.float64)
        rmd = RMDEvidence().fit(x, y_fit)
        d = np.min([np.einsum("nd,de,ne->n", q - m, rmd.precision_, q - m)
                    for m in rmd.means_], axis=0)
        want = want - 2 * sps.chi2.logsf(d, x.shape[1])
    np.testing.assert_allclose(ev.score(test), want, rtol=1e-6)
    # far in the tail, where scipy's log-tail underflows, the value stays finite and ordered
    far = chi2_logsf(np.array([1e3, 1e4, 1e5]), 16)
    assert np.isfinite(far).all() and (np.diff(far) < 0).all()
    assert far[0] == pytest.approx(sps.chi2.logsf(1e3, 16), rel=1e-6)

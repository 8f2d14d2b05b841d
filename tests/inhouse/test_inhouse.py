"""The in-house detectors: exact rank p-values, combiners, conformal validity, detection power.

Synthetic data where the property is clearest (validity needs many fresh exchangeable draws);
per-channel statistics of real MNIST / Fashion-MNIST images through a small seeded LeNet for
detection power and the adapter.
"""

from __future__ import annotations

import ast
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import stats as sps
from sklearn.metrics import roc_auc_score

from benchmark.inhouse import (
    KNNEvidence,
    NeuralFP,
    StatisticalDetector,
    benjamini_hochberg,
    clopper_pearson,
    extract_layer_stats,
    fpr_curve,
    naive_chi2_pvalue,
    spatial_max,
    spatial_mean,
    two_sided_pvalues,
)
from benchmark.inhouse.combiners import (
    across_statistic,
    bonferroni,
    chi2_logsf_even,
    fisher,
    simes,
    within_log_pvalues,
)
from benchmark.inhouse.conformal import tie_break
from benchmark.inhouse.ranks import SortedReference, pvalues_from_counts, upper_tail_pvalues

REPO = Path(__file__).resolve().parents[2]
PACKAGE = REPO / "benchmark" / "inhouse"


# ----------------------------------------------------------------------------- helpers
def brute_pvalues(ref: np.ndarray, values: np.ndarray) -> np.ndarray:
    """The spec formula, literally, in float64 (ref: n x C, values: m x C)."""
    ref = ref.astype(np.float64)[None]
    values = values.astype(np.float64)[:, None]
    n = ref.shape[1]
    le = (ref <= values).sum(axis=1)
    ge = (ref >= values).sum(axis=1)
    return np.minimum(1.0, 2.0 * np.minimum((1 + le) / (n + 1), (1 + ge) / (n + 1)))


def synthetic_stats(
    rng: np.random.Generator, n: int, shift: float = 0.0, classes: int = 5
) -> tuple[dict[str, dict[str, np.ndarray]], np.ndarray]:
    """Three 'layers' of correlated, class-dependent, positive channel statistics."""
    y = rng.integers(0, classes, n)
    latent = rng.standard_normal((n, 1))
    out = {}
    for name, c in (("block1", 6), ("block2", 10), ("head", 14)):
        centre = np.linspace(-1, 1, classes)[y][:, None] * np.linspace(0.2, 1, c)[None]
        noise = 0.6 * latent + 0.8 * rng.standard_normal((n, c))
        base = centre + noise + shift
        out[name] = {
            "max": np.exp(0.5 * base).astype(np.float32),
            "mean": np.maximum(base, 0).astype(np.float32),  # ReLU-like: many exact zeros
        }
    return out, y


def ood_labels(n_id: int, n_ood: int) -> np.ndarray:
    return np.r_[np.zeros(n_id), np.ones(n_ood)]


def cp_contains(k: int, n: int, rate: float, level: float = 0.999) -> bool:
    lo, hi = clopper_pearson(k, n, level)
    return float(lo) <= rate <= float(hi)


# ----------------------------------------------------------------------------- rank p-values
def test_rank_pvalues_equal_brute_force_with_ties_and_signed_zero():
    rng = np.random.default_rng(0)
    for trial in range(60):
        n, m, c = rng.integers(1, 30), rng.integers(1, 30), rng.integers(1, 5)
        if trial % 3 == 0:  # heavy ties, negative values, exact repeats of reference values
            ref = (rng.integers(-3, 4, (n, c)) * 0.5).astype(np.float32)
            val = (rng.integers(-4, 5, (m, c)) * 0.5).astype(np.float32)
        else:
            ref = rng.standard_normal((n, c)).astype(np.float32)
            val = np.concatenate([rng.standard_normal((m, c)), ref[: min(n, 3)]]).astype(np.float32)
        val[0, 0] = -0.0
        ref[0, 0] = 0.0
        got = two_sided_pvalues(ref, val)
        np.testing.assert_allclose(got, brute_pvalues(ref, val), rtol=0, atol=1e-15)


def test_tail_counts_are_integers_of_the_formula_and_inf_is_handled():
    ref = np.array([[0.0], [1.0], [1.0], [np.inf]], dtype=np.float32)
    val = np.array([[-np.inf], [0.0], [1.0], [np.inf], [5.0]], dtype=np.float32)
    t = SortedReference.from_values(ref).tail_counts(val)[:, 0]
    # t = 1 + min(#{S <= s}, #{S >= s})
    assert t.tolist() == [1, 2, 4, 2, 2]
    np.testing.assert_allclose(pvalues_from_counts(t, 4), [0.4, 0.8, 1.0, 0.8, 0.8])
    with pytest.raises(ValueError, match="NaN"):
        two_sided_pvalues(ref, np.array([[np.nan]], dtype=np.float32))


def test_upper_tail_conformal_pvalues_brute_force():
    rng = np.random.default_rng(1)
    cal = rng.integers(0, 10, 50).astype(float)
    s = rng.integers(-1, 12, 40).astype(float)
    expected = (1 + (cal[None] >= s[:, None]).sum(1)) / (len(cal) + 1)
    np.testing.assert_array_equal(upper_tail_pvalues(np.sort(cal), s), expected)


# ----------------------------------------------------------------------------- combiners
def test_within_layer_combiners_match_hand_computation():
    p = np.array([[0.01, 0.04, 0.03, 0.5]])
    # Simes: sorted 0.01, 0.03, 0.04, 0.5 -> 4*0.01/1, 4*0.03/2, 4*0.04/3, 4*0.5/4 -> 0.04
    assert simes(p)[0] == pytest.approx(0.04)
    assert bonferroni(p)[0] == pytest.approx(0.04)
    # where they differ: Simes min(0.06, 0.0315, 0.022) = 0.022; Bonferroni 3 * 0.02 = 0.06
    close = np.array([[0.02, 0.021, 0.022]])
    assert simes(close)[0] == pytest.approx(0.022) and bonferroni(close)[0] == pytest.approx(0.06)
    t = -2 * np.log(p).sum()
    assert fisher(p)[0] == pytest.approx(sps.chi2.sf(t, 8), rel=1e-10)
    # the fast path on integer tail counts equals the same combiners on the p-values
    rng = np.random.default_rng(2)
    counts = rng.integers(1, 60, (200, 7)).astype(np.int32)
    pv = pvalues_from_counts(counts, 99)
    for method, ref in (("simes", simes), ("bonferroni", bonferroni), ("fisher", fisher)):
        got = np.exp(within_log_pvalues(counts, 99, method))
        np.testing.assert_allclose(got, ref(pv), rtol=1e-9, err_msg=method)


def test_across_layer_combiners_match_hand_computation():
    p = np.array([[0.01, 0.2, 0.5]])
    lp = np.log(p)
    assert across_statistic(lp, "fisher")[0] == pytest.approx(-2 * np.log(p).sum())
    # Simes over 3: min(3*0.01/1, 3*0.2/2, 3*0.5/3) = 0.03
    assert across_statistic(lp, "simes")[0] == pytest.approx(-np.log(0.03))
    assert across_statistic(lp, "minp")[0] == pytest.approx(-np.log(0.03))
    cauchy = np.mean(np.tan((0.5 - p) * np.pi))
    assert across_statistic(lp, "cauchy")[0] == pytest.approx(cauchy)
    with pytest.raises(ValueError, match="valid"):
        across_statistic(lp, "stouffer")
    # a case where Simes and Bonferroni (min-p) differ: Simes min(0.06, 0.0315, 0.022) = 0.022,
    # min-p 3 * 0.02 = 0.06 (the first case above gives 0.03 for both)
    close = np.log(np.array([[0.02, 0.021, 0.022]]))
    assert across_statistic(close, "simes")[0] == pytest.approx(-np.log(0.022))
    assert across_statistic(close, "minp")[0] == pytest.approx(-np.log(0.06))


def test_chi2_tail_is_exact_and_does_not_underflow():
    x = np.array([0.0, 0.5, 3.0, 40.0, 400.0, 1000.0])
    for df in (2, 6, 20, 256):
        got = chi2_logsf_even(x, df)
        np.testing.assert_allclose(got, sps.chi2.logsf(x, df), rtol=1e-9, atol=1e-12)
    # where scipy underflows to -inf, the closed form for df = 2 is -x / 2
    assert chi2_logsf_even(np.array([5000.0]), 2)[0] == pytest.approx(-2500.0)
    assert np.isfinite(chi2_logsf_even(np.array([5000.0]), 8)).all()
    assert naive_chi2_pvalue(np.array([9.21]), 1)[0] == pytest.approx(sps.chi2.sf(9.21, 2))


def test_tie_break_keeps_order_of_distinct_pvalues_and_breaks_ties():
    p = np.array([1 / 1001, 1 / 1001, 2 / 1001, 0.5])
    t = np.array([50.0, 900.0, 1e6, -3.0])
    s = tie_break(-np.log(p), t)
    assert s[1] > s[0] > s[2] > s[3]


def test_benjamini_hochberg_hand_example():
    p = np.array([0.001, 0.008, 0.039, 0.041, 0.042, 0.06, 0.074, 0.205])
    # q = 0.05, m = 8: thresholds 0.00625 k; largest k with p_(k) <= .00625 k is k = 2
    assert benjamini_hochberg(p, 0.05).tolist() == [True, True] + [False] * 6


# ----------------------------------------------------------------------------- standalone
def test_package_imports_nothing_from_the_harness():
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:  # relative: must stay inside the package
                    assert node.level == 1, f"{path.name} reaches outside the package"
                    continue
                names = [node.module or ""]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                assert top not in {"benchmark", "adapters"}, f"{path.name} imports {name}"
                assert top in {
                    "numpy",
                    "torch",
                    "scipy",
                    "__future__",
                    "collections",
                    "typing",
                    "dataclasses",
                    "math",
                    "copy",
                    "types",
                    "contextlib",
                }, f"{path.name}: {name}"


# ----------------------------------------------------------------------------- validity
@pytest.mark.parametrize("calibrate_per_class", [False, True])
def test_conformal_pvalues_are_valid_on_exchangeable_id_data(calibrate_per_class):
    """Fresh fit/calibration/test draws: pooled false-alarm rate within Clopper-Pearson band."""
    rng = np.random.default_rng(3)
    alphas = (0.01, 0.05, 0.1)
    hits = dict.fromkeys(alphas, 0)
    naive_hits = 0
    n_cal, n_test, reps = 1000, 1000, 20
    for _ in range(reps):
        fit, y_fit = synthetic_stats(rng, 1500)
        cal, y_cal = synthetic_stats(rng, n_cal)
        test, y_test = synthetic_stats(rng, n_test)
        det = StatisticalDetector(
            reductions=("max", "mean"),
            calibrate_per_class=calibrate_per_class,
            min_class_calibration=150,
            min_class_reference=100,
        ).fit(fit, y_fit)
        det.calibrate(cal, y_cal)
        p = det.pvalues(test, y_test)
        assert ((p > 0) & (p <= 1)).all()
        for a in alphas:
            hits[a] += int((p <= a).sum())
        naive_hits += int((det.naive_pvalues(test, y_test) <= 0.01).sum())
    total = reps * n_test
    for a in alphas:
        lo, hi = clopper_pearson(hits[a], total, 0.999)
        # valid: not significantly above alpha; and not uselessly conservative either
        assert lo <= a and hi >= 0.8 * a, (a, hits[a] / total)
    # the layer p-values are dependent: reading Fisher's T against chi-square is anti-
    # conservative (the reason the method calibrates T conformally instead)
    lo, _ = clopper_pearson(naive_hits, total, 0.999)
    assert lo > 0.01


def test_fpr_curve_reports_bands():
    p = np.random.default_rng(4).uniform(size=5000)
    curve = fpr_curve(p, (0.01, 0.1))
    assert (curve["lower"] <= curve["alpha"]).all() and (curve["alpha"] <= curve["upper"]).all()


def test_small_classes_fall_back_to_the_pooled_reference():
    rng = np.random.default_rng(5)
    fit, y = synthetic_stats(rng, 800)
    y[:30] = 7  # a class with 30 reference inputs (the others have ~150)
    det = StatisticalDetector(min_class_reference=100).fit(fit, y)
    assert det.references_.fallback_classes() == [7]
    assert det.references_.reference_for(7) is det.references_.pooled_
    assert det.references_.reference_for(123) is det.references_.pooled_  # unseen class


# ----------------------------------------------------------------------------- power
def test_detector_separates_shifted_data_and_explains_where():
    rng = np.random.default_rng(6)
    fit, y_fit = synthetic_stats(rng, 3000)
    cal, y_cal = synthetic_stats(rng, 1000)
    test, y_test = synthetic_stats(rng, 1000)
    ood, y_ood = synthetic_stats(rng, 1000, shift=3.0)  # every layer shifted
    for across in ("fisher", "simes", "cauchy", "minp"):
        det = StatisticalDetector(reductions=("max", "mean"), across=across).fit(fit, y_fit)
        det.calibrate(cal, y_cal)
        s = np.r_[det.score(test, y_test), det.score(ood, y_ood)]
        assert roc_auc_score(ood_labels(1000, 1000), s) > 0.99, across
    assert det.decide(ood, y_ood, 0.05).mean() > 0.9
    # where: shift only the head layer; the flagged inputs' evidence comes from there
    head_only, y_head = synthetic_stats(rng, 1000)
    for red in ("max", "mean"):
        head_only["head"][red] = head_only["head"][red] * 6 + 1.0
    det = StatisticalDetector(reductions=("max", "mean")).fit(fit, y_fit).calibrate(cal, y_cal)
    exp = det.explain(head_only, y_head, alpha=0.05)
    layers = ("block1", "block2", "head")
    assert exp.tests == [f"{ly}/{r}" for ly in layers for r in ("max", "mean")]
    np.testing.assert_allclose(exp.shares.sum(axis=1)[exp.pvalue < 0.5], 1.0)
    assert exp.decision.mean() > 0.5
    assert np.median(exp.layer_shares()["head"][exp.decision]) > 0.7
    rec = exp.records()[0]
    assert set(rec) == {"pvalue", "ood", "predicted", "statistic", "tests"}
    assert rec["tests"]["head/max"]["pvalue"] == pytest.approx(exp.test_pvalues[0, 4])


def test_extra_evidence_adds_power_and_keeps_validity():
    """OOD visible only in penultimate features: k-NN evidence finds it, FPR stays valid."""
    rng = np.random.default_rng(7)

    def feats(n, shift):
        f = 0.5 * rng.standard_normal((n, 16)).astype(np.float32)
        f[:, 0] += 4.0
        f[:, 1] += shift
        return f

    fit, y_fit = synthetic_stats(rng, 2000)
    cal, y_cal = synthetic_stats(rng, 1000)
    test, y_test = synthetic_stats(rng, 2000)
    ood, y_ood = synthetic_stats(rng, 1000)
    extra = {
        n: {"features": feats(len(y), 0.0)}
        for n, y in (("fit", y_fit), ("cal", y_cal), ("test", y_test))
    }
    extra["ood"] = {"features": feats(1000, 4.0)}
    # Simes across tests: suits evidence concentrated in one test out of seven
    plain = StatisticalDetector(across="simes").fit(fit, y_fit).calibrate(cal, y_cal)
    knn = KNNEvidence(k=10, chunk_size=512)
    det = StatisticalDetector(across="simes", extra_evidence=[knn])
    det.fit(fit, y_fit, extra=extra["fit"])
    det.calibrate(cal, y_cal, extra=extra["cal"])
    assert not hasattr(knn, "bank_")  # the caller's evidence object is left untouched
    assert det.test_names[-1] == "knn"
    labels = ood_labels(2000, 1000)
    auc_plain = roc_auc_score(labels, np.r_[plain.score(test, y_test), plain.score(ood, y_ood)])
    s = np.r_[det.score(test, y_test, extra["test"]), det.score(ood, y_ood, extra["ood"])]
    assert auc_plain < 0.6
    assert roc_auc_score(labels, s) > 0.95
    p = det.pvalues(test, y_test, extra["test"])
    expected = math.floor(0.05 * 1001) / 1001
    assert cp_contains(int((p <= 0.05).sum()), len(p), expected, level=0.9999)
    with pytest.raises(KeyError, match="features"):
        det.score(test, y_test)


def test_knn_distance_matches_brute_force():
    rng = np.random.default_rng(8)
    bank, q = rng.standard_normal((300, 5)), rng.standard_normal((40, 5))
    ev = KNNEvidence(k=7, chunk_size=16).fit(bank)
    b = bank / np.linalg.norm(bank, axis=1, keepdims=True)
    qq = q / np.linalg.norm(q, axis=1, keepdims=True)
    d = np.sort(np.linalg.norm(qq[:, None] - b[None], axis=2), axis=1)[:, 6]
    np.testing.assert_allclose(ev.score(q), d, atol=1e-5)


def test_neuralfp_flags_shifted_data_with_consistent_bands():
    rng = np.random.default_rng(9)
    fit, _ = synthetic_stats(rng, 2000)
    cal, _ = synthetic_stats(rng, 1000)
    test, _ = synthetic_stats(rng, 1000)
    ood, _ = synthetic_stats(rng, 1000, shift=3.0)
    nfp = NeuralFP(epochs=8, seed=0).fit(fit).calibrate(cal)
    s_id, s_ood = nfp.score(test), nfp.score(ood)
    assert roc_auc_score(ood_labels(1000, 1000), np.r_[s_id, s_ood]) > 0.95
    assert nfp.decide(ood, 0.05).mean() > 0.5
    assert nfp.decide(test, 0.05).mean() < 0.1
    lower, upper = nfp.bands(0.05)
    err = nfp.errors(ood)
    np.testing.assert_array_equal(
        ((err < lower) | (err > upper)).any(axis=1), nfp.decide(ood, 0.05)
    )
    again = NeuralFP(epochs=8, seed=0).fit(fit).calibrate(cal)
    np.testing.assert_array_equal(again.score(ood), s_ood)  # seeded: deterministic


# ----------------------------------------------------------------------------- real data
@pytest.fixture(scope="module")
def mnist_stats(world):
    """Per-channel stats of MNIST / Fashion-MNIST through the shared test LeNet, extracted by
    the package's own extractor (the harness is not involved)."""
    net = world.model

    def run(images):
        return extract_layer_stats(
            net, net.monitored_layers(), images.split(1000), return_logits=True
        )

    cal_x = world.tensors["calibration"][0]
    half = len(cal_x) // 2
    parts = {
        "fit": run(world.tensors["fit"][0]),
        "cal": run(cal_x[:half]),
        "test": run(cal_x[half:]),  # exchangeable with "cal": same pool, disjoint
        "ood": run(world.tensors["ood"][0]),
    }
    return net, parts


def test_extractor_matches_manual_reductions(mnist_stats):
    net, _ = mnist_stats
    x = torch.randn(5, 1, 28, 28)
    stats, logits = extract_layer_stats(net, net.monitored_layers(), [x], return_logits=True)
    assert set(extract_layer_stats(net, net.monitored_layers(), [x])) == {"conv1", "conv2", "fc1"}
    lenet = net.model  # the LeNet inside the harness network
    with torch.no_grad():
        a1 = lenet.conv1(x)
        a2 = lenet.conv2(lenet.pool1(a1))
        f = lenet.fc1(lenet.pool2(a2))
        np.testing.assert_allclose(logits, net(x).numpy(), rtol=1e-5)
    np.testing.assert_allclose(stats["conv1"]["max"], spatial_max(a1).numpy(), rtol=1e-6)
    np.testing.assert_allclose(stats["conv2"]["mean"], spatial_mean(a2).numpy(), rtol=1e-6)
    np.testing.assert_array_equal(stats["fc1"]["max"], f.numpy())  # N x C passes through
    assert stats["conv1"]["max"].shape == (5, 8) and stats["fc1"]["mean"].shape == (5, 128)
    assert all(not m._forward_hooks for m in net.monitored_layers().values())  # hooks removed


def test_mnist_vs_fashion_statistical_and_neuralfp(mnist_stats):
    _, parts = mnist_stats
    (fit, l_fit), (cal, l_cal), (test, l_test), (ood, l_ood) = (
        parts[k] for k in ("fit", "cal", "test", "ood")
    )
    labels = ood_labels(len(l_test), len(l_ood))
    for red in (("max",), ("mean",), ("max", "mean")):
        det = StatisticalDetector(reductions=red, min_class_reference=50)
        det.fit(fit, l_fit.argmax(1)).calibrate(cal, l_cal.argmax(1))
        s = np.r_[det.score(test, l_test.argmax(1)), det.score(ood, l_ood.argmax(1))]
        assert roc_auc_score(labels, s) > 0.95, red
        p = det.pvalues(test, l_test.argmax(1))
        k = int((p <= 0.05).sum())
        assert cp_contains(k, len(p), 0.05, level=0.999), (red, k / len(p))
    nfp = NeuralFP(epochs=8).fit(fit).calibrate(cal)
    s = np.r_[nfp.score(test), nfp.score(ood)]
    assert roc_auc_score(labels, s) > 0.9
    assert nfp.decide(ood, 0.05).mean() > 5 * nfp.decide(test, 0.05).mean()

"""DeLong's paired test and Holm's correction against their definitions and in simulation."""

from __future__ import annotations

import numpy as np
import pytest

from benchmark.pipeline.metrics import compute_metrics
from benchmark.stats import bootstrap as bs
from benchmark.stats import paired


def _brute(id_s: np.ndarray, ood_s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Components from their definition: psi(ood, id) = 1 above, 1/2 tied, 0 below."""
    psi = (ood_s[:, None] > id_s[None, :]) + 0.5 * (ood_s[:, None] == id_s[None, :])
    return psi.mean(axis=1), psi.mean(axis=0)


@pytest.mark.parametrize("seed", range(5))
def test_components_match_their_definition_and_the_auroc(seed) -> None:
    rng = np.random.default_rng(seed)
    id_s, ood_s = np.round(rng.normal(0, 1, 70), 1), np.round(rng.normal(1, 1, 40), 1)
    c = paired.components(id_s, ood_s)
    ood_ref, id_ref = _brute(id_s, ood_s)
    np.testing.assert_allclose(c.ood, ood_ref, atol=1e-12)
    np.testing.assert_allclose(c.id, id_ref, atol=1e-12)  # share of OOD above ID i
    assert c.auroc == pytest.approx(compute_metrics(id_s, ood_s)["auroc"], abs=1e-12)


def test_delong_standard_error_matches_the_bootstrap() -> None:
    rng = np.random.default_rng(0)
    id_s, ood_s = rng.normal(0, 1, 800), rng.normal(1, 1, 600)
    # against a constant detector (all ties: components 1/2, no variance) the paired SE is the
    # detector's own SE
    flat = {"id": np.zeros(800), "x": np.zeros(600)}
    se = paired.compare({"id": id_s, "x": ood_s}, flat, ["x"]).se
    boot = bs.resampled_metrics(id_s, ood_s, bs.draw(800, 2000, 0, "id"),
                                bs.draw(600, 2000, 0, "x"))["auroc"]
    assert se == pytest.approx(boot.std(), rel=0.1)


def _pair(rng, n, shift_a, shift_b, shared=1.0):
    """Two detectors of the same samples: a shared latent plus each its own noise."""
    lat_id, lat_ood = rng.normal(0, shared, n), rng.normal(0, shared, n)

    def det(shift):
        return {"id": lat_id + rng.normal(0, 1, n), "x": lat_ood + shift + rng.normal(0, 1, n)}
    return det(shift_a), det(shift_b)


def test_equal_detectors_are_rejected_about_five_percent_of_the_time() -> None:
    rng = np.random.default_rng(1)
    p = [paired.compare(*_pair(rng, 150, 1.0, 1.0), ["x"]).p for _ in range(300)]
    rate = float(np.mean(np.array(p) < 0.05))
    assert 0.02 <= rate <= 0.09, rate  # binomial sd 1.3 points around 5 %


def test_a_real_difference_is_found_and_signed() -> None:
    rng = np.random.default_rng(2)
    a, b = _pair(rng, 2000, 1.5, 1.0)
    c = paired.compare(a, b, ["x"])
    assert c.difference > 0 and c.z > 5 and c.p < 1e-6
    back = paired.compare(b, a, ["x"])
    assert back.difference == pytest.approx(-c.difference) and back.p == pytest.approx(c.p)


def test_identical_detectors_give_p_one() -> None:
    rng = np.random.default_rng(3)
    a = {"id": rng.normal(0, 1, 50), "x": rng.normal(1, 1, 50)}
    c = paired.compare(a, a, ["x"])
    assert (c.difference, c.se, c.p) == (0.0, 0.0, 1.0)
    scaled = {k: 2 * v + 1 for k, v in a.items()}  # same ranking, other scale
    assert paired.compare(a, scaled, ["x"]).p == 1.0


def test_mean_over_sets_shares_the_id_rows() -> None:
    """Over several sets the difference is the mean of per-set differences, and its variance
    counts the ID rows once (against a bootstrap of the mean with shared ID draws)."""
    rng = np.random.default_rng(4)
    n = 600
    id_a, id_b = rng.normal(0, 1, n), rng.normal(0, 1, n)
    a = {"id": id_a, "x": rng.normal(1, 1, n), "y": rng.normal(0.5, 1, n)}
    b = {"id": 0.5 * id_a + id_b, "x": rng.normal(1.2, 1, n), "y": rng.normal(0.4, 1, n)}
    c = paired.compare(a, b, ["x", "y"])
    single = [paired.compare(a, b, [s]).difference for s in ("x", "y")]
    assert c.difference == pytest.approx(np.mean(single))
    draws = {s: bs.draw(n, 1500, 0, s) for s in ("id", "x", "y")}
    boot = np.mean([bs.resampled_metrics(a["id"], a[s], draws["id"], draws[s])["auroc"]
                    - bs.resampled_metrics(b["id"], b[s], draws["id"], draws[s])["auroc"]
                    for s in ("x", "y")], axis=0)
    assert c.se == pytest.approx(boot.std(), rel=0.12)


def test_different_samples_are_refused() -> None:
    with pytest.raises(ValueError, match="different samples"):
        paired.compare({"id": np.zeros(3), "x": np.ones(3)}, {"id": np.zeros(4), "x": np.ones(3)},
                       ["x"])


def test_holm_against_a_hand_computed_example() -> None:
    # sorted 0.005, 0.01, 0.03, 0.04 times 4, 3, 2, 1 -> 0.02, 0.03, 0.06, 0.04 -> monotone
    got = paired.holm([0.01, 0.04, 0.03, 0.005])
    np.testing.assert_allclose(got, [0.03, 0.06, 0.06, 0.02])
    assert paired.holm([0.9, 0.8]).tolist() == [1.0, 1.0]
    assert len(paired.holm([])) == 0

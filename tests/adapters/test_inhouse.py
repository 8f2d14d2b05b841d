"""The in-house adapter's quirks on the shared test world: every shipped config builds and
scores, the calibration split is the one the runner hands over (never the fit split), the
fallback hold-out warns, explanations, clear errors. The package itself: ``tests/inhouse``."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import yaml

from adapters.base import Consumes, DetectorError
from adapters.inhouse import available, build, extra_arrays
from adapters.registry import build_detector
from benchmark.inhouse.conformal import ConformalCalibrator

REPO = Path(__file__).resolve().parents[2]


def test_every_shipped_config_builds_and_scores(world):
    assert available() == ["Grouped", "MaSF", "NeuralFP", "Statistical"]
    specs = {}
    for path in sorted((REPO / "configs" / "detector" / "inhouse").glob("*.yaml")):
        specs.update(yaml.safe_load(path.read_text()).get("detectors", {}))
    assert {"inhouse_stat_max", "inhouse_stat_knn", "inhouse_neuralfp", "inhouse_grouped",
            "inhouse_masf", "inhouse_openpcs_class"} <= set(specs)
    for key, spec in specs.items():
        assert key.startswith("inhouse_") and spec["library"] == "inhouse"
        params = dict(spec["params"])
        if spec["name"] == "NeuralFP":
            params["epochs"] = 2  # training length is not what this test is about
        det = build_detector(spec["library"], spec["name"], params)
        reads_layers = "layers" in str(params.get("groups", "layers"))
        assert det.consumes is (Consumes.LAYER_STATS if reads_layers else Consumes.FEATURES)
        det.fit(world.fit, None, calibration=world.calibration)
        scores = det.score(world.id, None)
        assert scores.shape == (len(world.id),) and np.isfinite(scores).all(), key


@pytest.mark.parametrize("params", [{"reductions": ["mean"]},
                                    {"reductions": ["mean"], "extra_evidence": ["knn"]},
                                    {"reductions": ["max"], "calibrate_per_class": True}])
def test_p_values_are_calibrated_on_the_calibration_split(world, params):
    """The conformal p-values rank the test statistic among the calibration split's
    statistics: recomputed independently here; the fit split would give other p-values."""
    det = build("Statistical", params).fit(world.fit, None, calibration=world.calibration)
    inner = det.detector

    def stat(r):
        return inner.statistic(r.layer_stats, r.predictions, extra_arrays(r))

    def calibrated_on(split):
        return ConformalCalibrator(inner.calibrate_per_class, inner.min_class_calibration).fit(
            stat(split), split.predictions).pvalues(stat(world.id), world.id.predictions)

    ours = det.pvalues(world.id)
    np.testing.assert_array_equal(ours, calibrated_on(world.calibration))
    assert not np.array_equal(ours, calibrated_on(world.fit))


def test_without_a_calibration_split_a_seeded_share_of_fit_is_held_out(world):
    det = build("Statistical", {"reductions": ["mean"]})
    with pytest.warns(UserWarning, match="holding out a seeded 20%"):
        det.fit(world.fit, None)
    assert det.decide(world.id, 0.05).dtype == bool
    assert len(det.explain(world.id).records()) == len(world.id)


def test_clear_errors(world):
    with pytest.raises(DetectorError, match="valid"):
        build("Statistical", {"bogus": 1})
    with pytest.raises(DetectorError, match="valid"):
        build("Mahalanobis", {})
    with pytest.raises(DetectorError, match=r"call fit\(\) before score"):
        build("Statistical", {}).pvalues(world.id)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        build("Statistical", {"extra_evidence": ["energy"]}).fit(world.fit, None,
                                                                 calibration=world.calibration)

"""The anomaly track end to end, as a user runs it, on small real CIFAR-10 subsets: the
one-class protocol's splits hold only what they should, every detector gets a threshold
picked on validation, FCDD writes its heatmaps, and a backbone without a checkpoint is refused
with a message (exit 2)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from benchmark.pipeline import shifts
from benchmark.pipeline.data import ImageSet
from benchmark.pipeline.metrics import metrics_at_validation_threshold, youden_threshold
from tests.commands import ood_bench

TINY = ["pair=oneclass_cifar10", "pair.normal_class=1", "backbone=resnet20_tin",
        "pair.data.calibration_size=300", "pair.data.validation_size=100",
        "pair.data.fit_size=500", "pair.data.max_id_test=200", "pair.data.max_ood=400",
        "pair.validation.size=200", "bootstrap.resamples=50", "store=null"]


@pytest.fixture(scope="module")
def oneclass_run(root, tmp_path_factory):
    out = tmp_path_factory.mktemp("oneclass")
    proc = ood_bench([*TINY, "detector=anomaly/all", "detectors.anomaly_ae.params.epochs=1",
                      "detectors.anomaly_dae.params.epochs=1",
                      "detectors.anomaly_vae.params.epochs=1",
                      "detectors.anomaly_fcdd.params.epochs=1", f"hydra.run.dir={out}"],
                     tmp_path_factory.mktemp("oneclass-cache"), root)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


def test_one_class_splits_hold_only_their_classes(oneclass_run) -> None:
    m = json.loads((oneclass_run / "manifest.json").read_text())
    sets = m["datasets"]
    assert sets["fit"]["n"] == 500 and sets["validation"]["n"] == 100
    assert sets["validation_ood"]["n"] == 200 and sets["ood/anomalies"]["n"] == 400
    assert m["backbone"]["id_test_accuracy"] is None  # a feature extractor: no accuracy


def test_every_detector_has_validation_threshold_metrics(oneclass_run) -> None:
    frame = pd.read_csv(oneclass_run / "metrics.csv")
    assert set(frame.detector) >= {"anomaly_ocsvm", "anomaly_lof",
                                   "anomaly_ae", "anomaly_dae", "anomaly_vae", "anomaly_fcdd"}
    assert (frame.status == "ok").all(), frame[frame.status != "ok"][["detector", "error"]]
    for col in ("accuracy_at_val", "precision_at_val", "recall_at_val", "f1_at_val"):
        assert frame[col].between(0, 1).all(), col
    assert frame.id_accuracy.isna().all()


def test_fcdd_heatmaps_are_written(oneclass_run) -> None:
    assert (oneclass_run / "anomaly" / "anomaly_fcdd" / "heatmaps.png").stat().st_size > 10_000
    text = (oneclass_run / "analysis_anomaly.md").read_text()
    assert "anomaly_fcdd" in text and "anomaly_ae" not in text


def test_a_backbone_without_checkpoint_is_refused(root, tmp_path) -> None:
    proc = ood_bench([*TINY, "backbone=resnet20", "detector=anomaly/ocsvm",
                      f"hydra.run.dir={tmp_path}"], tmp_path / "cache", root)
    assert proc.returncode == 2
    assert "anomaly-detection pair" in proc.stderr and "Traceback" not in proc.stderr


def test_youden_threshold_is_picked_on_validation_and_applied_to_test() -> None:
    val_id, val_ood = np.array([0.0, 1.0, 2.0]), np.array([3.0, 4.0])
    assert youden_threshold(val_id, val_ood) == 3.0
    out = metrics_at_validation_threshold(np.array([0.0, 3.5]), np.array([2.0, 5.0]), val_id,
                                          val_ood)
    # flagged: 3.5 (ID, false alarm) and 5.0 (anomaly); 2.0 missed
    assert out["precision_at_val"] == 0.5 and out["recall_at_val"] == 0.5
    assert out["accuracy_at_val"] == 0.5


def _set(images: np.ndarray) -> ImageSet:
    return ImageSet("x", "test", images, np.zeros(len(images), dtype=np.int64), "test")


def test_grayscale_is_luma_and_changes_the_identity() -> None:
    rgb = np.zeros((2, 4, 4, 3), np.uint8)
    rgb[0, ..., 0] = 255
    g = shifts.grayscale(_set(rgb))
    assert g.images.shape == (2, 4, 4, 1) and int(g.images[0, 0, 0, 0]) == 76  # 0.299 * 255
    assert g.content_hash != _set(rgb).content_hash


def test_upload_corruptions_are_seeded_and_damage_every_image() -> None:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (60, 32, 32, 1), dtype=np.uint8)
    a = shifts.shifted(_set(images), "mixed_uploads", seed=3).images
    b = shifts.shifted(_set(images), "mixed_uploads", seed=3).images
    np.testing.assert_array_equal(a, b)
    assert (a != images).reshape(60, -1).any(1).all()
    dropped = shifts.line_dropout(images, 5, np.random.default_rng(1))
    changed_rows = (dropped != images).any(axis=(2, 3))
    assert changed_rows.any() and not changed_rows.all()

"""A checkpoint records the rows it was trained on; a run that would calibrate or test on any of
them is refused with a message (the committed ResNet-20 with data.split_seed=1 had 4,495 of its
5,000 calibration images in its training set, and nothing said so)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from benchmark.pipeline.data import ImageSet
from benchmark.pipeline.errors import DataError
from benchmark.pipeline.training_rows import check_held_out, rows_record, training_indices
from tests.commands import SMALL, ood_bench


def _parent(n: int = 100) -> ImageSet:
    rng = np.random.default_rng(0)
    return ImageSet("toy", "train", rng.integers(0, 255, (n, 4, 4, 1), dtype=np.uint8),
                    rng.integers(0, 3, n), "memory")


def test_rows_round_trip_and_overlaps_are_counted() -> None:
    parent = _parent()
    train = parent.take(np.arange(10, 70), split="train")
    record = rows_record(train, {"seed": 3, "calibration_size": 30})
    np.testing.assert_array_equal(training_indices(record), np.arange(10, 70))
    assert record["count"] == 60 and record["split"]["seed"] == 3
    assert len(json.dumps(record)) < 400  # a bit mask, not a list of indices
    fine = {"fit": parent.take(np.arange(20, 40)), "calibration": parent.take(np.arange(70, 100)),
            "id_test": _parent(10)}  # another parent: never counted
    assert check_held_out(record, fine, "x.pt") == {"fit": 20, "calibration": 0}
    bad = {**fine, "calibration": parent.take(np.arange(60, 90))}
    with pytest.raises(DataError, match=r"x\.pt.*calibration: 10 of 30 images.*"
                                        r"data\.split_seed=3 data\.calibration_size=30"):
        check_held_out(record, bad, "x.pt")
    assert rows_record(parent) is None and check_held_out(None, bad, "x.pt") == {}
    edited = {**record, "count": 59}
    with pytest.raises(DataError, match="edited or damaged"):
        training_indices(edited)


def test_a_run_on_another_split_of_the_checkpoint_is_refused(root, tmp_path) -> None:
    """Train through the CLI (the cache records the rows), then reuse that checkpoint with
    another data.split_seed: exit 2 and the message; with its own split the manifest counts
    the fit rows it was trained on and no held-out ones."""
    cache = tmp_path / "cache"
    small = [*SMALL, "data.train_size=1500", "data.fit_size=500", "data.calibration_size=500",
             "detector=pytorch_ood/msp", "analysis.inhouse=false", "bootstrap.resamples=0"]
    first = ood_bench([*small, f"hydra.run.dir={tmp_path / 'a'}"], cache, root)
    assert first.returncode == 0, first.stderr[-2000:]
    manifest = json.loads((tmp_path / "a" / "manifest.json").read_text())
    rows = manifest["backbone"]["training"]["train_rows"]
    assert rows["count"] == 1500 and "mask_b64" not in rows  # the mask stays beside the file
    assert manifest["backbone"]["training_rows_in_splits"] == {"fit": 500, "calibration": 0}
    checkpoint = manifest["backbone"]["checkpoint"]
    other = ood_bench([*small, "data.split_seed=1", f"backbone.checkpoint={cache / checkpoint}"
                       if not checkpoint.startswith("/") else f"backbone.checkpoint={checkpoint}",
                       f"hydra.run.dir={tmp_path / 'b'}"], cache, root)
    assert other.returncode == 2, other.stderr[-2000:]
    assert "was trained on images this run holds out" in other.stderr
    assert "data.split_seed=0" in other.stderr and "Traceback" not in other.stderr, other.stderr

"""Tuning on a validation split: grids, the pick, the validation sets kept out of the tests."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from hydra import compose, initialize_config_dir

from benchmark.config_groups import CONFIG_DIR
from benchmark.pipeline.data import DataError
from benchmark.runner import tuning
from benchmark.runner.prepare import VALIDATION, VALIDATION_OOD, load_sets
from tests.commands import SMALL, ood_bench


def test_grid_varies_the_last_parameter_fastest() -> None:
    assert tuning.grid({"t": [1, 10], "e": [0.1, 0.2]}) == [
        {"t": 1, "e": 0.1}, {"t": 1, "e": 0.2}, {"t": 10, "e": 0.1}, {"t": 10, "e": 0.2}]
    with pytest.raises(ValueError, match="non-empty list"):
        tuning.grid({"t": []})
    spec = {"library": "x", "name": "y", "params": {"a": 1, "b": 2}, "search": {"a": [3]}}
    assert tuning.without_search(spec) == {"library": "x", "name": "y",
                                           "params": {"a": 1, "b": 2}}
    assert tuning.tuned_spec(spec, {"a": 3})["params"] == {"a": 3, "b": 2}


def _cfg(root, overrides):
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        return compose("config", overrides=[f"data.root={root}", *overrides])


def test_ood_validation_rows_leave_the_test_set_of_their_split(root) -> None:
    """Drawn from the split an OOD test set uses, the validation rows are taken out of it."""
    cfg = _cfg(root, ["tune=true", "pair.validation.split=test", "data.validation_size=100",
                      "data.max_ood=null", "data.max_id_test=100"])
    sets, splits, _ = load_sets(cfg)
    val, test = sets[VALIDATION_OOD], sets["ood/fashionmnist"]
    assert len(val) == 1000 and len(test) == 10_000 - 1000
    assert not set(val.indices) & set(test.indices)
    assert len(sets[VALIDATION]) == 100 and len(splits.calibration) == 4900
    assert not set(splits.validation) & (set(splits.calibration) | set(splits.train))
    untuned, _, _ = load_sets(_cfg(root, ["data.max_ood=null", "data.max_id_test=100"]))
    assert VALIDATION not in untuned and len(untuned["ood/fashionmnist"]) == 10_000


def test_tuning_without_ood_validation_images_is_a_message(root) -> None:
    cfg = _cfg(root, ["tune=true", "~pair.validation", "data.max_id_test=100"])
    with pytest.raises(DataError, match="has no `validation"):
        load_sets(cfg)


def test_a_tuned_run_picks_by_validation_auroc(root, tmp_path) -> None:
    cache = tmp_path / "cache"
    args = [*SMALL, "detector=pytorch_ood/react", "data.validation_size=300"]
    plain = ood_bench([*args, f"hydra.run.dir={tmp_path / 'plain'}"], cache, root)
    assert plain.returncode == 0, plain.stderr[-3000:]
    proc = ood_bench([*args, "tune=true", f"hydra.run.dir={tmp_path / 'tuned'}"], cache, root)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = pd.read_csv(tmp_path / "tuned" / "metrics.csv")
    m = json.loads((tmp_path / "tuned" / "manifest.json").read_text())
    record = m["tuning"]["pytorch_ood_react"]
    assert [t["params"]["percentile"] for t in record["trials"]] == [0.85, 0.9, 0.95, 0.99]
    aurocs = [t["validation_auroc"] for t in record["trials"]]
    assert record["picked"] == record["trials"][int(np.argmax(aurocs))]["params"]
    tuned = rows[rows.detector == "pytorch_ood_react_tuned"]
    assert len(tuned) == 3 and (tuned.status == "ok").all()
    assert (tuned.tuned_from == "pytorch_ood_react").all()
    assert json.loads(tuned.tuned_params.iloc[0]) == record["picked"]
    assert m["splits"]["validation"] == 300 and m["datasets"][VALIDATION_OOD]["n"] == 1000
    # the default rows are the untuned run's: same test sets, same backbone, same scores
    before = pd.read_csv(tmp_path / "plain" / "metrics.csv")
    default = rows[rows.detector == "pytorch_ood_react"]
    assert default.auroc.tolist() == before.auroc.tolist()
    if record["picked"]["percentile"] == 0.9:  # the default value won: same scores
        assert tuned.auroc.tolist() == default.auroc.tolist()


def test_every_search_space_builds_at_every_point(openood) -> None:
    """A grid point is a valid constructor argument set of its detector (a typo in a search
    key, or a value the library refuses, fails here, not in a long tuned run)."""
    from adapters.registry import build_detector
    from benchmark.config_groups import detector_entries, group_options, is_suite

    searched = 0
    for option in group_options("detector"):
        if is_suite("detector", option):
            continue
        for spec in detector_entries(option).values():
            if not spec.get("search"):
                continue
            searched += 1
            for point in tuning.grid(spec["search"]):
                params = {**(spec.get("params") or {}), **point}
                build_detector(spec["library"], spec["name"], params)
    # ReAct, ASH, DICE, SCALE, ODIN, KNN, ViM in both libraries; the anomaly track's OCSVM, LOF;
    # the in-house grouped detector and OpenPCS-Class
    assert searched == 18

"""The robustness study on a tiny real sweep: ok / error / changed verdicts, typed results,
and the report's rendering of the study's CSV."""

from __future__ import annotations

import sys
import types

import numpy as np
import pandas as pd
import pytest

from adapters.base import LogitDetector
from benchmark.report import robustness as robustness_part
from benchmark.results import collect
from benchmark.studies.robustness import PROBES
from benchmark.studies.robustness.data import run_config
from benchmark.studies.robustness.probes import ProbeSettings, probe_detectors, results_frame
from tests import markdown

SETTINGS = ProbeSettings(n_id=100, n_ood=100, fit_cap=300, n_perturbed=12, n_constant_each=4)


class _NaNScores(LogitDetector):
    """Deliberately broken: NaN for every sample."""

    def fit(self, id_fit, network, calibration=None):
        self.fitted_ = True
        return self

    def score(self, split, network):
        return np.full(len(split), np.nan)


class _BatchDependent(_NaNScores):
    """Max logit minus the mean of its chunk: depends on which batch a sample lands in."""

    def score(self, split, network):
        top = split.logits.max(axis=1).astype(np.float64)
        out = np.empty_like(top)
        for start in range(0, len(top), network.batch_size):
            chunk = top[start:start + network.batch_size]
            out[start:start + network.batch_size] = chunk - chunk.mean()
        return out


class _Unseeded(_NaNScores):
    """Max logit plus fresh noise on every fit: two identical runs differ."""

    def fit(self, id_fit, network, calibration=None):
        self.offset_ = np.random.default_rng().normal()
        self.fitted_ = True
        return self

    def score(self, split, network):
        return -split.logits.max(axis=1) + self.offset_


@pytest.fixture(scope="module")
def results(sweep):
    """Every probe of a sound detector, three deliberately broken ones (a library given by
    module path) and one that does not exist."""
    module = types.ModuleType("fake_probe_adapter")
    kinds = {"nan": _NaNScores, "batch": _BatchDependent, "unseeded": _Unseeded}
    module.build = lambda name, params: kinds[name](name, **params)
    module.available = lambda: sorted(kinds)
    sys.modules["fake_probe_adapter"] = module
    try:
        specs = {
            "msp": {"library": "pytorch_ood", "name": "MaxSoftmax", "params": {}},
            "broken": {"library": "fake_probe_adapter", "name": "nan", "params": {}},
            "batchy": {"library": "fake_probe_adapter", "name": "batch", "params": {}},
            "unseeded": {"library": "fake_probe_adapter", "name": "unseeded", "params": {}},
            "unknown": {"library": "pytorch_ood", "name": "NoSuchDetector", "params": {}},
        }
        coll = collect(sweep)
        return probe_detectors(run_config(coll.runs[0], SETTINGS), specs, SETTINGS)
    finally:
        del sys.modules["fake_probe_adapter"]


def test_verdicts_ok_error_changed(results) -> None:
    m = {(r.label, r.probe): r for r in results}
    assert len(results) == 5 * len(PROBES)
    for p in PROBES:
        assert m["broken", p].status == "error" and "NaN" in m["broken", p].detail
        assert m["unknown", p].status == "error" and "NoSuchDetector" in m["unknown", p].detail
        assert m["unknown", p].raised is True
    for p in ("constant_images", "tiny_fit", "missing_class", "batch_invariance",
              "determinism"):
        assert m["msp", p].status == "ok", (p, m["msp", p].detail)
    assert 0.5 < m["msp", "tiny_fit"].auroc <= 1 and m["msp", "tiny_fit"].full_fit_auroc > 0.5
    assert 0 <= m["msp", "constant_images"].flagged_share <= 1
    assert m["msp", "determinism"].bit_identical and m["msp", "determinism"].max_delta == 0
    assert m["batchy", "batch_invariance"].status == "changed"
    assert m["batchy", "batch_invariance"].max_delta > 0
    assert m["batchy", "determinism"].status == "ok"
    assert m["unseeded", "determinism"].status == "changed"
    assert m["unseeded", "batch_invariance"].status == "ok"
    # NaN pixels go through the real extraction: MSP of NaN logits is NaN
    assert m["msp", "nan_inf_pixels"].status == "error"
    assert m["msp", "nan_inf_pixels"].raised is False


def test_the_report_renders_the_csv(results, tmp_path) -> None:
    frame = results_frame(results)
    frame.to_csv(tmp_path / "robustness.csv", index=False)
    back = robustness_part.read(tmp_path)
    matrix = robustness_part.write_markdown(tmp_path, back)
    (rows,) = markdown.tables(matrix)
    by = {r["detector"]: r for r in rows}
    title = {p: t for p, (t, _) in PROBES.items()}
    tiny = frame[(frame.label == "msp") & (frame.probe == "tiny_fit")].iloc[0]
    assert by["msp"][title["tiny_fit"]] == f"ok ({tiny.auroc:.3f})"
    assert by["batchy"][title["batch_invariance"]].startswith("changed [")
    assert by["broken"][title["determinism"]].startswith("error (NaN out) [")
    assert by["unknown"][title["tiny_fit"]].startswith("error (raised) [")
    summary = robustness_part.summary(back)
    assert summary.loc["pytorch_ood", "probes"] == 2 * len(PROBES)
    text = (tmp_path / "robustness.md").read_text()
    assert all(f"``{p}``" in text for p in PROBES)
    assert len(pd.read_csv(tmp_path / "robustness.csv")) == len(results)


def test_a_probe_run_on_several_backbones_is_one_cell(results, tmp_path) -> None:
    """Seeds of a sweep probe each backbone: one cell per (detector, probe), ok only when every
    backbone is, the AUROC their mean; a failure on one says on how many."""
    frame = results_frame(results)
    second = frame.copy()
    tiny = (second.label == "msp") & (second.probe == "tiny_fit")
    second.loc[tiny, "auroc"] = second.loc[tiny, "auroc"] - 0.1
    det = (second.label == "msp") & (second.probe == "determinism")
    second.loc[det, ["status", "detail"]] = ["error", "returned 3 NaN scores of 60"]
    both = pd.concat([frame, second], ignore_index=True)
    (rows,) = markdown.tables(robustness_part.markdown(both))
    by = {r["detector"]: r for r in rows}
    title = {p: t for p, (t, _) in PROBES.items()}
    assert len(rows) == frame.label.nunique()
    mean = (frame.loc[tiny, "auroc"].iloc[0] + second.loc[tiny, "auroc"].iloc[0]) / 2
    assert by["msp"][title["tiny_fit"]] == f"ok ({mean:.3f})"
    assert by["msp"][title["determinism"]].startswith("error (NaN out) [")
    assert "1 of 2 backbones: returned 3 NaN" in robustness_part.markdown(both)

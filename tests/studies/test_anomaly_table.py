"""The anomaly table from real (tiny) runs: a swept protocol's per-class AUROCs and their
mean, the published value beside with the difference, and a protocol whose data is not here
(MVTec-AD offline) left out with the reason instead of stopping the table."""

from __future__ import annotations

import pandas as pd
import pytest

from benchmark.studies.paper_tables import build

TINY = ["backbone=resnet20_tin", "pair.data.calibration_size=300",
        "pair.data.validation_size=100", "pair.data.fit_size=300", "pair.data.max_id_test=200",
        "pair.data.max_ood=300", "pair.validation.size=100", "bootstrap.resamples=50",
        "store=null"]


def test_anomaly_table_sweeps_classes_and_leaves_out_missing_data(root, tmp_path,
                                                                  monkeypatch) -> None:
    monkeypatch.setenv("OOD_BENCH_DATA_ROOT", str(root))
    monkeypatch.setenv("OOD_BENCH_CACHE", str(tmp_path / "cache"))
    spec = {
        "name": "tiny_anomaly", "kind": "anomaly",
        "protocols": {
            "oneclass": {"overrides": ["pair=oneclass_cifar10"], "ood": "anomalies",
                         "sweep": {"key": "pair.normal_class", "values": [1, 8],
                                   "labels": ["automobile", "ship"]},
                         "published": {"source": "a stand-in", "values": {
                             "OCSVM": {"auroc": 0.9}}}},
            "mvtec": {"overrides": ["pair=mvtec_ad"], "ood": "defects", "optional": True,
                      "sweep": {"key": "pair.category", "values": ["bottle", "cable"]}},
        },
        "detectors": {"OCSVM": "anomaly/ocsvm", "LOF": "anomaly/lof"},
    }
    md = build("tiny_anomaly", TINY, out_root=tmp_path / "tables", spec=spec,
               runs_root=tmp_path / "runs")
    long = pd.read_csv(tmp_path / "tables" / "tiny_anomaly.csv")
    assert set(long.protocol) == {"oneclass"} and set(long.run.astype(str)) == {"1", "8"}
    runs = [pd.read_csv(tmp_path / "tables" / "tiny_anomaly_runs" / f"oneclass_{c}" /
                        "metrics.csv") for c in (1, 8)]
    ours = [r[r.detector == "anomaly_ocsvm"].auroc.iloc[0] for r in runs]
    text = md.read_text()
    mean, sd = pd.Series(ours).mean(), pd.Series(ours).std()
    assert f"{mean:.4f} ± {sd:.4f}" in text
    assert f"0.900 ({mean - 0.9:+.4f})" in text  # published beside, with the difference
    section = text.split("## mvtec", 1)[1]
    assert section.lstrip().startswith("Not run here:") and "data=download" in section


@pytest.fixture(autouse=True)
def _quiet_progress(monkeypatch) -> None:
    monkeypatch.setenv("TQDM_DISABLE", "1")

"""``metrics.md`` shows each metric of ``metrics.csv`` under its own header."""

from __future__ import annotations

from benchmark.runner.tables import COLUMNS, markdown, to_frame
from tests import markdown as md

ROWS = [
    {"library": "l", "detector": "d1", "ood_dataset": "a", "ood_group": "near", "auroc": 0.91,
     "aupr_in": 0.81, "aupr_out": 0.71, "fpr95tpr": 0.61, "fit_seconds": 1.234,
     "score_seconds": 0.5, "status": "ok", "error": ""},
    {"library": "l", "detector": "d2", "ood_dataset": "b", "ood_group": "far",
     "auroc": float("nan"), "aupr_in": float("nan"), "aupr_out": float("nan"),
     "fpr95tpr": float("nan"), "fit_seconds": 2.0, "score_seconds": float("nan"),
     "status": "failed", "error": "Boom: it broke"},
]


def test_every_cell_under_its_header_and_failures_listed() -> None:
    frame = to_frame(ROWS)
    assert list(frame.columns[:len(COLUMNS)]) == COLUMNS
    text = markdown(frame, "t", skipped={"svhn": "not here"})
    assert "higher = more OOD" in text
    (rows,) = md.tables(text)
    first, second = rows
    assert (first["auroc"], first["aupr_in"], first["aupr_out"], first["fpr95tpr"]) == (
        "0.9100", "0.8100", "0.7100", "0.6100")
    assert first["fit_seconds"] == "1.23" and first["ood_group"] == "near"
    assert second["auroc"] == "" and second["status"] == "failed"
    assert "- **d2** (b): Boom: it broke" in text and "- **svhn**: not here" in text


def test_intervals_in_brackets_after_their_metric() -> None:
    row = {**ROWS[0], "auroc_lo": 0.9012, "auroc_hi": 0.9187, "fpr95tpr_lo": 0.55,
           "fpr95tpr_hi": 0.66}
    text = markdown(to_frame([row, ROWS[1]]), "t")
    assert "95 % stratified-bootstrap interval" in text
    (rows,) = md.tables(text)
    assert rows[0]["auroc"] == "0.9100 [0.901, 0.919]"
    assert rows[0]["fpr95tpr"] == "0.6100 [0.550, 0.660]"
    assert rows[0]["aupr_in"] == "0.8100"  # no interval computed for it here
    assert rows[1]["auroc"] == ""
    assert "bootstrap interval" not in markdown(to_frame(ROWS), "t")


def test_skip_reasons_and_errors_name_no_machine_path() -> None:
    """Run folders get committed: data roots in a skip reason or an error are written
    portably (the repository as ``.``, the folder beside it as ``..``, home as ``~``)."""
    from pathlib import Path

    from benchmark.paths import REPO

    rows = [dict(ROWS[1], error=f"FileNotFoundError: {REPO}/configs/x.yaml")]
    reason = (f"not found under {REPO.parent}/shared/data, {Path.home()}/.cache/ood-bench. "
              f"Entry: {REPO}/configs/dataset/svhn.yaml")
    text = markdown(to_frame(rows), "t", skipped={"svhn": reason})
    assert str(REPO) not in text and str(Path.home()) + "/" not in text
    assert "under ../shared/data, ~/.cache/ood-bench. Entry: ./configs/dataset/svhn.yaml" in text
    assert "FileNotFoundError: ./configs/x.yaml" in text

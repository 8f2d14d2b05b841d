"""Harness metrics equal pytorch-ood's OODMetrics, including with heavily tied scores."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pytorch_ood.metrics import OODMetrics

from benchmark.pipeline.metrics import accuracy, compute_metrics


def reference(id_scores: np.ndarray, ood_scores: np.ndarray) -> dict[str, float]:
    m = OODMetrics()
    scores = torch.tensor(np.r_[id_scores, ood_scores])
    labels = torch.tensor(np.r_[np.zeros(len(id_scores)), -np.ones(len(ood_scores))]).long()
    m.update(scores, labels)
    out = m.compute()
    return {"auroc": out["AUROC"], "aupr_in": out["AUPR-IN"], "aupr_out": out["AUPR-OUT"],
            "fpr95tpr": out["FPR95TPR"]}


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("ties", ["none", "rounded", "few_levels"])
def test_matches_pytorch_ood(seed: int, ties: str) -> None:
    rng = np.random.default_rng(seed)
    id_scores = rng.normal(0, 1, 700)
    ood_scores = rng.normal(0.8, 1.3, 400)
    if ties == "rounded":
        id_scores, ood_scores = np.round(id_scores), np.round(ood_scores)
    elif ties == "few_levels":
        id_scores = rng.integers(0, 3, 700).astype(float)
        ood_scores = rng.integers(1, 4, 400).astype(float)
    ours = compute_metrics(id_scores, ood_scores)
    for key, value in reference(id_scores, ood_scores).items():
        assert ours[key] == pytest.approx(value, abs=1e-12), key


def test_perfect_and_inverted_separation() -> None:
    id_scores, ood_scores = np.zeros(50), np.ones(30)
    m = compute_metrics(id_scores, ood_scores)
    assert m["auroc"] == 1.0 and m["fpr95tpr"] == 0.0 and m["detection_accuracy"] == 1.0
    m = compute_metrics(ood_scores[:30] * 0 + 1, id_scores[:30] * 0)  # OOD scored lower: worst
    assert m["auroc"] == 0.0 and m["fpr95tpr"] == 1.0


def test_fpr95_counts_id_flagged_at_95_percent_tpr() -> None:
    # 20 OOD at 1..20, ID at 0.5 (below all OOD) and 10.5 (above 10 OOD): to detect 95 % of OOD
    # (19 of 20), the threshold must be <= 2, which flags the ID sample at 10.5 only.
    ood = np.arange(1, 21, dtype=float)
    m = compute_metrics(np.array([0.5, 10.5]), ood)
    assert m["fpr95tpr"] == 0.5


def test_fpr95_takes_the_first_cut_that_reaches_95_percent() -> None:
    """Exactly 95 % of OOD above a cut that also flags 4 of 10 ID: FPR 0.4 at that cut; the
    next cut down (every ID flagged) would say 1.0."""
    ood = np.r_[np.full(19, 10.0), 0.0]
    id_scores = np.r_[np.full(4, 10.0), np.full(6, -1.0)]
    m = compute_metrics(id_scores, ood)
    assert m["fpr95tpr"] == pytest.approx(0.4)
    # ties enter together: with ID tied to the OOD scores at the cut, they are all flagged
    tied = compute_metrics(np.r_[np.full(4, 10.0), np.full(6, 0.0)], ood)
    assert tied["fpr95tpr"] == pytest.approx(0.4)
    more = compute_metrics(np.r_[np.full(4, 10.0), np.full(6, 0.0)], np.r_[ood[:19], 0.0, 0.0])
    assert more["fpr95tpr"] == pytest.approx(1.0)  # 19 of 21 OOD = 90 %: the cut moves to 0


def test_aupr_in_and_out_are_not_interchangeable() -> None:
    """AUPR-In ranks ID as positive (low scores), AUPR-Out OOD (high scores)."""
    m = compute_metrics(np.array([0.0, 0.1, 0.2, 0.3, 0.9]), np.array([0.8, 1.0]))
    assert m["aupr_out"] != pytest.approx(m["aupr_in"])
    flipped = compute_metrics(-np.array([0.8, 1.0]), -np.array([0.0, 0.1, 0.2, 0.3, 0.9]))
    assert flipped["aupr_in"] == pytest.approx(m["aupr_out"])
    assert flipped["aupr_out"] == pytest.approx(m["aupr_in"])


def test_youden_threshold_metrics() -> None:
    m = compute_metrics(np.array([0.0, 0.1, 0.2, 0.9]), np.array([0.8, 0.95, 1.0]))
    # best cut flags >= 0.8: all 3 OOD, 1 ID (0.9) -> precision 3/4, recall 1
    assert m["detection_threshold"] == 0.8
    assert m["detection_precision"] == pytest.approx(0.75)
    assert m["detection_recall"] == 1.0
    assert m["detection_accuracy"] == pytest.approx(6 / 7)
    assert m["detection_f1"] == pytest.approx(2 * 0.75 / 1.75)


def test_detection_scores_at_the_youden_cut_by_hand() -> None:
    # the best cut (J = 1 - 3/4) flags >= 0.3: all 3 OOD and the ID at 0.5, 0.9, 1.0, so
    # precision 3/6, recall 1, F1 2/3
    m = compute_metrics(np.array([0.5, 1.0, 0.1, 0.9]), np.array([0.3, 0.4, 0.8]))
    assert m["detection_threshold"] == 0.3
    assert m["detection_precision"] == pytest.approx(0.5) and m["detection_recall"] == 1.0
    assert m["detection_f1"] == pytest.approx(2 / 3)
    # two cuts tie at J = 0.5: the first (highest) one, >= 0.99, flags half of the OOD and no ID
    m = compute_metrics(np.array([0.0, 0.1, 0.2, 0.9, 0.95, 0.97]),
                        np.array([1.0, 0.99, 0.3, 0.25]))
    assert m["detection_threshold"] == 0.99
    assert m["detection_recall"] == pytest.approx(0.5) and m["detection_precision"] == 1.0
    assert m["detection_f1"] == pytest.approx(2 / 3)
    assert m["detection_accuracy"] == pytest.approx(8 / 10)


def test_nan_and_empty_scores_are_rejected_with_the_reason() -> None:
    with pytest.raises(ValueError, match=r"scores contain NaN \(2 non-finite values\)"):
        compute_metrics(np.array([0.0, np.nan]), np.array([1.0, np.inf]))
    with pytest.raises(ValueError, match=r"scores contain NaN \(1 non-finite values\)"):
        compute_metrics(np.array([0.0, 1.0]), np.array([np.nan, 2.0]))
    assert compute_metrics(np.array([0.0]), np.array([1.0]))["auroc"] == 1.0  # one each is enough
    for id_scores, ood_scores in (([], [1.0]), ([1.0], [])):
        with pytest.raises(ValueError, match="need at least one ID and one OOD score"):
            compute_metrics(np.asarray(id_scores, dtype=float), np.asarray(ood_scores))


def test_accuracy() -> None:
    assert accuracy(np.array([1, 2, 3]), np.array([1, 2, 0])) == pytest.approx(2 / 3)


def _infinite_cases() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(0)
    return {
        "constant +inf": (np.full(50, np.inf), np.full(30, np.inf)),
        "constant -inf": (np.full(50, -np.inf), np.full(30, -np.inf)),
        "constant": (np.full(50, 2.0), np.full(30, 2.0)),
        "mixed": (np.r_[rng.normal(0, 1, 45), [np.inf] * 3, [-np.inf] * 2],
                  np.r_[rng.normal(1, 1, 25), [np.inf] * 5]),
        "ood all +inf": (rng.normal(0, 1, 50), np.full(30, np.inf)),
        "id all -inf": (np.full(40, -np.inf), rng.normal(0, 1, 20)),
    }


@pytest.mark.filterwarnings("ignore:AUTC is undefined")
@pytest.mark.parametrize("case", list(_infinite_cases()))
def test_infinite_scores_tie_by_value_as_pytorch_ood_and_sklearn(case: str) -> None:
    """Tied infinities are one threshold (a constant +inf detector is chance, 0.5, not 0.0);
    the other metrics match pytorch-ood's and AUROC sklearn's."""
    from sklearn.metrics import roc_auc_score

    id_scores, ood_scores = _infinite_cases()[case]
    ours = compute_metrics(id_scores, ood_scores)
    for key, value in reference(id_scores, ood_scores).items():
        assert ours[key] == pytest.approx(value, abs=1e-12), (case, key)
    labels = np.r_[np.zeros(len(id_scores)), np.ones(len(ood_scores))]
    finite = np.nan_to_num(np.r_[id_scores, ood_scores], posinf=1e300, neginf=-1e300)
    assert ours["auroc"] == pytest.approx(roc_auc_score(labels, finite), abs=1e-12), case
    if case.startswith("constant"):
        assert ours["auroc"] == 0.5

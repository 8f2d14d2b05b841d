"""The detector contract as checks anyone can run on an adapter (scikit-learn's
``check_estimator`` idea): ``tests/adapters/test_contract.py`` runs them over every detector of
every registered library, and a third-party adapter can run them on its own detectors.

Each check builds detectors with ``make()`` (a fresh, unfitted detector each call) and uses a
:class:`ContractData`; it raises AssertionError naming the guarantee that broke:

* fit then score gives one finite float64 per row;
* scoring before fit raises the harness error (:class:`~adapters.base.DetectorError`);
* the shared model is bit-identical after fit and score (weights, modes, hooks, grads);
* scores do not depend on batch size or row order;
* a refit starts from fresh state (fit on other data, then on the fit split = a fresh fit);
* same seed, same scores (two fresh detectors agree bit for bit).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from adapters.base import Detector, DetectorError
from benchmark.representations import Network, Representations

# batch-size / row-order invariance: max |difference| relative to the largest finite score
# (float32 matrix products change in the last bits with the batch shape)
BATCH_RTOL = 1e-5


@dataclass
class ContractData:
    """What the checks feed a detector. ``rows(index, batch_size)`` gives those rows of
    ``test`` (inputs attached, in that order) and ``network(batch_size)`` a Network on the
    shared model."""

    fit: Representations
    calibration: Representations
    other_fit: Representations
    test: Representations
    rows: Callable[[np.ndarray, int], Representations]
    network: Callable[[int], Network]
    batch_size: int = 128
    seed: int = 0


def model_state(model: nn.Module) -> dict[str, Any]:
    """Everything a detector could change on a model it was handed."""
    return {
        "state": {k: v.detach().clone() for k, v in model.state_dict().items()},
        "training": [m.training for m in model.modules()],
        "requires_grad": [p.requires_grad for p in model.parameters()],
        "grads": [p.grad is None for p in model.parameters()],
        "hooks": [(len(m._forward_hooks), len(m._forward_pre_hooks), len(m._backward_hooks))
                  for m in model.modules()],
        "devices": [p.device for p in model.parameters()],
    }


def assert_model_unchanged(before: dict[str, Any], model: nn.Module, who: str) -> None:
    after = model_state(model)
    for key in ("training", "requires_grad", "grads", "hooks", "devices"):
        assert before[key] == after[key], f"{who} changed the shared model's {key}"
    for k, v in before["state"].items():
        assert torch.equal(v, after["state"][k]), f"{who} changed the shared model's {k}"


def _fit(det: Detector, data: ContractData, fit: Representations, net: Network) -> Detector:
    det.fit(fit, net, calibration=data.calibration)
    return det


def check_score_before_fit(make: Callable[[], Detector], data: ContractData) -> None:
    det = make()
    try:
        det.score(data.test, data.network(data.batch_size))
    except DetectorError:
        return
    except Exception as exc:  # noqa: BLE001 - the wrong error is the finding
        raise AssertionError(f"{det!r}: score() before fit() raised {type(exc).__name__} "
                             f"({exc}), not DetectorError") from exc
    raise AssertionError(f"{det!r}: score() before fit() returned scores")


def check_fit_then_score(make: Callable[[], Detector], data: ContractData
                         ) -> tuple[Detector, np.ndarray]:
    """Fit and score on the shared model: the fitted detector and its scores (one finite
    float64 per test row)."""
    net = data.network(data.batch_size)
    before = model_state(net.model)
    det = _fit(make(), data, data.fit, net)
    scores = det.score(data.test, net)
    assert_model_unchanged(before, net.model, repr(det))
    assert isinstance(scores, np.ndarray) and scores.dtype == np.float64, (
        f"{det!r}: scores are {type(scores).__name__} {getattr(scores, 'dtype', '')}, "
        "not float64")
    assert scores.shape == (len(data.test),), f"{det!r}: scores of shape {scores.shape}"
    assert np.isfinite(scores).all(), f"{det!r}: {int((~np.isfinite(scores)).sum())} " \
                                      "non-finite scores"
    return det, scores


def _assert_same(a: np.ndarray, b: np.ndarray, what: str, rtol: float = 0.0) -> None:
    if rtol == 0.0:
        assert np.array_equal(a, b), f"{what}: max |difference| {np.max(np.abs(a - b)):.3g}"
        return
    scale = float(np.max(np.abs(a[np.isfinite(a)]))) if np.isfinite(a).any() else 1.0
    delta = float(np.max(np.abs(a - b))) if len(a) else 0.0
    assert delta <= rtol * max(scale, 1e-12), (
        f"{what}: max |difference| {delta:.3g} (max |score| {scale:.3g})")


def check_batch_and_order(det: Detector, data: ContractData, reference: np.ndarray,
                          other_batch: int = 37) -> None:
    """The fitted ``det`` scores shuffled rows in batches of ``other_batch`` as it scored them
    in order (``reference``)."""
    perm = np.random.default_rng(data.seed).permutation(len(data.test))
    shuffled = det.score(data.rows(perm, other_batch), data.network(other_batch))
    _assert_same(reference[perm], np.asarray(shuffled, dtype=np.float64),
                 f"{det!r}: scores depend on batch size or row order", BATCH_RTOL)


def check_refit_is_fresh(make: Callable[[], Detector], data: ContractData,
                         reference: np.ndarray) -> None:
    """Fit on other data, then on the fit split: the scores of a fresh fit."""
    net = data.network(data.batch_size)
    det = _fit(make(), data, data.other_fit, net)
    _fit(det, data, data.fit, net)
    _assert_same(reference, det.score(data.test, net),
                 f"{det!r}: a refit keeps state from the earlier fit")


def check_same_seed_same_scores(make: Callable[[], Detector], data: ContractData,
                                reference: np.ndarray) -> None:
    net = data.network(data.batch_size)
    det = _fit(make(), data, data.fit, net)
    _assert_same(reference, det.score(data.test, net),
                 f"{det!r}: two fresh fits with the same seed score differently")


CHECKS = ("score_before_fit", "fit_then_score", "batch_and_order", "refit_is_fresh",
          "same_seed_same_scores")


def check_detector(make: Callable[[], Detector], data: ContractData,
                   deviations: Mapping[str, str] | None = None) -> None:
    """Every check of the contract on one detector (three fits when it passes: the refit
    instance is also a second fresh detector with the same seed).

    ``deviations`` (``LIBRARY_INFO.known_deviations[detector]``: check name -> why) lists
    checks the method cannot pass by its nature; those must fail (a deviation that no longer
    shows is reported too, so the record stays true).
    """
    deviations = dict(deviations or {})
    unknown = set(deviations) - set(CHECKS)
    assert not unknown, f"unknown checks in known_deviations: {sorted(unknown)}"

    def expect(check: str, run: Callable[[], Any]) -> None:
        if check not in deviations:
            run()
            return
        try:
            run()
        except AssertionError:
            return
        raise AssertionError(f"{check} passes now; remove it from known_deviations "
                             f"({deviations[check]})")

    expect("score_before_fit", lambda: check_score_before_fit(make, data))
    det, reference = check_fit_then_score(make, data)
    expect("batch_and_order", lambda: check_batch_and_order(det, data, reference))

    def refit() -> None:
        try:
            check_refit_is_fresh(make, data, reference)
        except AssertionError:
            check_same_seed_same_scores(make, data, reference)  # nondeterminism says so here
            raise

    expect("refit_is_fresh", refit)

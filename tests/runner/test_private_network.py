"""Each detector gets its own copy of the backbone, made only when it touches the model: a
detector reading cached representations costs no copy, one that mutates the model leaves the
backbone (and every other detector's copy) as it was."""

from __future__ import annotations

import copy
from types import SimpleNamespace

import torch

import benchmark.representations as reps_mod
from benchmark.runner import evaluate
from benchmark.runner.prepare import private_network


def _prep(world):
    return SimpleNamespace(
        backbone=SimpleNamespace(model=world.model), device=torch.device("cpu"),
        transform=SimpleNamespace(mean=None, std=None),
        reps={"fit": world.fit, "calibration": world.calibration, "id_test": world.id,
              "ood/x": world.ood}, scored_keys=["id_test", "ood/x"])


def _copies(monkeypatch, source) -> list[int]:
    """Counts the deep copies of ``source`` (not the inner calls a deep copy makes)."""
    made: list[int] = []
    real = copy.deepcopy

    def counted(obj, *args, **kwargs):
        if obj is source:
            made.append(1)
        return real(obj, *args, **kwargs)

    monkeypatch.setattr(reps_mod.copy, "deepcopy", counted)
    return made


def test_the_copy_is_made_on_first_use_and_is_the_detectors_own(world, monkeypatch) -> None:
    made = _copies(monkeypatch, world.model)
    net = private_network(_prep(world), 64)
    assert made == []
    own = net.model
    assert made == [1] and own is not world.model and not own.training and net.model is own
    before = [p.detach().clone() for p in world.model.parameters()]
    with torch.no_grad():
        for p in own.parameters():
            p.add_(1.0)
    assert all(torch.equal(a, b) for a, b in zip(before, world.model.parameters(), strict=True))
    assert net.fc is own.fc and net.num_classes == world.fit.num_classes


def test_a_detector_on_cached_logits_costs_no_copy_one_on_the_model_does(world,
                                                                        monkeypatch) -> None:
    made = _copies(monkeypatch, world.model)
    logits = evaluate.evaluate_detector({"library": "pytorch_ood", "name": "MaxSoftmax",
                                         "params": {}}, _prep(world), 64)
    assert not logits.errors and made == []
    odin = evaluate.evaluate_detector({"library": "pytorch_ood", "name": "ODIN",
                                       "params": {"eps": 0.002}}, _prep(world), 64)
    assert not odin.errors and made == [1]

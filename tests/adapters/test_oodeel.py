"""Oodeel's quirks (the contract suite covers the rest, every Oodeel detector included):

* replayed scores equal Oodeel's own end-to-end scores on the images (Oodeel called by hand on
  the world's LeNet, as a user without the harness would), and the live-model path equals it
  too; the measured differences are in results/oodeel/equivalence.md
  (``python scripts/oodeel_equivalence.py``);
* Oodeel hooks the model it is given, the adapter never hands it the shared one;
* its metric helper agrees with the harness's metrics;
* its mutable-default list does not grow across ReAct fits.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
from torch.utils.data import DataLoader, TensorDataset

from adapters import registry
from adapters.base import Consumes, DetectorError
from adapters.oodeel.specs import AGGREGATORS, SPECS

MONITORED = ["conv1", "conv2", "fc1"]  # the LeNet's monitored layers, as module names
RAW_BATCH = 100  # no batch of one row for the 1,000 test rows (SHE squeezes its batch)


@dataclass(frozen=True)
class Case:
    """One detector: the adapter's name and params, and the layers Oodeel is given by hand."""

    name: str
    params: dict[str, Any] = field(default_factory=dict)
    layers: tuple[str, ...] = ()
    consumes: Consumes = Consumes.LOGITS

    @property
    def id(self) -> str:
        extra = ",".join(f"{k}={v}" for k, v in self.params.items())
        return f"{self.name}[{extra}]" if extra else self.name


CASES = [
    *(Case(n) for n in ("MLS", "MSP", "Energy", "Entropy", "GEN")),
    *(Case(n, consumes=Consumes.FEATURES) for n in ("ReAct", "ASH", "SCALE")),
    Case("DKNN", layers=("fc1",), consumes=Consumes.FEATURES),
    Case("VIM", layers=("fc1",), consumes=Consumes.FEATURES),
    *(Case(n, {"eps": 0.0}, ("fc1",), Consumes.FEATURES) for n in ("Mahalanobis", "RMDS", "SHE")),
    Case("Mahalanobis", {"eps": 0.0, "layers": "monitored", "aggregator": "fisher"},
         tuple(MONITORED), Consumes.LAYER_STATS),
    Case("DKNN", {"layers": "monitored", "aggregator": "mean"}, tuple(MONITORED),
         Consumes.LAYER_STATS),
    # the live model: input perturbations and Gram matrices
    Case("ODIN", consumes=Consumes.MODEL),
    Case("Mahalanobis", layers=("fc1",), consumes=Consumes.MODEL),
    Case("Gram", layers=tuple(MONITORED), consumes=Consumes.MODEL),
]


def raw_oodeel_scores(world, case: Case) -> np.ndarray:
    """Oodeel used by hand on the images: its method, the model, data loaders."""
    import oodeel.aggregator
    import oodeel.methods

    spec = SPECS[case.name]
    args = {**spec.flags, **{k: v for k, v in case.params.items()
                             if k not in ("layers", "aggregator")}}
    if "aggregator" in case.params:
        args["aggregator"] = getattr(oodeel.aggregator, AGGREGATORS[case.params["aggregator"]])()
    det = getattr(oodeel.methods, spec.cls)(**args)
    model = copy.deepcopy(world.model.model).eval()  # the LeNet a user hands Oodeel
    x, y = world.tensors["fit"]
    det.fit(model, DataLoader(TensorDataset(x, y), batch_size=RAW_BATCH),
            feature_layers_id=list(case.layers), head_layer_id="fc")
    xt, yt = world.tensors["test"]
    scores, _ = det.score(DataLoader(TensorDataset(xt, yt), batch_size=RAW_BATCH))
    return np.asarray(scores, np.float64)


def adapter_scores(world, case: Case, **extra: Any) -> tuple[np.ndarray, Consumes]:
    det = registry.build_detector("oodeel", case.name, {**case.params, **extra})
    det.fit(world.fit, world.network(), calibration=world.calibration)
    return det.score(world.test, world.network()), det.consumes


def relative_difference(a: np.ndarray, b: np.ndarray) -> float:
    """max |a - b| over the largest |score| (float32 sums change in the last bits)."""
    return float(np.max(np.abs(a - b)) / max(1.0, np.max(np.abs(b))))


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_adapter_equals_oodeel_end_to_end(case: Case, world, oodeel) -> None:
    ours, consumes = adapter_scores(world, case)
    assert consumes == case.consumes
    theirs = raw_oodeel_scores(world, case)
    # measured: bit-identical (results/oodeel/equivalence.md); the bound leaves room for
    # float32 sums that another thread count or batch shape orders differently
    assert relative_difference(ours, theirs) <= 1e-6, (case.id, relative_difference(ours, theirs))


LIVE_TWINS = [Case("Mahalanobis", {"eps": 0.0}, consumes=Consumes.FEATURES),
              Case("DKNN", {"layers": "monitored", "aggregator": "mean"},
                   consumes=Consumes.LAYER_STATS)]


@pytest.mark.parametrize("case", LIVE_TWINS, ids=[c.id for c in LIVE_TWINS])
def test_replay_equals_the_live_model_path(case: Case, world, oodeel) -> None:
    replay, kind = adapter_scores(world, case)
    live, live_kind = adapter_scores(world, case, mode="model")
    assert (kind, live_kind) == (case.consumes, Consumes.MODEL)
    assert relative_difference(replay, live) <= 1e-4


def test_oodeel_hooks_the_model_it_is_given_and_the_shared_model_stays_clean(world, oodeel):
    """Measured quirk: Oodeel leaves forward hooks on the model after fit + score."""
    import oodeel.methods

    model = copy.deepcopy(world.model.model).eval()  # the LeNet a user hands Oodeel
    x, y = world.tensors["fit"]
    det = oodeel.methods.Mahalanobis(eps=0.0)
    det.fit(model, DataLoader(TensorDataset(x, y), batch_size=RAW_BATCH),
            feature_layers_id=["fc1"], head_layer_id="fc")
    det.score(DataLoader(TensorDataset(*world.tensors["test"]), batch_size=RAW_BATCH))
    hooks = sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())
    assert hooks >= 2

    shared = world.model
    for case in CASES:
        adapter_scores(world, case)
    assert sum(len(m._forward_hooks) + len(m._forward_pre_hooks)
               for m in shared.modules()) == 0
    assert not any(p.grad is not None for p in shared.parameters())


def test_react_fits_do_not_grow_oodeel_mutable_default(world, oodeel) -> None:
    from oodeel.methods.base import OODBaseDetector

    for _ in range(2):
        adapter_scores(world, Case("ReAct"))
    assert OODBaseDetector._load_feature_extractor.__defaults__[0] == []


def test_oodeel_metric_helper_agrees_with_the_harness(world, oodeel) -> None:
    from oodeel.eval.metrics import bench_metrics

    from benchmark.pipeline.metrics import compute_metrics

    scores, _ = adapter_scores(world, Case("Energy"))
    id_s, ood_s = scores[:world.n_id], scores[world.n_id:]
    ours = compute_metrics(id_s, ood_s)
    theirs = bench_metrics((id_s, ood_s), metrics=["auroc", "fpr95tpr"], step=1)
    # Oodeel integrates the ROC over thresholds at every `step`-th percentile of the scores
    assert abs(theirs["auroc"] - ours["auroc"]) <= 0.002, (theirs, ours)
    assert abs(theirs["fpr95tpr"] - ours["fpr95tpr"]) <= 0.005, (theirs, ours)


def test_bad_params_are_messages(oodeel) -> None:
    with pytest.raises(DetectorError, match="unknown params"):
        registry.build_detector("oodeel", "Energy", {"tempreature": 1})
    with pytest.raises(DetectorError, match="fixed by the detector's name"):
        registry.build_detector("oodeel", "ReAct", {"use_react": False})
    with pytest.raises(DetectorError, match="cannot replay"):
        registry.build_detector("oodeel", "ODIN", {"mode": "replay"})
    with pytest.raises(DetectorError, match="aggregator"):
        registry.build_detector("oodeel", "DKNN", {"aggregator": "median"})
    with pytest.raises(DetectorError, match="no input perturbation|has none"):
        registry.build_detector("oodeel", "DKNN", {"norm_std": "network"})


def test_unknown_layer_names_the_valid_ones(world, oodeel) -> None:
    det = registry.build_detector("oodeel", "DKNN", {"layers": ["conv9"]})
    with pytest.raises(DetectorError, match=r"conv9.*valid: \['penultimate', 'conv1'"):
        det.fit(world.fit, world.network())


def test_only_the_fisher_aggregation_claims_a_level(world, oodeel) -> None:
    """Fisher aggregation scores 1 - p (Brown's chi-square p): flagging at alpha is score >=
    1 - alpha, and on ID data that rule's false-alarm rate is what the ablation table shows."""
    fisher = registry.build_detector("oodeel", "Mahalanobis", {
        "eps": 0.0, "layers": "monitored", "aggregator": "fisher"})
    assert fisher.level_threshold(0.05) == pytest.approx(0.95)
    for name, params in [("Mahalanobis", {"eps": 0.0}), ("Energy", {}),
                         ("DKNN", {"layers": "monitored", "aggregator": "mean"})]:
        assert registry.build_detector("oodeel", name, params).level_threshold(0.05) is None
    fisher.fit(world.fit, world.network())
    scores = fisher.score(world.test, world.network())
    assert scores.min() >= 0.0 and scores.max() <= 1.0  # 1 - p


def test_oodeel_vim_ignores_its_pseudo_origin(world, oodeel) -> None:
    """Measured quirk behind the ViM row of the agreement table: Oodeel 0.4.0's
    ``pca_origin='pseudo'`` checks ``layer_id == -1``, which its fit loop never passes, so the
    subspace is centred on the feature mean either way (pytorch-ood and OpenOOD use -pinv(W) b)."""
    center, _ = adapter_scores(world, Case("VIM", {"pca_origin": "center"}))
    pseudo, _ = adapter_scores(world, Case("VIM", {"pca_origin": "pseudo"}))
    assert np.array_equal(center, pseudo)

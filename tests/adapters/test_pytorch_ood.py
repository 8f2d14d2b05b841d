"""pytorch-ood's quirks, on the shared test world (MNIST LeNet vs Fashion-MNIST).

(a) equivalence: for every supported detector, adapter scores from cached representations equal
    pytorch-ood's own end-to-end ``fit(loader)`` / ``predict(x)`` on the same inputs;
(b) the traps: OpenMax batch policy, TemperatureScaling refit, private model copies, eval mode,
    no autograd, label coverage, clear errors;
(c) the table agrees with the configs; every detector beats chance (sign convention).

The guarantees every adapter owes (finite scores, no model mutation, fresh refits, batch and
order invariance, determinism) are checked once for all libraries in ``test_contract.py``.
"""

from __future__ import annotations

import copy
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import yaml
from pytorch_ood import detector as pod
from sklearn.metrics import roc_auc_score
from torch import nn

from adapters.base import Consumes, DetectorError
from adapters.pytorch_ood import LEFT_OUT, METHODS
from adapters.pytorch_ood import adapter as adapter
from benchmark.representations import Network, Representations
from tests.world import BATCH, N_TEST, TRANSFORM

ATOL = 1e-5
STD = TRANSFORM.std[0]  # the adapter steps ODIN-style perturbations in pixel units
# cheaper than the pinned defaults, only where the cost is linear in a sampling count
TEST_PARAMS: dict[str, dict] = {"MCD": {"samples": 8}}
NAMES = sorted(METHODS)
EVERY_CLASS = [n for n in NAMES if adapter.TABLE[n].labels == "every class"]


def _slices(n: int, size: int = BATCH) -> list[slice]:
    return [slice(s, min(n, s + size)) for s in range(0, n, size)]


@pytest.fixture(scope="module")
def runs() -> dict:
    return {}


def run_adapter(world, runs: dict, name: str) -> SimpleNamespace:
    """Fit on the fit split, score ID test and OOD; cached per module."""
    if name not in runs:
        net = world.network()
        det = adapter.build(name, TEST_PARAMS.get(name, {}))
        det.fit(world.fit, net)
        runs[name] = SimpleNamespace(det=det, id=det.score(world.id, net),
                                     ood=det.score(world.ood, net))
    return runs[name]


# ---------------------------------------------------------------------------------------------
# pytorch-ood end to end, written independently of the adapter's table


def _reference(name: str, m: nn.Module) -> tuple[object, dict]:
    """pytorch-ood instance built the documented end-to-end way on model ``m`` (the harness
    network; ``raw`` is the LeNet inside it, the module a user hands pytorch-ood)."""
    raw = m.model
    feats = m.forward_features

    def pooled(x):
        return m.forward_features(x)[:, :, None, None]

    def pooled_head(z):
        return m.forward_head(z.flatten(1))

    fc_only = "fc.weight".__eq__
    refs = {
        "MaxSoftmax": lambda: pod.MaxSoftmax(m, t=1.0),
        "MaxLogit": lambda: pod.MaxLogit(m),
        "EnergyBased": lambda: pod.EnergyBased(m, t=1.0),
        "Entropy": lambda: pod.Entropy(m),
        "GEN": lambda: pod.GEN(m, gamma=0.1, M=None),
        "WeightedEBO": lambda: pod.WeightedEBO(m, torch.ones(10)),
        "TemperatureScaling": lambda: pod.TemperatureScaling(m),
        "KLMatching": lambda: pod.KLMatching(m),
        "OpenMax": lambda: pod.OpenMax(m, tailsize=25, alpha=10, euclid_weight=1.0),
        "Mahalanobis": lambda: pod.Mahalanobis(feats),
        "RMD": lambda: pod.RMD(feats),
        "GMM": lambda: pod.GMM(feats, reg=1e-6),
        "KNN": lambda: pod.KNN(feats, k=50, normalize=True),
        "ViM": lambda: pod.ViM(feats, d=64, w=m.fc.weight, b=m.fc.bias),
        "DICE": lambda: pod.DICE(feats, w=m.fc.weight, b=m.fc.bias, p=0.7),
        "SHE": lambda: pod.SHE(feats, m.fc),
        "fDBD": lambda: pod.fDBD(feats, m.fc),
        "NCI": lambda: pod.NCI(feats, m.fc, alpha=0.0),
        "NNGuide": lambda: pod.NNGuide(feats, m.fc, k=10),
        "PNML": lambda: pod.PNML(feats, m.fc),
        "LTS": lambda: pod.LTS(feats, m.fc, p=0.05),
        "ReAct": lambda: pod.ReAct(pooled, pooled_head, percentile=0.9),
        "ASH": lambda: pod.ASH(pooled, pooled_head, variant="ash-s", percentile=0.65),
        "SCALE": lambda: pod.SCALE(pooled, pooled_head, percentile=0.65),
        "VRA": lambda: pod.VRA(pooled, pooled_head, 0.01, 0.99),
        "RankFeat": lambda: pod.RankFeat(m.forward_feature_maps, m.forward_from_feature_maps),
        # conv layers only: pytorch-ood's predict(x) takes spatial means of 4-D outputs
        "MultiMahalanobis": lambda: pod.MultiMahalanobis(
            [raw.conv1, nn.Sequential(raw.pool1, raw.conv2)]
        ),
        "Gram": lambda: pod.Gram(
            m.fc,
            [raw.conv1, nn.Sequential(raw.pool1, raw.conv2), nn.Sequential(raw.pool2, raw.fc1)],
            num_classes=10,
            num_poles_list=[1, 2, 3],
        ),
        "MahalanobisODIN": lambda: pod.MahalanobisODIN(feats, eps=0.002, norm_std=[STD]),
        "ODIN": lambda: pod.ODIN(m, eps=0.0014, temperature=1000.0, norm_std=[STD]),
        "GradNorm": lambda: pod.GradNorm(raw, param_filter=fc_only),
        "GradUncertainty": lambda: pod.GradUncertainty(raw, param_filter=fc_only),
        "NACUE": lambda: pod.NACUE(raw, [raw.conv1, raw.conv2, raw.fc1], 50, 100.0, 50,
                                   device="cpu"),
        "MCD": lambda: pod.MCD(m, samples=8, mode="var", batch_norm=True),
    }
    adapter_params = {"MultiMahalanobis": {"layers": ["conv1", "conv2"]}}
    return refs[name](), adapter_params.get(name, TEST_PARAMS.get(name, {}))


def _batches(world, split: str) -> list[tuple[torch.Tensor, torch.Tensor]]:
    x, y = world.tensors[split]
    return [(x[sl], y[sl]) for sl in _slices(len(x))]


def _reference_scores(world, name: str) -> dict[str, list[np.ndarray]]:
    m = copy.deepcopy(world.model).eval()
    det, _ = _reference(name, m)
    det.to("cpu")
    torch.manual_seed(0)  # Gram's held-out split; the adapter seeds with its `seed` param (0)
    if det.requires_fit:
        det.fit(_batches(world, "fit"))
    predict = det.predict
    if name == "OpenMax":
        # pytorch-ood's OpenMax is batch dependent; the adapter's policy equals it on batches
        # whose argmaxes cover every class, so each batch is scored next to one that does
        x_id, _ = world.tensors["id"]
        first = [int(np.flatnonzero(world.id.predictions == c)[0]) for c in range(10)]
        cover = x_id[first]  # one ID row predicted as each class
        assert sorted(m(cover).argmax(1).tolist()) == list(range(10))

        def predict(x):
            return det.predict(torch.cat([x, cover]))[: len(x)]

    out = {}
    for split in ("id", "ood"):
        torch.manual_seed(0)  # MCD's dropout masks, as the adapter does per scored split
        out[split] = [predict(x).detach().double().numpy() for x, _ in _batches(world, split)]
    return out


# ---------------------------------------------------------------------------------------------
# (a) equivalence


@pytest.mark.parametrize("name", NAMES)
def test_cached_path_equals_pytorch_ood_end_to_end(world, runs, name):
    _, params = _reference(name, copy.deepcopy(world.model))
    net = world.network()
    if params == TEST_PARAMS.get(name, {}):
        run = run_adapter(world, runs, name)
        scores = {"id": run.id, "ood": run.ood}
    else:
        det = adapter.build(name, params).fit(world.fit, net)
        scores = {split: det.score(getattr(world, split), net) for split in ("id", "ood")}
    ref = _reference_scores(world, name)
    for split, ours in scores.items():
        assert ours.dtype == np.float64 and ours.shape == (N_TEST,)
        np.testing.assert_allclose(ours, np.concatenate(ref[split]), rtol=0, atol=ATOL,
                                   err_msg=f"{name} on {split}")


def test_odin_step_is_in_pixel_units_like_openood(world):
    """norm_std: network divides the gradient by the backbone's input std (ODIN paper, OpenOOD)."""
    net = world.network()
    std = list(net.input_std)
    ours = adapter.build("ODIN", {}).fit(world.fit, net).score(world.id, net)
    x, _ = world.tensors["id"]
    gaps = {}
    for norm_std in (std, None):
        ref = pod.ODIN(copy.deepcopy(world.model).eval(), eps=0.0014, temperature=1000.0,
                       norm_std=norm_std)
        theirs = np.concatenate([ref.predict(x[sl]).detach().double().numpy()
                                 for sl in _slices(len(x))])
        gaps[str(norm_std)] = np.abs(ours - theirs).max()
    # scores are ~-0.1 at T = 1000: the step size shows in the 6th decimal
    assert gaps[str(std)] < 1e-8 and gaps["None"] > 1e-6, gaps


# ---------------------------------------------------------------------------------------------
# (b) traps


def test_openmax_trap_is_real_and_the_adapter_avoids_it(world, runs):
    """pytorch-ood's OpenMax on one-sample batches scores differently; the adapter's anchors
    make every row's score its own (batch invariance itself: the contract suite)."""
    det = run_adapter(world, runs, "OpenMax").det
    base = det.score(world.ood, world.network())
    tiny = det.score(world.ood.subset(np.arange(40)), world.network(batch_size=1))
    np.testing.assert_allclose(tiny, base[:40], rtol=0, atol=1e-12)
    lib = det.library_detector
    single = np.array(
        [lib.predict_logits(torch.tensor(world.ood.logits[i : i + 1])).item() for i in range(40)]
    )
    assert np.abs(single - base[:40]).max() > 1e-4


def test_temperature_scaling_refit_starts_fresh(world):
    net = world.network()
    det = adapter.build("TemperatureScaling", {})
    det.fit(world.fit, net)
    first_lib, first_t = det.library_detector, det.library_detector.t.item()
    det.fit(world.fit, net)
    assert det.library_detector is not first_lib
    assert det.library_detector.t.item() == first_t
    # what the adapter avoids: refitting the same pytorch-ood instance moves the temperature
    lib = pod.TemperatureScaling(None)
    logits, labels = torch.tensor(world.fit.logits), torch.tensor(world.fit.labels)
    t1 = lib.fit_logits(logits, labels).t.item()
    t2 = lib.fit_logits(logits, labels).t.item()
    assert t1 == pytest.approx(first_t)
    assert t2 != t1
    # a different fit split gives a different, fresh result
    det.fit(world.fit.subset(np.arange(500)), net)
    assert det.library_detector.t.item() != first_t


@pytest.mark.parametrize("name", [n for n in NAMES if adapter.TABLE[n].needs_model])
def test_detectors_use_a_private_model_copy(world, runs, name):
    private = run_adapter(world, runs, name).det._model
    original = world.model
    assert private is not None and private is not original
    shared = {p.data_ptr() for p in original.parameters()} & {
        p.data_ptr() for p in private.parameters()
    }
    assert not shared, f"{name} shares parameter storage with the network model"


def test_eval_mode_and_no_mutation_when_network_model_is_in_train_mode(world, runs):
    model = copy.deepcopy(world.model).train()  # dropout active if anyone forgot eval()
    net = world.network(model=model)
    for name in ("ReAct", "SHE", "ODIN"):
        a = adapter.build(name, {}).fit(world.fit, net).score(world.id, net)
        np.testing.assert_allclose(a, run_adapter(world, runs, name).id, rtol=0, atol=ATOL)
    assert model.training and all(m.training for m in model.modules())


@pytest.mark.parametrize(
    ("name", "method"),
    [
        ("MaxSoftmax", "predict_logits"),
        ("TemperatureScaling", "predict_logits"),
        ("KNN", "predict_features"),
        ("SHE", "predict_features"),
        ("ReAct", "predict_feature_maps"),
        ("RankFeat", "predict_feature_maps"),
        ("MultiMahalanobis", "predict_structured"),
    ],
)
def test_representation_detectors_score_without_autograd(world, name, method):
    net = world.network()
    det = adapter.build(name, {}).fit(world.fit, net)
    lib = det.library_detector
    original, grad_modes = getattr(lib, method), []

    def spy(*args, **kwargs):
        grad_modes.append(torch.is_grad_enabled())
        return original(*args, **kwargs)

    setattr(lib, method, spy)
    with torch.enable_grad():
        det.score(world.id, net)
    assert grad_modes and not any(grad_modes), f"{name}.{method} ran with autograd enabled"


@pytest.mark.parametrize("name", EVERY_CLASS)
def test_missing_class_in_fit_split_is_a_clear_error(world, name):
    keep = np.flatnonzero(world.fit.labels != 3)
    det = adapter.build(name, {})
    with pytest.raises(DetectorError, match=r"needs every class in the fit split; "
                       r"classes missing: \[3\]"):
        det.fit(world.fit.subset(keep), world.network())


def test_she_without_a_correct_prediction_of_a_class_is_a_clear_error(world):
    labels = world.fit.labels.copy()
    preds = world.fit.predictions
    labels[labels == 3] = 5  # no sample labelled 3 any more ...
    movers = np.flatnonzero((labels == 5) & (preds == 5))[:5]
    labels[movers] = 3  # ... except a few the model predicts as 5
    fit = Representations(world.fit.logits, world.fit.features, labels, name="relabelled")
    with pytest.raises(DetectorError, match="SHE needs at least one correctly classified"):
        adapter.build("SHE", {}).fit(fit, world.network())


def test_clear_errors(world):
    net = world.network()
    with pytest.raises(DetectorError, match="MCM is not supported: needs text embeddings"):
        adapter.build("MCM", {})
    with pytest.raises(DetectorError, match=r"unknown parameters \['kk'\]"):
        adapter.build("KNN", {"kk": 3})
    with pytest.raises(DetectorError, match="unknown pytorch-ood detector"):
        adapter.build("NoSuchDetector", {})
    no_dropout = Network(copy.deepcopy(world.model), torch.device("cpu"), 10, BATCH)
    no_dropout.model.model.fc1 = no_dropout.model.model.fc1[:-1]
    with pytest.raises(DetectorError, match="MCD needs dropout layers"):
        adapter.build("MCD", {}).fit(world.fit, no_dropout)
    no_maps = world.fit.subset(np.arange(len(world.fit)))
    no_maps.feature_maps = None
    with pytest.raises(DetectorError, match="RankFeat consumes feature maps"):
        adapter.build("RankFeat", {}).fit(no_maps, net)
    with pytest.raises(DetectorError, match="has no inputs"):
        adapter.build("ODIN", {}).fit(world.fit, net).score(no_maps, net)
    with pytest.raises(DetectorError, match="KNN fit failed: k=50 exceeds"):
        adapter.build("KNN", {}).fit(world.fit.subset(np.arange(20)), net)
    with pytest.raises(DetectorError, match=r"detector='bogus' is not one of"):
        adapter.build("ReAct", {"detector": "bogus"})
    with pytest.raises(DetectorError, match="ViM: d=128 must be between 1 and the feature "
                       "dimension 128"):  # pytorch-ood itself returns all-NaN scores here
        adapter.build("ViM", {"d": 128}).fit(world.fit, net)


# ---------------------------------------------------------------------------------------------
# (c) the table, the configs, the sign convention


def test_table_and_configs_agree():
    assert len(NAMES) == 34 and "MCM" in LEFT_OUT and sorted(adapter.TABLE) == NAMES
    exported = {n for n in pod.__all__ if isinstance(getattr(pod, n), type)}
    assert exported == set(NAMES) | set(LEFT_OUT)
    folder = Path(__file__).resolve().parents[2] / "configs" / "detector" / "pytorch_ood"
    seen = {}
    for spec in adapter.TABLE.values():
        text = (folder / f"{spec.short}.yaml").read_text()
        assert text.startswith("# @package _global_\n")
        entry = yaml.safe_load(text)["detectors"][f"pytorch_ood_{spec.short}"]
        assert entry["library"] == "pytorch_ood" and entry["name"] == spec.name
        pinned = entry["params"] or {}
        assert pinned == dict(spec.defaults), f"{spec.short}.yaml is not pinned to the table"
        seen[spec.short] = spec.name
    suites = {
        f: [line.split("/")[-1] for line in (folder / f"{f}.yaml").read_text().splitlines()
            if line.strip().startswith("- ")]
        for f in ("default", "all")
    }
    assert sorted(seen[s] for s in suites["all"]) == NAMES
    assert sorted(seen[s] for s in suites["default"]) == sorted(
        ["MaxSoftmax", "MaxLogit", "EnergyBased", "Entropy", "Mahalanobis", "KNN", "ViM", "ReAct",
         "ODIN"]
    )


@pytest.mark.parametrize("name", NAMES)
def test_consumes_what_the_table_says(name):
    rep = adapter.TABLE[name].representation
    if "inputs" in rep:
        kind = Consumes.MODEL
    else:
        kind = next((c for c in Consumes if rep.startswith(c.value)), None)
    det = adapter.build(name, {})
    assert det.consumes == kind, f"{name}: consumes {det.consumes}, table says {rep!r}"
    assert det.library == "pytorch_ood"


def _auroc(run: SimpleNamespace) -> float:
    return float(roc_auc_score(np.r_[np.zeros(N_TEST), np.ones(N_TEST)], np.r_[run.id, run.ood]))


@pytest.mark.parametrize("name", ["MaxSoftmax", "EnergyBased", "KNN", "ReAct", "ViM"])
def test_common_detectors_separate_mnist_from_fashion(world, runs, name):
    auroc = _auroc(run_adapter(world, runs, name))
    assert auroc > 0.8, f"{name}: AUROC {auroc:.3f} on MNIST vs Fashion-MNIST"


def test_every_detector_beats_chance(world, runs):
    """Guards against sign errors: higher must mean more OOD for every detector."""
    aurocs = {name: _auroc(run_adapter(world, runs, name)) for name in NAMES}
    weak = {n: round(a, 3) for n, a in aurocs.items() if a <= 0.6}
    assert not weak, f"AUROC at or below 0.6 (sign error?): {weak}"

"""OpenOOD's quirks, on the shared test world (MNIST LeNet vs Fashion-MNIST): feature replay
equals end to end, the conf sign, its metrics, the device shim, dataset registration, dim
clamping, clear errors.

Skipped where OpenOOD is not installed (it is not on PyPI; see docs/openood-install.md), or
failed where it is required (CI). The device shim and the loader need no OpenOOD. The
guarantees every adapter owes are in ``test_contract.py``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.metrics import average_precision_score, roc_auc_score

from adapters.base import DetectorError
from benchmark.pipeline.metrics import compute_metrics

N_TEST = 500
ALL_NAMES = [
    "msp", "odin", "iodin", "ebo", "mls", "gen", "klm", "temp_scaling", "mds", "rmds",
    "mds_ensemble", "gram", "gmm", "knn", "nnguide", "relation", "she", "vim", "residual",
    "dice", "react", "ash", "scale", "adascale_a", "adascale_l", "rankfeat", "gradnorm", "fdbd",
    "nci", "vra", "cfood", "openmax",
]
MODEL_ONLY = ["odin", "iodin", "gram", "gmm", "mds_ensemble", "adascale_a", "adascale_l"]
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny matrices: one intra-op thread is faster, and much faster on a shared, busy CPU
    (OpenMP threads spin-wait when cores are taken); restored after this module."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def oo(openood):
    return openood


@pytest.fixture(scope="module")
def splits(world):
    return {"fit": world.fit, "calibration": world.calibration, "id": world.id,
            "ood": world.ood}


@pytest.fixture(scope="module")
def network(world):
    return world.network()


def _run(oo, name: str, params: dict, splits, network) -> tuple[np.ndarray, np.ndarray]:
    from adapters.openood.compat import stubbed

    needs = oo.SPECS[name].needs
    if needs and stubbed(needs):
        with pytest.raises(DetectorError, match=f"{needs} is not installed"):
            oo.build(name, params).fit(splits["fit"], network)
        pytest.skip(f"openood {name} needs {needs}, which is not installed (checked: clear error)")
    det = oo.build(name, params)
    det.fit(splits["fit"], network, calibration=splits["calibration"])
    return det.score(splits["id"], network), det.score(splits["ood"], network)


# ------------------------------------------------------------------------------ sanity


def test_every_requested_postprocessor_is_supported(oo):
    from adapters.openood import available

    assert sorted(ALL_NAMES) == available()
    import openood.postprocessors as pps

    for name, spec in oo.SPECS.items():
        assert hasattr(pps, spec.cls), f"{name}: {spec.cls} missing from the pinned snapshot"


# ------------------------------------------------------------------------------ every method


@pytest.mark.parametrize("name", ALL_NAMES)
def test_every_postprocessor_beats_chance(oo, name, splits, network):
    """Guards against sign errors (OpenOOD's conf is higher = more ID; the adapter negates)."""
    s_id, s_ood = _run(oo, name, {}, splits, network)
    assert np.ptp(np.r_[s_id, s_ood]) > 0, "constant scores"
    auroc = roc_auc_score(np.r_[np.zeros(N_TEST), np.ones(N_TEST)], np.r_[s_id, s_ood])
    assert auroc > 0.5, f"{name}: AUROC {auroc:.3f} <= 0.5 (sign convention?)"


REPLAYABLE = [n for n in ALL_NAMES if n not in MODEL_ONLY]


@pytest.mark.parametrize("name", REPLAYABLE)
def test_feature_replay_equals_end_to_end(oo, name, splits, network):
    """Cached logits/features (or maps) through the head-only net == images through the model."""
    assert oo.SPECS[name].replay is not None
    replay_id, replay_ood = _run(oo, name, {"mode": "replay"}, splits, network)
    live_id, live_ood = _run(oo, name, {"mode": "model"}, splits, network)
    diff = max(np.abs(replay_id - live_id).max(), np.abs(replay_ood - live_ood).max())
    assert diff <= 1e-5, f"{name}: replay vs end-to-end max |diff| = {diff:.3g}"


@pytest.mark.parametrize("name", MODEL_ONLY)
def test_model_only_postprocessors_refuse_replay(oo, name):
    with pytest.raises(DetectorError, match="mode='model'"):
        oo.build(name, {"mode": "replay"})
    assert oo.build(name, {}).consumes.value == "model"


# ------------------------------------------------------------------------------ conventions


def test_conf_is_negated(oo, splits, network):
    s_id, _ = _run(oo, "msp", {}, splits, network)
    logits = torch.from_numpy(splits["id"].logits)
    expected = -torch.softmax(logits, dim=1).max(dim=1).values.double().numpy()
    np.testing.assert_allclose(s_id, expected, rtol=0, atol=1e-6)


def test_energy_matches_logsumexp(oo, splits, network):
    s_id, _ = _run(oo, "ebo", {"temperature": 2.0}, splits, network)
    logits = torch.from_numpy(splits["id"].logits).double()
    np.testing.assert_allclose(s_id, -2.0 * torch.logsumexp(logits / 2.0, 1).numpy(), atol=1e-4)


def _fpr_at_95_tpr(id_scores: np.ndarray, ood_scores: np.ndarray) -> float:
    """Independent FPR@95 (OOD positive, higher = more OOD): the largest threshold that still
    flags >= 95 % of the OOD rows, and the fraction of ID rows it flags."""
    ood_desc = np.sort(ood_scores)[::-1]
    k = int(np.ceil(0.95 * len(ood_desc)))
    threshold = ood_desc[k - 1]
    return float((id_scores >= threshold).mean())


def test_openood_metrics_agree_with_independent_ones(oo, splits, network):
    from openood.evaluators.metrics import compute_all_metrics

    s_id, s_ood = _run(oo, "knn", {}, splits, network)
    assert len(np.unique(np.r_[s_id, s_ood])) == 2 * N_TEST, "ties would make FPR95 ambiguous"
    conf = -np.r_[s_id, s_ood]  # back to OpenOOD's convention
    label = np.r_[splits["id"].labels, -np.ones(N_TEST, np.int64)]
    pred = np.r_[splits["id"].predictions, np.zeros(N_TEST, np.int64)]
    fpr, auroc, aupr_in, aupr_out, acc = compute_all_metrics(conf, label, pred)

    is_ood = np.r_[np.zeros(N_TEST), np.ones(N_TEST)]
    scores = np.r_[s_id, s_ood]
    assert auroc == pytest.approx(roc_auc_score(is_ood, scores), abs=1e-12)
    assert fpr == pytest.approx(_fpr_at_95_tpr(s_id, s_ood), abs=1e-12)
    assert acc == pytest.approx(float((splits["id"].predictions == splits["id"].labels).mean()))
    # AUPR: OpenOOD integrates the PR curve trapezoidally; average precision is a step sum, so
    # they agree only roughly, and AUPR-Out must be the OOD-positive one (un-swapped post v1.5)
    assert aupr_out == pytest.approx(average_precision_score(is_ood, scores), abs=0.02)
    assert aupr_in == pytest.approx(average_precision_score(1 - is_ood, -scores), abs=0.02)

    ours = compute_metrics(s_id, s_ood)
    assert ours["auroc"] == pytest.approx(auroc, abs=1e-12)
    assert ours["fpr95tpr"] == pytest.approx(fpr, abs=1e-12)
    assert ours["aupr_in"] == pytest.approx(aupr_in, abs=1e-9)
    assert ours["aupr_out"] == pytest.approx(aupr_out, abs=1e-9)


# ------------------------------------------------------------------------------ machinery


def test_device_shim_redirects_and_restores_after_an_error():
    from adapters.openood.device import device_shim

    originals = (torch.Tensor.cuda, torch.nn.Module.cuda, torch.ones, torch.tensor,
                 torch.cuda.FloatTensor)
    in_dict = "cuda" in vars(torch.Tensor)
    with pytest.raises(RuntimeError, match="boom"):
        with device_shim("cpu"):
            assert torch.zeros(2).cuda().device.type == "cpu"
            assert torch.ones(1, device="cuda").device.type == "cpu"
            assert torch.nn.Linear(2, 2).cuda().weight.device.type == "cpu"
            assert torch.cuda.FloatTensor([1.0, 2.0]).dtype == torch.float32
            raise RuntimeError("boom")
    assert (torch.Tensor.cuda, torch.nn.Module.cuda, torch.ones, torch.tensor,
            torch.cuda.FloatTensor) == originals
    assert ("cuda" in vars(torch.Tensor)) == in_dict


def test_dataset_tables_are_restored(oo, splits, network):
    from openood.postprocessors.info import num_classes_dict
    from openood.preprocessors.transform import normalization_dict

    before = (dict(num_classes_dict), {k: list(v) for k, v in normalization_dict.items()})
    _run(oo, "odin", {"input_std": [0.3081]}, splits, network)
    assert (dict(num_classes_dict), {k: list(v) for k, v in normalization_dict.items()}) == before


def test_fresh_postprocessor_per_fit(oo, splits, network):
    det = oo.build("mds", {})
    det.fit(splits["calibration"], network)
    first = det.postprocessor_
    det.fit(splits["fit"], network)
    assert det.postprocessor_ is not first
    fresh = oo.build("mds", {}).fit(splits["fit"], network)
    np.testing.assert_array_equal(det.score(splits["id"], network),
                                  fresh.score(splits["id"], network))


def test_vim_dim_is_clamped_or_rejected(oo, splits, network):
    det = oo.build("vim", {}).fit(splits["fit"], network)  # YAML dim 256 >= 128 features
    assert det.effective_args_["dim"] == 64
    with pytest.raises(DetectorError, match="smaller than the feature dimension"):
        oo.build("vim", {"dim": 128}).fit(splits["fit"], network)
    ok = oo.build("vim", {"dim": 32}).fit(splits["fit"], network)
    assert ok.effective_args_["dim"] == 32


def test_bad_names_and_params_are_clear(oo):
    with pytest.raises(DetectorError, match="unknown OpenOOD postprocessor"):
        oo.build("nope", {})
    with pytest.raises(DetectorError, match="not supported"):
        oo.build("cider", {})
    with pytest.raises(DetectorError, match="unknown params"):
        oo.build("knn", {"k": 5})
    det = oo.build("knn", {"K": 5})
    with pytest.raises(DetectorError, match=r"call fit\(\) before score"):
        det.score(None, None)


def test_missing_class_is_reported(oo, splits, network):
    keep = np.flatnonzero(splits["fit"].labels != 3)
    with pytest.raises(DetectorError, match=r"classes missing: \[3\]"):
        oo.build("mds", {}).fit(splits["fit"].subset(keep), network)


def test_live_model_needs_inputs(oo, splits, network):
    det = oo.build("odin", {})
    with pytest.raises(DetectorError, match="Representations.inputs"):
        det.fit(splits["fit"].subset(np.arange(50)), network)


def test_loader_rechunks_to_exact_batches():
    from adapters.openood.loaders import BatchLoader

    x, y = torch.arange(250.0).view(250, 1), torch.arange(250)
    source = lambda: ((x[s:s + 100], y[s:s + 100]) for s in range(0, 250, 100))  # noqa: E731
    loader = BatchLoader(source, 250, 64, "t")
    batches = list(loader)
    assert [len(b["data"]) for b in batches] == [64, 64, 64, 58] and len(loader) == 4
    assert len(iter(loader)) == 4 and loader.batch_size == 64 and len(loader.dataset) == 250
    assert torch.equal(torch.cat([b["label"] for b in batches]), y)
    assert torch.equal(batches[0]["data"], batches[0]["data_aux"])


# ------------------------------------------------------------------------------ configs


def test_hydra_configs_cover_every_postprocessor():
    import yaml

    folder = REPO / "configs" / "detector" / "openood"
    for name in ALL_NAMES:
        cfg = yaml.safe_load((folder / f"{name}.yaml").read_text())
        entry = cfg["detectors"][f"openood_{name}"]
        search = entry.pop("search", None)
        assert cfg == {"detectors": {f"openood_{name}": {
            "library": "openood", "name": name, "params": {}}}}
        yml = REPO / "adapters" / "openood" / "postprocessor_configs" / f"{name}.yml"
        assert yml.exists()
        if search:  # a tuning grid names arguments the postprocessor has
            args = yaml.safe_load(yml.read_text())["postprocessor"]["postprocessor_args"]
            assert set(search) <= set(args), (name, set(search) - set(args))
    defaults = yaml.safe_load((folder / "all.yaml").read_text())["defaults"]
    assert defaults == [f"/detector/openood/{n}" for n in ALL_NAMES]  # includable elsewhere

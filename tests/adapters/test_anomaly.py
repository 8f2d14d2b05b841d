"""The anomaly track's detectors on real data (the test world: MNIST fit, MNIST vs
Fashion-MNIST test): each separates them, training is seeded and resumes bit for bit, FCDD's
heatmaps are where its map is. The contract suite covers the rest."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from adapters import registry
from adapters.anomaly import models
from adapters.base import DetectorError
from benchmark.pipeline.metrics import compute_metrics
from benchmark.representations import Representations


def _auroc(world, det) -> float:
    scores = det.score(world.test, world.network())
    return compute_metrics(scores[: world.n_id], scores[world.n_id:])["auroc"]


def _blob(n: int, d: int, seed: int, spread: float = 1.0, shift: float = 0.0) -> Representations:
    rng = np.random.default_rng(seed)
    feats = (shift + spread * rng.normal(size=(n, d)) * np.linspace(0.1, 10, d)).astype(
        np.float32)  # features on very different scales: standardisation must handle them
    return Representations(logits=np.zeros((n, 2), np.float32), features=feats,
                           labels=np.zeros(n, dtype=np.int64))


@pytest.mark.parametrize(("name", "params"), [("OCSVM", {"nu": 0.1}), ("LOF", {"n_neighbors": 20})])
def test_shallow_detectors_score_rows_outside_the_fit_cloud_higher(name, params) -> None:
    det = registry.build_detector("anomaly", name, params).fit(_blob(1000, 16, 0), None)
    id_scores = det.score(_blob(300, 16, 1), None)
    wide = det.score(_blob(300, 16, 2, spread=2.0), None)
    assert compute_metrics(id_scores, wide)["auroc"] > 0.95


@pytest.mark.parametrize(("name", "params", "floor"), [
    ("LOF", {"n_neighbors": 20}, 0.7),  # on the world LeNet's features (near OOD for it)
    ("AE", {"epochs": 2}, 0.8),
    ("DAE", {"epochs": 2}, 0.8),
    ("VAE", {"epochs": 2}, 0.8),
    ("FCDD", {"epochs": 8}, 0.9),  # 2 epochs (32 steps) leave it inverted: 0.05
])
def test_each_detector_separates_mnist_from_fashion_mnist(world, name, params, floor) -> None:
    det = registry.build_detector("anomaly", name, params).fit(world.fit, world.network())
    assert _auroc(world, det) > floor


def test_unknown_parameter_is_a_detector_error_naming_the_valid_ones() -> None:
    with pytest.raises(DetectorError, match="valid: .*latent"):
        registry.build_detector("anomaly", "AE", {"latnet": 3})


def test_interrupted_training_resumes_to_the_same_weights(world, tmp_path) -> None:
    x = models.gather(world.fit.inputs())[:256]
    recipe = models.Recipe(epochs=3, batch_size=64, seed=4)

    def fresh():
        torch.manual_seed(0)
        return models.ConvAE(tuple(x.shape[1:]), latent=8)

    whole = models.train(fresh(), x, models.ae_loss(), recipe)

    class Stop(Exception):
        pass

    def stop_in_epoch_3(epoch, _loss):
        if epoch == 3:
            raise Stop

    state = tmp_path / "ae.partial"
    with pytest.raises(Stop):
        models.train(fresh(), x, models.ae_loss(), recipe, state, stop_in_epoch_3)
    assert state.exists()  # the state after epoch 2
    resumed = models.train(fresh(), x, models.ae_loss(), recipe, state)
    assert not state.exists()
    for a, b in zip(whole.state_dict().values(), resumed.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_vae_scores_the_latent_mean_deterministically(world) -> None:
    det = registry.build_detector("anomaly", "VAE", {"epochs": 1}).fit(world.fit,
                                                                       world.network())
    a, b = det.score(world.test, world.network()), det.score(world.test, world.network())
    np.testing.assert_array_equal(a, b)


def test_fcdd_heatmap_lights_up_where_the_map_does() -> None:
    maps = torch.zeros(1, 1, 8, 8)
    maps[0, 0, 3, 4] = 1.0  # output cell (3, 4): input pixels around (3*4+1.5, 4*4+1.5)
    up = models.receptive_upsample(maps, (32, 32), receptive_field=26, stride=4)[0, 0]
    assert up.shape == (32, 32)
    row, col = np.unravel_index(int(up.argmax()), up.shape)
    assert abs(row - 13.5) <= 1.5 and abs(col - 17.5) <= 1.5
    assert float(up.sum()) == pytest.approx(1.0, rel=0.02)  # the kernel spreads, not adds


def test_fcdd_heatmaps_have_the_input_size(world) -> None:
    det = registry.build_detector("anomaly", "FCDD", {"epochs": 1}).fit(world.fit,
                                                                        world.network())
    x = next(iter(world.test.inputs()))[0][:5]
    heat = det.heatmaps(x)
    assert heat.shape == (5, *x.shape[-2:]) and np.isfinite(heat).all() and (heat >= 0).all()


def test_confetti_changes_only_small_patches() -> None:
    x = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    out = models.confetti(x, torch.Generator().manual_seed(0), blobs=3, max_size=4)
    changed = (out != x).any(1).float().mean((1, 2))
    assert (changed > 0).all() and (changed <= 3 * 16 / 1024 + 1e-9).all()

"""Extraction: one pass gives logits/features/layer stats; the cache is reused and verified."""

from __future__ import annotations

import numpy as np
import torch

from benchmark.pipeline import data
from benchmark.pipeline.features import extract, representation_key
from benchmark.pipeline.zoo import LeNet

T = data.InputTransform(28, 1, (0.1307,), (0.3081,))


def small(root, n=300):
    return data.subsample(data.load("mnist", "test", root), n, seed=0)


def test_extract_matches_model_and_hooks(root, tmp_path) -> None:
    torch.manual_seed(0)
    model = LeNet().eval()
    subset = small(root)
    reps, hit = extract(model, subset, T, "sha-x", tmp_path, torch.device("cpu"), batch_size=128)
    assert not hit and len(reps) == 300
    with torch.no_grad():
        x = T(subset.images)
        assert np.allclose(reps.logits, model(x).numpy(), atol=1e-5)
        penultimate = model.fc1(model.pool2(model.conv2(model.pool1(model.conv1(x)))))
        assert np.allclose(reps.features, penultimate.numpy(), atol=1e-5)
        conv1 = model.conv1(x)
    assert np.allclose(reps.layer_stats["conv1"]["max"], conv1.amax((2, 3)).numpy(), atol=1e-5)
    assert np.allclose(reps.layer_stats["conv1"]["mean"], conv1.mean((2, 3)).numpy(), atol=1e-5)
    assert reps.layer_stats["fc1"]["max"].shape == (300, 128)
    assert np.array_equal(reps.labels, subset.labels)


def test_cache_hit_and_corruption_recovery(root, tmp_path) -> None:
    model = LeNet().eval()
    subset = small(root, 100)
    first, hit1 = extract(model, subset, T, "sha-y", tmp_path, torch.device("cpu"))
    second, hit2 = extract(model, subset, T, "sha-y", tmp_path, torch.device("cpu"))
    assert not hit1 and hit2 and np.array_equal(first.logits, second.logits)
    path = tmp_path / "representations" / f"{representation_key('sha-y', subset, T)}.npz"
    path.write_bytes(path.read_bytes()[:-200])  # truncate: must be detected and recomputed
    third, hit3 = extract(model, subset, T, "sha-y", tmp_path, torch.device("cpu"))
    assert not hit3 and np.array_equal(first.logits, third.logits)


def test_tampered_cache_fails_its_checksum_and_is_recomputed(root, tmp_path) -> None:
    """A readable file whose arrays no longer match their checksum is not trusted."""
    model = LeNet().eval()
    subset = small(root, 60)
    first, _ = extract(model, subset, T, "sha-t", tmp_path, torch.device("cpu"))
    path = tmp_path / "representations" / f"{representation_key('sha-t', subset, T)}.npz"
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["logits"] = arrays["logits"] + 1.0  # same shape, other values, old checksum
    np.savez(path, **arrays)
    again, hit = extract(model, subset, T, "sha-t", tmp_path, torch.device("cpu"))
    assert not hit and np.array_equal(again.logits, first.logits)


def test_key_depends_on_checkpoint_data_and_transform(root) -> None:
    subset = small(root, 50)
    k = representation_key("a", subset, T)
    assert k != representation_key("b", subset, T)
    assert k != representation_key("a", small(root, 51), T)
    assert k != representation_key("a", subset, data.InputTransform(28, 1, (0.0,), (1.0,)))


def test_feature_maps_on_request(root, tmp_path) -> None:
    model = LeNet().eval()
    reps, _ = extract(model, small(root, 64), T, "sha-z", tmp_path, torch.device("cpu"),
                      with_maps=True)
    assert reps.feature_maps.shape == (64, 64, 5, 5)


def test_concat_stacks_every_array_in_order() -> None:
    from benchmark.representations import Representations

    def reps(n: int, offset: float, maps: bool) -> Representations:
        a = np.arange(n * 2, dtype=np.float32).reshape(n, 2) + offset
        return Representations(a, a * 2, np.arange(n) + int(offset), {"l": {"mean": a * 3}},
                               feature_maps=a[:, :, None, None] if maps else None, key=str(offset))

    a, b = reps(3, 0, True), reps(2, 100, True)
    ab = a.concat(b, name="both")
    assert len(ab) == 5 and ab.name == "both" and ab.key == "0+100"
    np.testing.assert_array_equal(ab.logits, np.concatenate([a.logits, b.logits]))
    np.testing.assert_array_equal(ab.layer_stats["l"]["mean"][3:], b.layer_stats["l"]["mean"])
    np.testing.assert_array_equal(ab.labels, [0, 1, 2, 100, 101])
    assert ab.feature_maps.shape == (5, 2, 1, 1)
    assert a.concat(reps(2, 100, False)).feature_maps is None  # only when both have them

"""Dataset registry, transforms and splits on the real offline files."""

from __future__ import annotations

import numpy as np
import pytest

from benchmark.pipeline import data


def test_mnist_reads_from_local_root(root) -> None:
    train = data.load("mnist", "train", root)
    test = data.load("mnist", "test", root)
    assert train.images.shape == (60000, 28, 28, 1) and test.images.shape == (10000, 28, 28, 1)
    assert train.images.dtype == np.uint8 and set(np.unique(test.labels)) == set(range(10))
    assert train.source.startswith("idx:") and train.source.endswith("train-images-idx3-ubyte.gz")


def test_cifar_and_npz_sets_load(root) -> None:
    cifar = data.load("cifar10", "test", root)
    assert cifar.images.shape == (10000, 32, 32, 3)
    assert data.load("notmnist", "test", root).images.shape == (10000, 28, 28, 1)


def test_missing_dataset_says_what_to_do(tmp_path) -> None:
    with pytest.raises(data.DataError) as err:
        data.load("fashionmnist", "test", tmp_path)
    msg = str(err.value)
    assert "FashionMNIST/raw" in msg and "data=download" in msg


def test_unknown_dataset_lists_valid_names() -> None:
    with pytest.raises(data.DataError, match="valid: .*mnist"):
        data.load("imagenet-xxl", "test", None)


def test_local_read_does_not_write(root) -> None:
    before = {p: p.stat().st_mtime for p in (root / "MNIST").rglob("*")}
    data._MEMORY.clear()
    data.load("mnist", "test", root)
    after = {p: p.stat().st_mtime for p in (root / "MNIST").rglob("*")}
    assert before == after


def test_content_hash_tracks_pixels_and_subsets(root) -> None:
    test = data.load("mnist", "test", root)
    a, b = test.take(np.arange(10)), test.take(np.arange(1, 11))
    assert a.content_hash != b.content_hash
    assert a.content_hash == test.take(np.arange(10)).content_hash


def test_transform_converts_cifar_to_mnist_input(root) -> None:
    cifar = data.load("cifar10", "test", root)
    t = data.InputTransform(28, 1, (0.1307,), (0.3081,))
    x = t(cifar.images[:8])
    assert tuple(x.shape) == (8, 1, 28, 28)
    # grayscale luma of the resized image: the unnormalised range stays within [0, 1]
    raw = x * 0.3081 + 0.1307
    assert raw.min() >= -1e-5 and raw.max() <= 1 + 1e-5


def test_transform_gray_to_rgb() -> None:
    img = np.full((2, 28, 28, 1), 255, np.uint8)
    x = data.InputTransform(32, 3, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))(img)
    assert tuple(x.shape) == (2, 3, 32, 32) and np.allclose(x.numpy(), 1.0, atol=1e-5)


def test_id_splits_are_disjoint_and_seeded() -> None:
    s = data.plan_id_splits(1000, seed=3, calibration_size=200, fit_size=300)
    assert not set(s.calibration) & set(s.train)
    assert set(s.fit) <= set(s.train) and len(s.fit) == 300
    s2 = data.plan_id_splits(1000, seed=3, calibration_size=200, fit_size=300)
    assert np.array_equal(s.calibration, s2.calibration) and np.array_equal(s.fit, s2.fit)
    s3 = data.plan_id_splits(1000, seed=4, calibration_size=200, fit_size=300)
    assert not np.array_equal(s.calibration, s3.calibration)


def test_validation_comes_out_of_calibration_and_leaves_training_alone() -> None:
    base = data.plan_id_splits(1000, seed=3, calibration_size=200, fit_size=300)
    s = data.plan_id_splits(1000, seed=3, calibration_size=200, fit_size=300,
                            validation_size=50)
    assert np.array_equal(s.train, base.train) and np.array_equal(s.fit, base.fit)
    assert len(s.validation) == 50 and len(s.calibration) == 150
    assert set(s.validation) | set(s.calibration) == set(base.calibration)
    assert not set(s.validation) & (set(s.calibration) | set(s.train))
    assert len(base.validation) == 0 and "validation" not in base.describe()
    assert s.describe()["validation"] == 50
    with pytest.raises(data.DataError, match="validation_size=200 must be"):
        data.plan_id_splits(1000, seed=3, calibration_size=200, fit_size=300,
                            validation_size=200)


def test_subsample_is_random_not_first_rows(root) -> None:
    cifar = data.load("cifar10", "test", root)  # stored grouped by class
    sub = data.subsample(cifar, 500, seed=0)
    assert len(sub) == 500 and len(np.unique(sub.labels)) == 10


def test_places365_reads_a_torchvision_layout(tmp_path) -> None:
    """Users who downloaded Places365 (torchvision layout) get 32x32 crops with its labels."""
    from PIL import Image

    (tmp_path / "val_256").mkdir()
    (tmp_path / "categories_places365.txt").write_text("/a/abbey 0\n/b/beach 1\n")
    rng = np.random.default_rng(0)
    lines = []
    for i, label in enumerate([1, 0, 1]):
        name = f"Places365_val_{i + 1:08d}.jpg"
        Image.fromarray(rng.integers(0, 255, (256, 300, 3), dtype=np.uint8)).save(
            tmp_path / "val_256" / name)
        lines.append(f"{name} {label}")
    (tmp_path / "places365_val.txt").write_text("\n".join(lines) + "\n")
    places = data.load("places365", "val", tmp_path)
    assert places.images.shape == (3, 32, 32, 3) and places.images.dtype == np.uint8
    assert places.labels.tolist() == [1, 0, 1]


def test_places365_missing_offers_the_download(tmp_path) -> None:
    with pytest.raises(data.DataError, match="val_256.*data=download"):
        data.load("places365", "val", tmp_path)

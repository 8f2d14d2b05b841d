"""Covariate shifts: same shape, seeded, stronger with severity, cache identity kept apart."""

from __future__ import annotations

import numpy as np
import pytest

from benchmark.pipeline import data, shifts


@pytest.fixture(scope="module")
def cifar(root):
    return data.subsample(data.load("cifar10", "test", root), 64, seed=0)


@pytest.mark.parametrize("kind", sorted(shifts.SHIFTS))
def test_shift_keeps_shape_and_is_seeded(cifar, kind) -> None:
    a = shifts.shifted(cifar, kind, 3, seed=0)
    b = shifts.shifted(cifar, kind, 3, seed=0)
    assert a.images.shape == cifar.images.shape and a.images.dtype == np.uint8
    assert np.array_equal(a.images, b.images) and a.content_hash == b.content_hash
    assert not np.array_equal(a.images, cifar.images)
    assert a.content_hash != cifar.content_hash
    assert np.array_equal(a.labels, cifar.labels)


@pytest.mark.parametrize("kind", ["gaussian_noise", "blur", "jpeg", "rotation", "crop"])
def test_severity_increases_distortion(cifar, kind) -> None:
    def change(sev: int) -> float:
        return float(np.abs(shifts.shifted(cifar, kind, sev).images.astype(int)
                            - cifar.images).mean())

    assert change(1) < change(5)


def test_bad_shift_names_are_explained(cifar) -> None:
    with pytest.raises(data.DataError, match="valid: .*blur"):
        shifts.shifted(cifar, "sepia", 3)
    with pytest.raises(data.DataError, match="severity"):
        shifts.shifted(cifar, "blur", 9)


def test_deterministic_shifts_invert_and_rotate(cifar) -> None:
    """Inverted and fixed-angle rotated sets: exact, seed-free, undone by their inverse."""
    inverted = shifts.shifted(cifar, "invert", seed=0)
    assert np.array_equal(inverted.images, 255 - cifar.images)
    assert inverted.content_hash == shifts.shifted(cifar, "invert", seed=7).content_hash
    assert inverted.name == "cifar10-invert" and inverted.source.endswith("+ shift invert")
    r90 = shifts.shifted(cifar, "rotate90").images
    assert np.array_equal(np.rot90(r90, k=-1, axes=(1, 2)), cifar.images)
    r180 = shifts.shifted(cifar, "rotate180").images
    assert np.array_equal(r180, np.rot90(r90, k=1, axes=(1, 2)))
    assert np.array_equal(r180[:, ::-1, ::-1], cifar.images)

"""Dataset entries, readers per kind and the door checks, on small files written here."""

from __future__ import annotations

import numpy as np
import pytest
import yaml
from PIL import Image

from benchmark.pipeline import catalog, checks, data
from benchmark.pipeline.errors import DataError


def _imgs(n: int = 30, shape=(28, 28, 1)) -> np.ndarray:
    return np.random.default_rng(1).integers(0, 256, (n, *shape)).astype(np.uint8)


def test_layouts_are_brought_to_nhwc_when_unambiguous() -> None:
    nhwc = _imgs(6, (8, 9, 3))
    nchw = np.ascontiguousarray(nhwc.transpose(0, 3, 1, 2))
    assert np.array_equal(checks.canonical_images(nchw, "x"), nhwc)
    gray = _imgs(6, (8, 9))
    assert np.array_equal(checks.canonical_images(gray, "x"), gray[..., None])
    with pytest.raises(DataError, match=r"x: declared layout NHWC but the images have shape"):
        checks.canonical_images(gray, "x", layout="NHWC")


def test_the_content_hash_tells_layouts_apart() -> None:
    """The same bytes as N x H x W x 1 and as N x 1 x H x W (wrongly declared) are different
    sets, and so are N x H x W x 1 and N x H x 1 x W: shape is in the hash."""
    x = _imgs(4, (28, 28, 1))
    labels = np.zeros(4, np.int64)
    a = data.ImageSet("a", "test", x, labels, "s")
    b = data.ImageSet("a", "test", x.reshape(4, 28, 1, 28), labels, "s")
    assert a.content_hash != b.content_hash
    assert a.content_hash == data.ImageSet("b", "t", x.copy(), labels, "other").content_hash


def test_floats_only_with_a_declared_range() -> None:
    x = np.linspace(0, 1, 2 * 4 * 4).reshape(2, 4, 4, 1).astype(np.float32)
    with pytest.raises(DataError, match="dtype float32 .*range: \\[0, 1\\]"):
        checks.canonical_images(x, "f.npz")
    out = checks.canonical_images(x, "f.npz", value_range=[0, 1])
    assert out.dtype == np.uint8 and out.min() == 0 and out.max() == 255
    with pytest.raises(DataError, match="declared range \\[0, 0.5\\] but the values span"):
        checks.canonical_images(x, "f.npz", value_range=[0, 0.5])


def test_id_labels_need_every_class_in_training() -> None:
    with pytest.raises(DataError, match="no training image of class 3, 9"):
        checks.check_id_labels(np.array([0, 1, 2, 4, 5, 6, 7, 8]), 10, "t.npz", True)
    with pytest.raises(DataError, match="labels span 0..10"):
        checks.check_id_labels(np.array([0, 10]), 10, "t.npz", False)
    checks.check_id_labels(np.arange(10), 10, "t.npz", True)


def test_user_entries_of_every_kind_load_with_their_names_and_sources(tmp_path) -> None:
    x = _imgs(12)
    np.savez(tmp_path / "mine.npz", images=x, labels=np.arange(12) % 3)
    folder = tmp_path / "folder"
    for label, cls in enumerate(["b_class", "a_class"]):
        (folder / cls).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(x[label * 3 + i, ..., 0]).save(folder / cls / f"{i}.png")
    (tmp_path / "imgs" / "sub").mkdir(parents=True)
    lines = []
    for i in range(4):
        Image.fromarray(x[i, ..., 0]).save(tmp_path / "imgs" / "sub" / f"{i}.png")
        lines.append(f"sub/{i}.png {i % 2}")
    (tmp_path / "list.txt").write_text("\n".join(lines) + "\n")
    conf = tmp_path / "conf" / "dataset"
    conf.mkdir(parents=True)
    (conf / "mine.yaml").write_text(yaml.safe_dump(
        {"kind": "npz", "splits": {"test": "mine.npz"}}))  # relative: under the data root
    dirs = (tmp_path / "conf",)
    mine = data.load("mine", None, roots=[tmp_path], dirs=dirs)
    assert mine.name == "mine" and mine.split == "test" and np.array_equal(mine.images, x)
    assert mine.source == f"npz:{tmp_path / 'mine.npz'}"
    assert mine.describe()["entry"] == str(conf / "mine.yaml")
    folder_set = data.load({"kind": "image_folder", "channels": 1,
                            "splits": {"all": str(folder)}}, None, name="shapes")
    assert folder_set.name == "shapes" and len(folder_set) == 6
    assert folder_set.labels.tolist() == [0, 0, 0, 1, 1, 1]  # a_class (sorted) is label 0
    assert np.array_equal(folder_set.images[:3], x[3:6])
    listed = data.load({"kind": "image_list", "channels": 1,
                        "splits": {"test": {"list": "list.txt", "root": "imgs"}}}, "test",
                       roots=[tmp_path], name="listed")
    assert listed.labels.tolist() == [0, 1, 0, 1] and np.array_equal(listed.images, x[:4])


def test_roots_are_searched_in_order(tmp_path) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    for i, root in enumerate((first, second)):
        root.mkdir()
        np.savez(root / "s.npz", images=_imgs(5) * 0 + i, labels=np.zeros(5))
    entry = {"kind": "npz", "splits": {"test": "s.npz"}}
    assert data.load(entry, "test", roots=[first, second]).images.max() == 0
    assert data.load(entry, "test", roots=[tmp_path / "absent", second]).images.max() == 1
    with pytest.raises(DataError, match="not found: looked for s.npz .*absent"):
        data.load(entry, "test", roots=[tmp_path / "absent"])


def test_entry_typos_and_bad_kinds_are_refused(tmp_path) -> None:
    with pytest.raises(DataError, match="unknown key\\(s\\) splitz"):
        catalog.as_entry({"kind": "npz", "splitz": {}}, (), name="x")
    with pytest.raises(DataError, match="kind 'hdf5' is not a dataset kind; valid: .*npz"):
        catalog.as_entry({"kind": "hdf5", "splits": {"test": "a"}}, (), name="x")
    with pytest.raises(DataError, match="unknown dataset 'nope'"):
        catalog.find_entry("nope", (tmp_path,))


def test_a_dataset_with_several_splits_needs_one_named(root) -> None:
    with pytest.raises(DataError, match="has splits train, test: name one"):
        data.load("mnist", None, root)


def test_loaded_images_have_fresh_array_strides(root) -> None:
    """An added channel axis must not keep numpy's stride 0: torch keeps strides and oneDNN
    picks its kernel by them, which changed the trained LeNet's bits (sha256) once."""
    mnist = data.load("mnist", "test", root)
    assert mnist.images.strides == (784, 28, 1, 1)
    gray = checks.canonical_images(_imgs(3, (5, 6)), "x")
    assert gray.strides == (30, 6, 1, 1)


def test_declared_channels_must_match_an_array_file(tmp_path) -> None:
    np.savez(tmp_path / "rgb.npz", images=_imgs(5, (8, 8, 3)), labels=np.zeros(5))
    entry = {"kind": "npz", "channels": 1, "splits": {"test": str(tmp_path / "rgb.npz")}}
    with pytest.raises(DataError, match="rgb.npz: the entry declares 1 channel"):
        data.load(entry, "test")

"""Cache files: atomic writes, checksums that catch truncation, tampering, dtype and shape."""

from __future__ import annotations

import numpy as np
import pytest

from benchmark.atomic import atomic_path, checksum, load_npz, save_npz


def test_round_trip_and_missing_file(tmp_path) -> None:
    arrays = {"a": np.arange(6, dtype=np.float32).reshape(2, 3), "b": np.array(["x"])}
    save_npz(tmp_path / "c.npz", arrays)
    back = load_npz(tmp_path / "c.npz")
    assert set(back) == {"a", "b"} and np.array_equal(back["a"], arrays["a"])
    assert load_npz(tmp_path / "absent.npz") is None
    assert [p.name for p in tmp_path.iterdir()] == ["c.npz"]  # no temporary left behind


def test_damaged_files_are_not_trusted(tmp_path) -> None:
    path = tmp_path / "c.npz"
    save_npz(path, {"a": np.arange(10.0)})
    data = path.read_bytes()
    path.write_bytes(data[:-50])
    assert load_npz(path) is None  # truncated
    save_npz(path, {"a": np.arange(10.0)})
    with np.load(path) as z:
        stored = {k: z[k] for k in z.files}
    stored["a"] = stored["a"][::-1].copy()
    np.savez(path, **stored)
    assert load_npz(path) is None  # same shape and dtype, other values


def test_checksum_covers_dtype_and_shape() -> None:
    a = np.zeros(4, dtype=np.float32)
    assert checksum({"a": a}) != checksum({"a": a.reshape(2, 2)})
    assert checksum({"a": a}) != checksum({"a": a.view(np.int32)})
    assert checksum({"a": a}) != checksum({"b": a})


def test_a_failed_write_leaves_nothing(tmp_path) -> None:
    target = tmp_path / "entry"
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed")
    assert not target.exists() and list(tmp_path.iterdir()) == []
    with atomic_path(target) as tmp:  # a directory entry: renamed into place whole
        tmp.mkdir()
        (tmp / "f").write_text("x")
    assert (target / "f").read_text() == "x"

"""Downloads through every download kind, from a file server on loopback (never the internet):
the real built-in entries with their URLs pointed at 127.0.0.1, checksums verified."""

from __future__ import annotations

import functools
import gzip
import io
import shutil
import sys
import tarfile
import threading
import types
import urllib.request
import zipfile
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
from PIL import Image

from benchmark.pipeline import catalog, data
from benchmark.pipeline.errors import DataError


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def server(tmp_path):
    """A folder served over HTTP on 127.0.0.1; yields (folder, base URL)."""
    served = tmp_path / "served"
    served.mkdir()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet,
                                                                     directory=str(served)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield served, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def _builtin(name: str) -> catalog.DatasetEntry:
    return catalog.find_entry(name, data.builtin_dirs())


def _pointed_at(entry: catalog.DatasetEntry, base: str) -> catalog.DatasetEntry:
    """The built-in entry with each download URL's host replaced by the loopback server."""
    files = [{**item, "url": f"{base}/{item['url'].rsplit('/', 1)[-1]}"}
             for item in entry.download["files"]]
    return catalog.DatasetEntry(entry.name, entry.sources, entry.origin, entry.num_classes,
                                {**entry.download, "files": files})


def test_notmnist_downloads_byte_identical_to_the_mirror(root, server, tmp_path) -> None:
    served, base = server
    for f in (root / "notMNIST" / "raw").iterdir():
        shutil.copy(f, served / f.name)
    entry = _pointed_at(_builtin("notmnist"), base)
    got = data.load(entry, "test", roots=[], download=True, download_dir=tmp_path / "dl")
    mirror = data.load("notmnist", "test", root)
    assert np.array_equal(got.images, mirror.images) and got.content_hash == mirror.content_hash
    assert (tmp_path / "dl" / "notMNIST" / "raw" / "t10k-images-idx3-ubyte.gz").exists()
    # a second run reads the download folder, without the server
    again = data.load(_builtin("notmnist"), "test", roots=[], download=False,
                      download_dir=tmp_path / "dl")
    assert again.content_hash == mirror.content_hash


def test_a_download_that_fails_its_checksum_leaves_nothing(root, server, tmp_path) -> None:
    served, base = server
    for f in (root / "notMNIST" / "raw").iterdir():
        (served / f.name).write_bytes(f.read_bytes()[:-10] + b"0123456789")
    entry = _pointed_at(_builtin("notmnist"), base)
    with pytest.raises(DataError, match="md5 is .* declares 2c87c839"):
        data.load(entry, "test", roots=[], download=True, download_dir=tmp_path / "dl")
    assert not list((tmp_path / "dl").rglob("*.gz"))


def test_tinyimagenet_download_reads_the_original_layout(server, tmp_path) -> None:
    """The Stanford archive layout (val_annotations.txt, wnids.txt) -> 32x32, sorted wnids."""
    served, base = server
    rng = np.random.default_rng(0)
    buf = io.BytesIO()
    wnids = ["n02", "n01", "n03"]
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("tiny-imagenet-200/wnids.txt", "\n".join(wnids) + "\n")
        lines = []
        for i, w in enumerate(["n03", "n01", "n02", "n01"]):
            img = io.BytesIO()
            Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(img, "JPEG")
            zf.writestr(f"tiny-imagenet-200/val/images/val_{i}.JPEG", img.getvalue())
            lines.append(f"val_{i}.JPEG\t{w}\t0\t0\t63\t63")
        zf.writestr("tiny-imagenet-200/val/val_annotations.txt", "\n".join(lines) + "\n")
    (served / "tiny-imagenet-200.zip").write_bytes(buf.getvalue())
    import hashlib

    entry = _builtin("tinyimagenet")
    item = {**entry.download["files"][0], "url": f"{base}/tiny-imagenet-200.zip",
            "md5": hashlib.md5(buf.getvalue()).hexdigest()}
    entry = catalog.DatasetEntry(entry.name, entry.sources, entry.origin, entry.num_classes,
                                 {"kind": "url", "files": [item]})
    got = data.load(entry, "val", roots=[], download=True, download_dir=tmp_path / "dl")
    assert got.images.shape == (4, 32, 32, 3) and got.labels.tolist() == [2, 0, 1, 0]
    assert got.source.startswith("tinyimagenet_val:")


def test_torchvision_downloads_from_its_mirror_list(root, server, tmp_path, monkeypatch) -> None:
    import torchvision.datasets as tvd

    served, base = server
    for f in (root / "MNIST" / "raw").glob("t10k*"):
        shutil.copy(f, served / f.name)
    monkeypatch.setattr(tvd.MNIST, "mirrors", [base + "/"])
    monkeypatch.setattr(tvd.MNIST, "resources", [r for r in tvd.MNIST.resources
                                                 if r[0].startswith("t10k")])
    got = data.load("mnist", "test", roots=[], download=True, download_dir=tmp_path / "dl")
    assert got.content_hash == data.load("mnist", "test", root).content_hash
    assert got.source.startswith("torchvision-download:")


def test_cifar10c_through_pytorch_ood(server, tmp_path, monkeypatch) -> None:
    """pytorch-ood's CIFAR10C downloads (md5-checked) and the harness reads one severity."""
    import hashlib

    from pytorch_ood.dataset.img import CIFAR10C

    served, base = server
    images = np.arange(5 * 4 * 2 * 2 * 3, dtype=np.uint8).reshape(20, 2, 2, 3)
    labels = np.arange(20) % 10
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for name, arr in (("fog.npy", images), ("labels.npy", labels)):
            raw = io.BytesIO()
            np.save(raw, arr)
            info = tarfile.TarInfo(f"CIFAR-10-C/{name}")
            info.size = len(raw.getvalue())
            tf.addfile(info, io.BytesIO(raw.getvalue()))
    (served / "CIFAR-10-C.tar").write_bytes(buf.getvalue())
    monkeypatch.setattr(CIFAR10C, "url", f"{base}/CIFAR-10-C.tar")
    monkeypatch.setattr(CIFAR10C, "md5hash", hashlib.md5(buf.getvalue()).hexdigest())
    got = data.load("cifar10c", "fog-3", roots=[], download=True, download_dir=tmp_path / "dl")
    assert np.array_equal(got.images, images[8:12]) and got.labels.tolist() == [8, 9, 0, 1]


def test_openood_sets_through_pytorch_ood_and_gdown(server, tmp_path, monkeypatch) -> None:
    """OpenOOD v1.5's archives and image lists, fetched by pytorch-ood's code through gdown
    (here a stand-in that fetches each Drive id from the loopback server)."""
    import torch
    from pytorch_ood.benchmark.img import openood as poo

    served, base = server
    rng = np.random.default_rng(0)
    tin = io.BytesIO()
    with zipfile.ZipFile(tin, "w") as zf:
        for i in range(3):
            img = io.BytesIO()
            Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(img, "PNG")
            zf.writestr(f"val/images/val_{i}.JPEG", img.getvalue())
    lists = io.BytesIO()
    with zipfile.ZipFile(lists, "w") as zf:
        zf.writestr("benchmark_imglist/cifar10/test_tin.txt",
                    "".join(f"tin/val/images/val_{i}.JPEG -1\n" for i in range(3)))
    (served / poo._OPENOOD_GDRIVE_IDS["tin"]).write_bytes(tin.getvalue())
    (served / poo._IMGLIST_GDRIVE_ID).write_bytes(lists.getvalue())

    def download(id: str, output: str, quiet: bool = False) -> str:  # noqa: A002 - gdown's API
        urllib.request.urlretrieve(f"{base}/{id}", output)
        return output

    monkeypatch.setitem(sys.modules, "gdown", types.SimpleNamespace(download=download))
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    got = data.load("openood_tin", None, roots=[], download=True, download_dir=tmp_path / "dl")
    assert got.images.shape == (3, 32, 32, 3) and got.labels.tolist() == [-1, -1, -1]
    assert (tmp_path / "dl" / "benchmark_imglist" / "cifar10" / "test_tin.txt").exists()


def test_no_download_offers_what_to_do(tmp_path) -> None:
    with pytest.raises(DataError, match="not found.*data=download"):
        data.load("notmnist", "test", roots=[tmp_path], download_dir=tmp_path / "dl")


def test_read_idx_reads_a_gzipped_idx_file(tmp_path) -> None:
    from benchmark.pipeline.readers import read_idx

    arr = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    raw = bytes([0, 0, 8, 3]) + b"".join(d.to_bytes(4, "big") for d in arr.shape) + arr.tobytes()
    (tmp_path / "x.gz").write_bytes(gzip.compress(raw))
    assert np.array_equal(read_idx(tmp_path / "x.gz"), arr)


def test_an_unreachable_download_is_unavailable_a_damaged_one_an_error(root, server,
                                                                     tmp_path) -> None:
    """An optional OOD set is skipped when its download cannot be had (no server), never when
    what came is damaged (checksum): the two are different errors."""
    from benchmark.pipeline.errors import DataUnavailable

    served, base = server
    entry = _pointed_at(_builtin("notmnist"), base)  # nothing served: HTTP 404
    with pytest.raises(DataUnavailable, match="downloading notmnist"):
        data.load(entry, "test", roots=[], download=True, download_dir=tmp_path / "dl")
    for f in (root / "notMNIST" / "raw").iterdir():
        (served / f.name).write_bytes(b"damaged")
    with pytest.raises(DataError) as err:
        data.load(entry, "test", roots=[], download=True, download_dir=tmp_path / "dl2")
    assert not isinstance(err.value, DataUnavailable)

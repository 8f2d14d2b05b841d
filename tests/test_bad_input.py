"""The bad-input matrix: every kind of bad data, configuration or checkpoint, fed to the real
``ood-bench`` command, ends in one message that names the file (or key), exit code 2, no
traceback, and nothing in the cache or the output folder that a later run would trust.

Each case builds its bad input under ``tmp_path`` (a user config folder with its own pair and
dataset entries), runs the CLI in a fresh process against the real MNIST files, and checks the
result. The ID side is always real MNIST at small sizes, so a case fails at the bad input or not
at all.
"""

from __future__ import annotations

import gzip
import os
import subprocess
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from tests.commands import ood_bench

SIZES = ["data.fit_size=200", "data.calibration_size=200", "data.max_id_test=100",
         "data.max_ood=60", "detector=pytorch_ood/msp", "analysis.inhouse=false",
         "bootstrap.resamples=0"]
TRUSTED = ("metrics.csv", "manifest.json")  # what a report or a study reads back from a run


@dataclass
class Case:
    """``build(tmp)`` writes the bad input and returns the extra command-line arguments; the
    run must exit with ``code`` and its stderr contain every string of ``expect`` (``{tmp}`` is
    replaced by the case's folder)."""

    name: str
    build: Callable[[Path], list[str]]
    expect: tuple[str, ...]
    code: int = 2


def _conf(tmp: Path) -> Path:
    conf = tmp / "conf"
    (conf / "pair").mkdir(parents=True, exist_ok=True)
    (conf / "dataset").mkdir(parents=True, exist_ok=True)
    return conf


def _pair_with_ood(tmp: Path, entry: dict | str, *, split: str | None = None,
                   id_dataset: dict | str = "mnist") -> list[str]:
    """A user pair (MNIST vs one OOD set ``entry``) in a user config folder."""
    conf = _conf(tmp)
    ood: dict = {"dataset": entry, "group": "far"}
    if split:
        ood["split"] = split
    pair = {"name": "user", "id": {"dataset": id_dataset, "train_split": "train",
                                   "test_split": "test"},
            "ood": {"mine": ood}}
    (conf / "pair" / "user.yaml").write_text(yaml.safe_dump(pair))
    return ["--config-dir", str(conf), "pair=user"]


def _npz(tmp: Path, name: str = "set.npz", **arrays) -> Path:
    path = tmp / name
    np.savez(path, **arrays)
    return path


def _images(n: int = 80, shape=(28, 28, 1), dtype=np.uint8) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (n, *shape)).astype(dtype)


def _npz_case(**arrays) -> Callable[[Path], list[str]]:
    def build(tmp: Path) -> list[str]:
        path = _npz(tmp, **arrays)
        return _pair_with_ood(tmp, {"kind": "npz", "splits": {"test": str(path)}})

    return build


def _truncated_npz(tmp: Path) -> list[str]:
    path = _npz(tmp, images=_images(), labels=np.zeros(80, np.int64))
    path.write_bytes(path.read_bytes()[:3000])
    return _pair_with_ood(tmp, {"kind": "npz", "splits": {"test": str(path)}})


def _idx_bytes(images: np.ndarray) -> bytes:
    header = bytes([0, 0, 8, 3]) + b"".join(int(d).to_bytes(4, "big") for d in images.shape)
    return header + images.tobytes()


def _idx_entry(tmp: Path, image_bytes: bytes, gz: bool) -> list[str]:
    labels = bytes([0, 0, 8, 1]) + (80).to_bytes(4, "big") + bytes(80)
    suffix = ".gz" if gz else ""
    img, lab = tmp / f"images-idx3-ubyte{suffix}", tmp / f"labels-idx1-ubyte{suffix}"
    opener = gzip.compress if gz else (lambda b: b)
    img.write_bytes(opener(image_bytes))
    lab.write_bytes(opener(labels))
    return _pair_with_ood(tmp, {"kind": "idx", "splits": {"test": {"images": str(img),
                                                                   "labels": str(lab)}}})


def _truncated_gz(tmp: Path) -> list[str]:
    args = _idx_entry(tmp, _idx_bytes(_images(80, (28, 28))), gz=True)
    img = tmp / "images-idx3-ubyte.gz"
    img.write_bytes(img.read_bytes()[:-200])
    return args


def _truncated_idx(tmp: Path) -> list[str]:
    return _idx_entry(tmp, _idx_bytes(_images(80, (28, 28)))[:-500], gz=False)


def _user_id_missing_class(tmp: Path) -> list[str]:
    labels = np.arange(1000) % 10
    labels[labels == 7] = 3
    train = _npz(tmp, "train.npz", images=_images(1000), labels=labels)
    test = _npz(tmp, "test.npz", images=_images(200), labels=np.arange(200) % 10)
    entry = {"kind": "npz", "num_classes": 10,
             "splits": {"train": str(train), "test": str(test)}}
    path = _npz(tmp, "ood.npz", images=_images(), labels=np.zeros(80, np.int64))
    return _pair_with_ood(tmp, {"kind": "npz", "splits": {"test": str(path)}},
                          id_dataset=entry)


def _checksum(tmp: Path) -> list[str]:
    path = _npz(tmp, images=_images(), labels=np.zeros(80, np.int64))
    return _pair_with_ood(tmp, {"kind": "npz", "splits": {"test": {"path": str(path),
                                                                   "sha256": "0" * 64}}})


def _named_entry(tmp: Path) -> list[str]:
    """An entry in the user's dataset folder with an unknown kind."""
    conf = _conf(tmp)
    (conf / "dataset" / "weird.yaml").write_text("kind: hdf5\nsplits: {test: x.h5}\n")
    return _pair_with_ood(tmp, "weird")


def _unknown_dataset(tmp: Path) -> list[str]:
    return _pair_with_ood(tmp, "no_such_set")


def _mixed_sizes(tmp: Path) -> list[str]:
    from PIL import Image

    folder = tmp / "folder"
    folder.mkdir()
    for i, size in enumerate([28, 28, 40]):
        Image.fromarray(_images(1, (size, size))[0, ..., 0]).save(folder / f"{i}.png")
    return _pair_with_ood(tmp, {"kind": "image_folder", "splits": {"test": str(folder)}})


def _non_utf8_name(tmp: Path) -> list[str]:
    folder = tmp / "folder"
    folder.mkdir()
    name = os.fsdecode(b"broken-\xff\xfe.png")
    (folder / name).write_bytes(b"not an image at all")
    return _pair_with_ood(tmp, {"kind": "image_folder", "splits": {"test": str(folder)}})


def _image_list_missing(tmp: Path) -> list[str]:
    (tmp / "images").mkdir()
    listing = tmp / "list.txt"
    listing.write_text("a/one.png 0\n")
    return _pair_with_ood(tmp, {"kind": "image_list",
                                "splits": {"test": {"list": str(listing),
                                                    "root": str(tmp / "images")}}})


def _one_image(tmp: Path) -> list[str]:
    path = _npz(tmp, images=_images(1), labels=np.zeros(1, np.int64))
    return _pair_with_ood(tmp, {"kind": "npz", "splits": {"test": str(path)}})


def _damaged_optional(tmp: Path) -> list[str]:
    path = _npz(tmp, images=_images().astype(np.float32), labels=np.zeros(80, np.int64))
    args = _pair_with_ood(tmp, {"kind": "npz", "splits": {"test": str(path)}})
    conf = tmp / "conf" / "pair" / "user.yaml"
    pair = yaml.safe_load(conf.read_text())
    pair["ood"]["mine"]["optional"] = True
    conf.write_text(yaml.safe_dump(pair))
    return args


def _pair_typo(tmp: Path) -> list[str]:
    path = _npz(tmp, images=_images(), labels=np.zeros(80, np.int64))
    args = _pair_with_ood(tmp, {"kind": "npz", "splits": {"test": str(path)}})
    conf = tmp / "conf" / "pair" / "user.yaml"
    pair = yaml.safe_load(conf.read_text())
    pair["ood"]["mine"]["grup"] = pair["ood"]["mine"].pop("group")
    conf.write_text(yaml.safe_dump(pair))
    return args


def _checkpoint(content: Callable[[Path], None]) -> Callable[[Path], list[str]]:
    def build(tmp: Path) -> list[str]:
        path = tmp / "model.pt"
        content(path)
        return [f"backbone.checkpoint={path}"]

    return build


def _garbage(path: Path) -> None:
    path.write_bytes(np.random.default_rng(0).bytes(4096))


def _empty(path: Path) -> None:
    path.write_bytes(b"")


def _folder(path: Path) -> None:
    path.mkdir()


def _truncated_checkpoint(path: Path) -> None:
    from benchmark.pipeline.zoo import ARCHITECTURES

    torch.save(ARCHITECTURES["lenet"]().state_dict(), path)
    path.write_bytes(path.read_bytes()[:20000])


def _wrong_architecture(path: Path) -> None:
    from benchmark.pipeline.zoo import ARCHITECTURES

    torch.save(ARCHITECTURES["resnet20"](in_channels=1, num_classes=10).state_dict(), path)


def _three_channels(path: Path) -> None:
    from benchmark.pipeline.zoo import ARCHITECTURES

    torch.save(ARCHITECTURES["lenet"](in_channels=3).state_dict(), path)


def _data_root_file(tmp: Path) -> list[str]:
    (tmp / "root.txt").write_text("not a folder")
    return [f"data.root={tmp / 'root.txt'}"]


def _symlink_loop(tmp: Path) -> list[str]:
    (tmp / "loop").symlink_to(tmp / "loop")
    return [f"data.root={tmp / 'loop'}"]


CASES = [
    Case("float32 images undeclared", _npz_case(images=_images().astype(np.float32) / 255,
                                               labels=np.zeros(80, np.int64)),
         ("{tmp}/set.npz", "dtype float32", "range: [0, 1]")),
    Case("channels-first with 5 channels", _npz_case(images=_images(80, (5, 28, 28)),
                                                    labels=np.zeros(80, np.int64)),
         ("{tmp}/set.npz", "(80, 5, 28, 28)", "N x H x W x C")),
    Case("truncated .npz", _truncated_npz, ("{tmp}/set.npz", "cannot be read as .npz")),
    Case("missing labels key", _npz_case(images=_images(), targets=np.zeros(80)),
         ("{tmp}/set.npz", "no key 'labels'", "targets")),
    Case("labels shorter than images", _npz_case(images=_images(), labels=np.zeros(50)),
         ("{tmp}/set.npz", "50 labels for 80 images")),
    Case("non-integer labels", _npz_case(images=_images(), labels=np.full(80, 0.5)),
         ("{tmp}/set.npz", "not whole numbers")),
    Case("no images", _npz_case(images=np.zeros((0, 28, 28, 1), np.uint8),
                                labels=np.zeros(0, np.int64)),
         ("{tmp}/set.npz", "no images")),
    Case("truncated .gz idx", _truncated_gz, ("{tmp}/images-idx3-ubyte.gz", "truncated")),
    Case("truncated idx", _truncated_idx, ("{tmp}/images-idx3-ubyte", "idx header promises")),
    Case("declared checksum differs", _checksum, ("{tmp}/set.npz", "sha256 is", "declares")),
    Case("unknown dataset kind", _named_entry, ("{tmp}/conf/dataset/weird.yaml", "'hdf5'")),
    Case("unknown dataset name", _unknown_dataset, ("unknown dataset 'no_such_set'", "mnist")),
    Case("image folder of mixed sizes", _mixed_sizes, ("{tmp}/folder", "different sizes",
                                                       "size:")),
    Case("non-UTF-8 file name of a broken image", _non_utf8_name,
         ("{tmp}/folder/broken-", "cannot be read as an image")),
    Case("image list naming a missing image", _image_list_missing,
         ("{tmp}/list.txt, line 1", "does not exist")),
    Case("OOD set with one image", _one_image, ("{tmp}/set.npz", "has 1 image(s)",
                                                "min_set_size")),
    Case("damaged optional OOD set is an error, not a skip", _damaged_optional,
         ("{tmp}/set.npz", "dtype float32")),
    Case("typo in a pair's OOD entry", _pair_typo,
         ("OOD set 'mine' has unknown key(s) grup; no group",)),
    Case("ID training set missing a class", _user_id_missing_class,
         ("{tmp}/train.npz", "no training image of class 7")),
    Case("fit size 0", lambda tmp: ["data.fit_size=0"], ("data.fit_size=0", "> 0")),
    Case("negative OOD cap", lambda tmp: ["data.max_ood=-5"], ("data.max_ood=-5", "> 0")),
    Case("size that is not a number", lambda tmp: ["data.max_id_test=abc"],
         ("data.max_id_test='abc'",)),
    Case("wrong override key", lambda tmp: ["data.fit_sise=5"],
         ("data.fit_sise", "did you mean 'data.fit_size'")),
    Case("+key typo warns (then a bad size stops the run)",
         lambda tmp: ["+data.fit_sise=5", "data.fit_size=0"],
         ("warning: unknown config key 'data.fit_sise'", "did you mean 'data.fit_size'")),
    Case("+recipe key typo warns", lambda tmp: ["+backbone.recipe.epoch=1", "data.fit_size=0"],
         ("unknown config key 'backbone.recipe.epoch'", "backbone.recipe.epochs")),
    Case("data root is a file", _data_root_file, ("{tmp}/root.txt", "is a file")),
    Case("data root is a symlink loop", _symlink_loop, ("{tmp}/loop", "link loop")),
    Case("garbage checkpoint", _checkpoint(_garbage),
         ("{tmp}/model.pt", "cannot be read as a PyTorch checkpoint")),
    Case("empty checkpoint", _checkpoint(_empty), ("{tmp}/model.pt", "is empty")),
    Case("checkpoint is a folder", _checkpoint(_folder), ("{tmp}/model.pt", "is a folder")),
    Case("truncated checkpoint", _checkpoint(_truncated_checkpoint),
         ("{tmp}/model.pt", "truncated")),
    Case("wrong-architecture checkpoint", _checkpoint(_wrong_architecture),
         ("{tmp}/model.pt", "missing keys: conv1.0.weight", "unexpected keys: stem.conv.weight")),
    Case("3-channel checkpoint for a 1-channel pair", _checkpoint(_three_channels),
         ("{tmp}/model.pt", "3-channel input", "backbone.params.in_channels")),
    Case("custom backbone without a class", lambda tmp: ["backbone=custom"],
         ("backbone=custom needs backbone.model._target_",)),
    Case("custom backbone class not importable",
         lambda tmp: ["backbone=custom", "backbone.model._target_=no_such_pkg.Net"],
         ("'no_such_pkg.Net' cannot be imported", "PYTHONPATH")),
    Case("torchvision architecture that does not exist",
         lambda tmp: ["backbone=torchvision", "backbone.arch=resnet7"],
         ("torchvision has no model 'resnet7'",)),
    Case("pretrained weights not on the machine",
         lambda tmp: ["backbone=torchvision", "backbone.arch=resnet50",
                      "backbone.weights=IMAGENET1K_V1"],
         ("resnet50-0676ba61.pth", "backbone.download=true")),
    Case("a model that cannot take the input",
         lambda tmp: ["backbone=torchvision", "backbone.arch=vit_b_16"],
         ("VisionTransformer cannot run on a (3, 32, 32) input", "backbone.input.size")),
]


def _cache_entries(cache: Path) -> set[Path]:
    return {p for p in cache.rglob("*") if p.is_file()} if cache.exists() else set()


@dataclass
class Outcome:
    tmp: Path
    proc: subprocess.CompletedProcess
    new_cache_entries: set[Path]


def _run(case: Case, tmp: Path, root: Path) -> Outcome:
    cache, out = tmp / "cache", tmp / "out"
    args = case.build(tmp)
    before = _cache_entries(cache)
    flags = args[:2] if args[:1] == ["--config-dir"] else []  # Hydra's flags come first
    proc = ood_bench([*flags, *SIZES, *args[len(flags):], f"hydra.run.dir={out}"], cache, root)
    return Outcome(tmp, proc, _cache_entries(cache) - before)


@pytest.fixture(scope="module")
def outcomes(root, tmp_path_factory) -> dict[str, Outcome]:
    """Every case run once, as many at a time as there are CPU cores (each is one process,
    mostly start-up)."""
    tmps = {c.name: tmp_path_factory.mktemp("bad") for c in CASES}
    with ThreadPoolExecutor(max_workers=max(1, os.cpu_count() or 1)) as pool:
        futures = {c.name: pool.submit(_run, c, tmps[c.name], root) for c in CASES}
        return {name: f.result() for name, f in futures.items()}


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input_is_a_message(case: Case, outcomes) -> None:
    outcome = outcomes[case.name]
    proc, tmp = outcome.proc, outcome.tmp
    text = proc.stdout + proc.stderr
    assert proc.returncode == case.code, text[-3000:]
    assert "Traceback" not in text and "Logging error" not in text, text[-3000:]
    for expected in case.expect:
        assert expected.format(tmp=tmp) in proc.stderr, (expected, proc.stderr[-3000:])
    out = tmp / "out"
    assert not any((out / name).exists() for name in TRUSTED), sorted(out.rglob("*"))
    trusted = {p for p in outcome.new_cache_entries
               if p.suffix in (".npz", ".pt", ".json") and "datasets" not in p.parts}
    assert not trusted, trusted


def test_the_matrix_has_at_least_25_cases() -> None:
    assert len(CASES) >= 25 and len({c.name for c in CASES}) == len(CASES)

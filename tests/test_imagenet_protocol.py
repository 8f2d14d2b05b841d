"""The ImageNet protocol end to end on a tiny synthetic layout: ImageNet-1K as an ImageFolder
(1,000 classes, one or two images each), the OOD sets as OpenOOD image lists (and one as a
plain folder), a randomly initialised torchvision ResNet-18, files read lazily."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
import torchvision
from PIL import Image

from benchmark.pipeline import data
from benchmark.pipeline.lazy import LazyImages
from tests.commands import ood_bench

OOD = {"ssb_hard": "images_largescale", "inaturalist": "images_largescale",
       "openimage_o": "images_largescale", "texture": "images_classic"}


def _png(path, rng, size=(12, 10)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).save(path)


@pytest.fixture(scope="module")
def imagenet_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("imagenet_root")
    rng = np.random.default_rng(0)
    for c in range(1000):
        wnid = f"n{c:08d}"
        _png(root / "imagenet" / "train" / wnid / "a.png", rng)
        _png(root / "imagenet" / "val" / wnid / "v.png", rng, (9, 14))
    lists = root / "benchmark_imglist" / "imagenet"
    lists.mkdir(parents=True)
    for name, under in OOD.items():
        lines = []
        for i in range(24):
            rel = f"{name}/images/{i}.png"
            _png(root / under / rel, rng)
            lines.append(f"{rel} -1")
        listed = "textures" if name == "texture" else name
        (lists / f"test_{listed}.txt").write_text("\n".join(lines) + "\n")
    for i in range(24):  # NINCO as a plain folder of images (the entry's second source)
        _png(root / "ninco" / f"{i}.png", rng)
    return root


def test_imagenet_sets_are_read_lazily_and_hashed_by_content(imagenet_root) -> None:
    val = data.load("imagenet", "test", roots=[imagenet_root])
    assert isinstance(val.images, LazyImages) and val.images.shape == (1000, 224, 224, 3)
    assert val.source.startswith("image_folder:") and val.labels[999] == 999
    batch = val.images[10:14]
    assert batch.shape == (4, 224, 224, 3) and batch.dtype == np.uint8
    ssb = data.load("openood_in_ssb_hard", "imagenet", roots=[imagenet_root])
    assert ssb.source.startswith("image_list:") and len(ssb) == 24
    sub = ssb.take(np.array([3, 5]))
    assert isinstance(sub.images, LazyImages) and np.array_equal(sub.images[0], ssb.images[3])
    path = imagenet_root / "images_largescale" / "ssb_hard" / "images" / "0.png"
    before = ssb.content_hash
    data._MEMORY.clear()
    original = path.read_bytes()
    _png(path, np.random.default_rng(9))
    try:
        changed = data.load("openood_in_ssb_hard", "imagenet", roots=[imagenet_root])
        assert changed.content_hash != before
    finally:
        path.write_bytes(original)
        data._MEMORY.clear()


def test_imagenet_pair_runs_end_to_end(imagenet_root, tmp_path) -> None:
    torch.manual_seed(0)
    checkpoint = tmp_path / "resnet18_random.pt"
    torch.save(torchvision.models.resnet18(num_classes=1000).state_dict(), checkpoint)
    out = tmp_path / "run"
    proc = ood_bench(["pair=imagenet", "backbone=torchvision", "backbone.arch=resnet18",
                      f"backbone.checkpoint={checkpoint}", "backbone.input.size=64",
                      "detector=pytorch_ood/energy", f"data.root={imagenet_root}",
                      "data.mirrors=[]", "data.calibration_size=100", "data.fit_size=300",
                      "data.max_id_test=200", "data.min_set_size=10", "data.batch_size=64",
                      "bootstrap.resamples=0", "analysis.inhouse=false",
                      f"hydra.run.dir={out}"], tmp_path / "cache")
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = pd.read_csv(out / "metrics.csv")
    assert sorted(rows["ood_dataset"]) == ["inaturalist", "ninco", "openimage_o", "ssb_hard",
                                       "textures"]
    assert set(rows["status"]) == {"ok"}
    assert dict(zip(rows["ood_dataset"], rows["ood_group"], strict=True))["ninco"] == "near"
    manifest = json.loads((out / "manifest.json").read_text())
    network = manifest["backbone"]["network"]
    assert network["head"] == "fc" and network["feature_maps"] == "layer4"
    assert network["num_classes"] == 1000 and manifest["backbone"]["missing"] == {}
    assert manifest["datasets"]["id_test"]["shape"] == [224, 224, 3]

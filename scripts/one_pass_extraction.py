"""Extraction in one forward pass: its arrays against the cached ones an earlier version wrote,
and its time against a maps pass plus a features pass, in one run.

    OOD_BENCH_DATA_ROOT=../shared/data python scripts/one_pass_extraction.py

Uses the committed ResNet-20 (results/checkpoints/resnet20_cifar10.pt) and the representation
cache under $OOD_BENCH_CACHE (default ~/.cache/ood-bench); a split not cached there is skipped.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from benchmark import compute
from benchmark.atomic import load_npz
from benchmark.pipeline import data
from benchmark.pipeline.backbones import Recipe, get_backbone
from benchmark.pipeline.features import extract, representation_key

REPO = Path(__file__).resolve().parents[1]
T = data.InputTransform(32, 3, (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616))


def main() -> None:
    root = Path(os.environ.get("OOD_BENCH_DATA_ROOT", REPO.parent / "shared" / "data"))
    cache = Path(os.environ.get("OOD_BENCH_CACHE", "~/.cache/ood-bench")).expanduser()
    with compute.pinned(compute.ComputeSettings(threads=2, onednn=True)), \
            tempfile.TemporaryDirectory() as tmp:
        test = data.load("cifar10", "test", root)
        bb = get_backbone("resnet20", {"in_channels": 3, "num_classes": 10}, Recipe(), test, T,
                          Path(tmp), torch.device("cpu"),
                          str(REPO / "results/checkpoints/resnet20_cifar10.pt"))
        for ds in (test, data.load("dtd", "all", root)):
            key = representation_key(bb.sha256, ds, T)
            old = load_npz(cache / "representations" / f"{key}.npz")
            if old is None:
                print(f"{ds.name}/{ds.split}: not cached, skipped")
                continue
            old_maps = load_npz(cache / "representations" / f"{key}.maps.npz")
            new, _ = extract(bb.model, ds, T, bb.sha256, Path(tmp) / key, torch.device("cpu"),
                             512, with_maps=old_maps is not None)
            arrays = {"logits": new.logits, "features": new.features, **{
                f"stats/{layer}/{red}": a for layer, reds in new.layer_stats.items()
                for red, a in reds.items()}}
            same = sum(np.array_equal(a, old[k]) for k, a in arrays.items())
            maps = ("" if old_maps is None else ", feature maps bit-identical: "
                    f"{np.array_equal(new.feature_maps, old_maps['feature_maps'])}")
            print(f"{ds.name}/{ds.split}: {same} of {len(arrays)} arrays bit-identical{maps}")
        xs = [x for x, _ in data.batches(data.subsample(test, 4096, 0), T, 512)]
        with torch.no_grad():
            for _ in range(2):
                t0 = time.perf_counter()
                for x in xs:
                    bb.model.forward_all(x, with_maps=True)
                one = time.perf_counter() - t0
                t0 = time.perf_counter()
                for x in xs:
                    bb.model.forward_feature_maps(x)
                    bb.model.forward_features(x)
                two = time.perf_counter() - t0
                print(f"4,096 images: one pass {one:.2f} s, maps pass + features pass "
                      f"{two:.2f} s, ratio {two / one:.2f}")


if __name__ == "__main__":
    main()

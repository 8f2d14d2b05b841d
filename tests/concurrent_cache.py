"""One process of the concurrency test: train a tiny LeNet and extract one split into a
shared cache, then print what it computed itself (``python -m tests.concurrent_cache``)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch

from benchmark.atomic import checksum
from benchmark.pipeline import data as data_mod
from benchmark.pipeline.backbones import Recipe, get_backbone
from benchmark.pipeline.features import extract

TRANSFORM = data_mod.InputTransform(28, 1, (0.1307,), (0.3081,))


def main(cache: Path, root: Path) -> None:
    torch.set_num_threads(1)
    train = data_mod.load("mnist", "train", root)
    recipe = Recipe(epochs=1, batch_size=128, optimizer="adam", lr=3e-3, seed=0)
    bb = get_backbone("lenet", {"in_channels": 1, "num_classes": 10, "width": 8}, recipe,
                      train.take(np.arange(1500), split="train"), TRANSFORM, cache,
                      torch.device("cpu"))
    test = data_mod.load("mnist", "test", root).take(np.arange(3000))
    reps, hit = extract(bb.model, test, TRANSFORM, bb.sha256, cache, torch.device("cpu"), 256,
                        with_maps=True)
    arrays = {"logits": reps.logits, "features": reps.features, "maps": reps.feature_maps}
    print(json.dumps({"trained": bb.trained_now, "extracted": not hit, "sha256": bb.sha256,
                      "arrays": checksum(arrays)}))


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))

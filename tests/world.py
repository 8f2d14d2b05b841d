"""The test world every adapter test shares: a tiny MNIST LeNet trained once, its cached
representations of real MNIST / Fashion-MNIST splits, and the inputs behind them.

Built through the harness's own pipeline (``data.load``, ``get_backbone``, ``extract``) into a
throwaway cache, so the adapters see exactly what the runner would hand them.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from benchmark.pipeline import data as data_mod
from benchmark.pipeline.backbones import Recipe, get_backbone
from benchmark.pipeline.features import extract
from benchmark.representations import Network, Representations
from benchmark.runner.prepare import input_batches

BATCH = 128
N_TRAIN, N_FIT, N_CAL, N_TEST = 6000, 2000, 1000, 500


class StandardLayout(data_mod.InputTransform):
    """The MNIST transform with plain NCHW strides.

    ``InputTransform`` returns 1-channel batches whose channel stride is 1 (a permuted view:
    valid for both NCHW and NHWC), which oneDNN convolves with its channels-last kernel, while
    a batch re-assembled by ``torch.cat`` (OpenOOD's loader) gets plain strides and the other
    kernel: the same images then differ in the last float32 bit. The world uses one layout
    throughout, so that live-model and cached paths can be compared bit for bit.
    """

    def __call__(self, images: np.ndarray) -> torch.Tensor:
        return super().__call__(images).clone(memory_format=torch.contiguous_format)


TRANSFORM = StandardLayout(28, 1, (0.1307,), (0.3081,))
RECIPE = Recipe(epochs=2, batch_size=BATCH, optimizer="adam", lr=3e-3, seed=0)


@dataclass
class World:
    """What a detector can be given: a trained model and the runner's representations.

    ``model`` is the trained LeNet with a dropout layer appended to its penultimate block
    (identity in eval mode), so that dropout-sampling detectors fit the world too. ``test`` is
    the ID test rows then the OOD rows (``n_id`` of them ID).
    """

    model: nn.Module
    fit: Representations
    calibration: Representations
    id: Representations
    ood: Representations
    test: Representations
    n_id: int
    tensors: dict[str, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)

    def network(self, batch_size: int = BATCH, model: nn.Module | None = None) -> Network:
        return Network(model if model is not None else self.model, torch.device("cpu"),
                       num_classes=10, batch_size=batch_size, input_mean=TRANSFORM.mean,
                       input_std=TRANSFORM.std)

    @property
    def accuracy(self) -> float:
        return float((self.id.predictions == self.id.labels).mean())


def tensor_batches(x: torch.Tensor, y: torch.Tensor, batch_size: int = BATCH):
    """``Representations.inputs`` over already transformed tensors."""
    return lambda: ((x[s:s + batch_size], y[s:s + batch_size]) for s in range(0, len(x),
                                                                              batch_size))


def with_rows(reps: Representations, rows: np.ndarray, x: torch.Tensor, y: torch.Tensor,
              batch_size: int = BATCH) -> Representations:
    """Rows ``rows`` of ``reps`` with their inputs (in that order) attached."""
    out = reps.subset(rows)
    out.inputs = tensor_batches(x[rows], y[rows], batch_size)
    return out


def build_world(root: Path, cache: Path) -> World:
    """The world, computed with one intra-op thread (the tests that re-run the model compare
    against these representations bit for bit, and the thread count changes the last bits)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _build(root, cache)
    finally:
        torch.set_num_threads(threads)


def _build(root: Path, cache: Path) -> World:
    train = data_mod.load("mnist", "train", root)
    mnist_test = data_mod.load("mnist", "test", root)
    fashion = data_mod.load("fashionmnist", "test", root)
    sets = {
        "train": train.take(np.arange(N_TRAIN), split="train"),
        "fit": train.take(np.arange(N_FIT), split="fit"),  # fit from the training images
        "calibration": train.take(np.arange(N_TRAIN, N_TRAIN + N_CAL), split="calibration"),
        "id": mnist_test.take(np.arange(N_TEST)),
        "ood": fashion.take(np.arange(N_TEST)),
    }
    backbone = get_backbone("lenet", {"in_channels": 1, "num_classes": 10, "width": 8},
                            RECIPE, sets["train"], TRANSFORM, cache, torch.device("cpu"))
    model = copy.deepcopy(backbone.model)
    model.model.fc1.append(nn.Dropout(0.5))
    model.eval()
    reps, tensors = {}, {}
    for name in ("fit", "calibration", "id", "ood"):
        reps[name], _ = extract(model, sets[name], TRANSFORM, backbone.sha256, cache,
                                torch.device("cpu"), BATCH, with_maps=True)
        x = torch.cat([xb for xb, _ in input_batches(sets[name], TRANSFORM, BATCH)()])
        y = torch.from_numpy(sets[name].labels.astype(np.int64))
        if name == "ood":  # OOD rows carry no ID class
            y = torch.full((N_TEST,), -1, dtype=torch.long)
            reps[name].labels = y.numpy()
        reps[name].inputs = tensor_batches(x, y)
        tensors[name] = (x, y)
    test = reps["id"].concat(reps["ood"], name="id+ood")
    x_test = torch.cat([tensors["id"][0], tensors["ood"][0]])
    y_test = torch.cat([tensors["id"][1], tensors["ood"][1]])
    test.inputs = tensor_batches(x_test, y_test)
    tensors["test"] = (x_test, y_test)
    return World(model=model, fit=reps["fit"], calibration=reps["calibration"], id=reps["id"],
                 ood=reps["ood"], test=test, n_id=N_TEST, tensors=tensors)

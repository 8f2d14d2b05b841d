"""The types every stage speaks: what one forward pass produced, and the live network.

Kept free of heavy imports so adapters and tests can use them without pulling in the harness.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

# Batches of model-ready inputs (already transformed) with their labels.
InputBatches = Callable[[], Iterator[tuple[torch.Tensor, torch.Tensor]]]


@dataclass
class Representations:
    """One forward pass over one dataset split, as numpy arrays (row i = sample i).

    ``layer_stats[layer][reduction]`` is an ``N x C_layer`` matrix of per-channel spatial
    reductions (``"max"``, ``"mean"``) of that monitored layer's activations.
    ``feature_maps`` is only present when a detector asked for it (it is large).
    ``inputs`` re-creates the model-ready batches for detectors that need the live model; it is
    attached at run time, never cached.
    """

    logits: np.ndarray
    features: np.ndarray
    labels: np.ndarray
    layer_stats: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    feature_maps: np.ndarray | None = None
    key: str = ""
    name: str = ""
    inputs: InputBatches | None = None

    def __post_init__(self) -> None:
        n = len(self.logits)
        if len(self.features) != n or len(self.labels) != n:
            raise ValueError("logits, features and labels must have the same number of rows")

    def __len__(self) -> int:
        return len(self.logits)

    @property
    def predictions(self) -> np.ndarray:
        return self.logits.argmax(axis=1)

    @property
    def num_classes(self) -> int:
        return self.logits.shape[1]

    def subset(self, index: np.ndarray) -> Representations:
        """Rows ``index`` of every array (used by robustness probes and tests)."""
        stats = {
            layer: {red: arr[index] for red, arr in reds.items()}
            for layer, reds in self.layer_stats.items()
        }
        maps = None if self.feature_maps is None else self.feature_maps[index]
        return Representations(
            logits=self.logits[index],
            features=self.features[index],
            labels=self.labels[index],
            layer_stats=stats,
            feature_maps=maps,
            key=f"{self.key}[subset]",
            name=self.name,
            inputs=None,
        )

    def concat(self, other: Representations, name: str | None = None) -> Representations:
        """These rows, then ``other``'s (feature maps only when both have them; no inputs)."""
        stats = {layer: {red: np.concatenate([arr, other.layer_stats[layer][red]])
                         for red, arr in reds.items()} for layer, reds in self.layer_stats.items()}
        maps = (None if self.feature_maps is None or other.feature_maps is None
                else np.concatenate([self.feature_maps, other.feature_maps]))
        return Representations(
            logits=np.concatenate([self.logits, other.logits]),
            features=np.concatenate([self.features, other.features]),
            labels=np.concatenate([self.labels, other.labels]), layer_stats=stats,
            feature_maps=maps, key=f"{self.key}+{other.key}",
            name=self.name if name is None else name)


@dataclass
class Network:
    """The live classifier, for detectors that need weights or extra forward passes.

    ``model`` is a wrapped classifier (``benchmark.pipeline.wrapper``): ``forward(x) -> logits``,
    ``forward_features(x) -> B x D`` penultimate, ``forward_head(f) -> logits``,
    ``forward_feature_maps(x) -> B x C x H x W``, ``forward_from_feature_maps(m) -> logits``,
    ``fc`` (the final ``nn.Linear``) and ``monitored_layers() -> {name: module}``.
    Each detector receives its own deep copy, in eval mode, so none can mutate another's.
    """

    model: nn.Module
    device: torch.device
    num_classes: int
    batch_size: int = 256
    # the backbone's input normalisation (input-perturbation methods step in pixel units)
    input_mean: tuple[float, ...] | None = None
    input_std: tuple[float, ...] | None = None

    @property
    def fc(self) -> nn.Linear:
        return self.model.fc  # type: ignore[return-value]


class PrivateNetwork(Network):
    """A :class:`Network` whose model is a deep copy of ``source``, made on first use.

    Each detector gets its own copy (none can mutate another's); most detectors of a sweep read
    cached representations only and never touch the model, so they cost no copy."""

    def __init__(self, source: nn.Module, device: torch.device, num_classes: int,
                 batch_size: int = 256, input_mean: tuple[float, ...] | None = None,
                 input_std: tuple[float, ...] | None = None) -> None:
        self._source: nn.Module = source
        self._own: nn.Module | None = None
        self.device, self.num_classes, self.batch_size = device, num_classes, batch_size
        self.input_mean, self.input_std = input_mean, input_std

    @property  # type: ignore[override]
    def model(self) -> nn.Module:
        if self._own is None:
            self._own = copy.deepcopy(self._source).eval()
        return self._own

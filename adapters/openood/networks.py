"""Networks that speak OpenOOD's contract, built from a zoo backbone or from cached arrays.

OpenOOD's postprocessors call, depending on the method:

* ``net(x)`` -> logits; ``net(x, return_feature=True)`` -> ``(logits, penultimate)``;
  ``net(x, return_feature_list=True)`` -> ``(logits, [layer outputs])`` (Gram, GMM, MDS ensemble);
* ``net.get_fc()`` -> numpy ``(W, b)``; ``net.get_fc_layer()`` and ``net.fc`` -> the
  ``nn.Linear`` head (ViM, DICE, GradNorm, fDBD, NCI, VRA, Residual);
* ``net.forward_threshold(x, t)`` (ReAct, ASH, SCALE; provided by OpenOOD's own ``ReactNet``,
  ``ASHNet``, ``ScaleNet`` wrapped around these networks);
* ``net.intermediate_forward(x, layer_index)``, ``net.avgpool``, ``net.layer4``, ``net.fc``
  (RankFeat; ResNet-specific, see :class:`RankFeatNet`).

Three networks implement it:

* :class:`ZooNet` runs a live zoo backbone (``forward_features``, ``forward_head``,
  ``monitored_layers`` ...) end to end on images.
* :class:`ReplayNet` is a head-only network for *feature replay*: its "input" is a row of cached
  ``[logits | penultimate features]`` and it returns exactly those arrays, so every postprocessor
  that reads only logits, penultimate features and the final linear layer runs on the
  harness's cache without another forward pass.
* :class:`RankFeatNet` gives RankFeat the ResNet attribute names it expects, on top of either the
  live model or cached feature maps.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import numpy as np
import torch
from torch import nn

ZOO_METHODS = ("forward_features", "forward_head")


def frozen_copy(module: nn.Module, device: torch.device) -> nn.Module:
    """A private, eval-mode, gradient-free copy (OpenOOD's ODIN/GradNorm call ``backward``)."""
    out = copy.deepcopy(module).eval().to(device)
    for p in out.parameters():
        p.requires_grad_(False)
    return out


def _fc_numpy(fc: nn.Linear) -> tuple[np.ndarray, np.ndarray]:
    return fc.weight.detach().cpu().numpy(), fc.bias.detach().cpu().numpy()


class _FCMixin:
    """``get_fc`` / ``get_fc_layer`` over an ``nn.Linear`` stored as ``self.fc``."""

    fc: nn.Linear

    def get_fc(self) -> tuple[np.ndarray, np.ndarray]:
        return _fc_numpy(self.fc)

    def get_fc_layer(self) -> nn.Linear:
        return self.fc


class ZooNet(_FCMixin, nn.Module):
    """OpenOOD's network contract around a live zoo backbone.

    ``in_channels``: when OpenOOD code indexes input channels 0, 1 and 2 (ODIN's and MDS
    ensemble's input perturbation), 1-channel inputs are zero-padded to 3 channels by the loader
    and this network reads only the first ``in_channels`` of them; the padded channels never
    reach the model, so the perturbation of the real channel is exactly OpenOOD's.

    ``return_feature_list`` returns the outputs of ``backbone.monitored_layers()`` in order
    (LeNet: conv1, conv2, fc1; the last is the penultimate layer), captured by forward hooks.
    ``feature_size`` is the penultimate dimension (AdaScale reads it).
    """

    def __init__(self, backbone: nn.Module, in_channels: int | None = None,
                 feature_size: int | None = None) -> None:
        super().__init__()
        missing = [m for m in ZOO_METHODS if not hasattr(backbone, m)]
        if missing or not isinstance(getattr(backbone, "fc", None), nn.Linear):
            raise TypeError(
                "the backbone does not follow the zoo contract (needs forward_features, "
                f"forward_head and an nn.Linear 'fc'); missing: {missing or ['fc']}"
            )
        self.backbone = backbone
        self.in_channels = in_channels
        self.feature_size = feature_size

    @property
    def fc(self) -> nn.Linear:  # type: ignore[override]
        return self.backbone.fc

    def _layers(self) -> dict[str, nn.Module]:
        if not hasattr(self.backbone, "monitored_layers"):
            raise TypeError("return_feature_list needs backbone.monitored_layers()")
        return dict(self.backbone.monitored_layers())

    def forward(self, x: torch.Tensor, return_feature: bool = False,
                return_feature_list: bool = False):
        if self.in_channels is not None and x.shape[1] != self.in_channels:
            x = x[:, : self.in_channels]
        if return_feature_list and not return_feature:
            captured: list[torch.Tensor] = []
            hooks = [m.register_forward_hook(lambda _m, _i, out: captured.append(out))
                     for m in self._layers().values()]
            try:
                logits = self.backbone.forward_head(self.backbone.forward_features(x))
            finally:
                for h in hooks:
                    h.remove()
            return logits, captured
        features = self.backbone.forward_features(x)
        logits = self.backbone.forward_head(features)
        if return_feature:
            return logits, features
        return logits


class ReplayNet(_FCMixin, nn.Module):
    """Head-only network whose input rows are cached ``[logits (C) | features (D)]``.

    ``forward`` returns clones of the cached values (ASH and SCALE modify the feature tensor in
    place), so postprocessors see exactly what the live model produced at extraction time.
    ``fc`` is a frozen copy of the model's final layer, for the methods that recompute logits
    from modified features (ReAct, ASH, SCALE, VRA, DICE) or read its weights.
    """

    def __init__(self, fc: nn.Linear, num_classes: int) -> None:
        super().__init__()
        self.fc = fc
        self.num_classes = num_classes
        self.feature_size = fc.in_features

    def split(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return x[:, : self.num_classes].clone(), x[:, self.num_classes:].clone()

    def forward(self, x: torch.Tensor, return_feature: bool = False,
                return_feature_list: bool = False):
        logits, features = self.split(x)
        if return_feature:
            return logits, features
        if return_feature_list:
            raise RuntimeError("per-layer outputs are not cached: this postprocessor needs the "
                               "live model (mode='model')")
        return logits


class _FlatHead(nn.Module):
    """``fc`` for RankFeat: flattened feature maps -> logits via the model's own head."""

    def __init__(self, head: Callable[[torch.Tensor], torch.Tensor], shape: list[int]) -> None:
        super().__init__()
        self.head = head
        self.shape = shape  # C, H, W of the maps; filled on first use

    def forward(self, flat: torch.Tensor) -> torch.Tensor:
        return self.head(flat.reshape(flat.shape[0], *self.shape))


class RankFeatNet(nn.Module):
    """The ResNet surface RankFeat reads, for any zoo backbone.

    OpenOOD's RankFeat removes the rank-1 component of block-4 maps and computes
    ``fc(flatten(avgpool(maps)))``; for block 3 it also runs ``layer4``. A zoo backbone exposes
    one block boundary, ``forward_feature_maps`` / ``forward_from_feature_maps``, so here
    ``intermediate_forward`` returns those maps for both indices, ``avgpool`` and ``layer4`` are
    identities and ``fc`` is the backbone's own remaining head. The block-3 branch therefore
    repeats the block-4 branch and the fused logits equal the last-block RankFeat logits.

    ``replay=True``: the input rows are cached feature maps (``Representations.feature_maps``);
    otherwise images for the live backbone.
    """

    def __init__(self, backbone: nn.Module, replay: bool) -> None:
        super().__init__()
        for m in ("forward_feature_maps", "forward_from_feature_maps"):
            if not hasattr(backbone, m):
                raise TypeError(f"RankFeat needs backbone.{m} (zoo contract)")
        self.backbone = backbone
        self.replay = replay
        self.avgpool = nn.Identity()
        self.layer4 = nn.Identity()
        self._shape: list[int] = []
        self.fc = _FlatHead(backbone.forward_from_feature_maps, self._shape)

    def maps(self, x: torch.Tensor) -> torch.Tensor:
        out = x if self.replay else self.backbone.forward_feature_maps(x)
        if out.dim() != 4:
            raise RuntimeError(f"RankFeat needs B x C x H x W feature maps, got {tuple(out.shape)}")
        self._shape[:] = list(out.shape[1:])
        return out

    def intermediate_forward(self, x: torch.Tensor, layer_index: int) -> torch.Tensor:
        return self.maps(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone.forward_from_feature_maps(self.maps(x))

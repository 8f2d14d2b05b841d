"""CIFAR residual networks: ResNet-20 (He et al. 2016) and OpenOOD's ResNet18_32x32 layout.

``ResNet18`` uses the same parameter names as OpenOOD's ``ResNet18_32x32`` (conv1, bn1,
layer1..4 with ``shortcut``, fc), so its published checkpoints load with ``load_state_dict``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_planes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class _CifarResNet(nn.Module):
    """Shared trunk: stem, residual stages, global average pool, linear classifier, as a
    chain of top-level children (what the harness wrapper reads the feature maps from)."""

    stem: nn.Module
    stages: list[str]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.stem(x)
        for name in self.stages:
            out = getattr(self, name)(out)
        return self.fc(self.avgpool(out).flatten(1))

    def monitored_layers(self) -> dict[str, nn.Module]:
        """The stem and every residual block (block outputs, after the residual ReLU)."""
        layers: dict[str, nn.Module] = {"stem": self.stem}
        for name in self.stages:
            for i, block in enumerate(getattr(self, name)):
                layers[f"{name}.{i}"] = block
        return layers


class _Stem(nn.Module):
    def __init__(self, conv: nn.Conv2d, bn: nn.BatchNorm2d) -> None:
        super().__init__()
        self.conv, self.bn = conv, bn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)))


class ResNet20(_CifarResNet):
    """ResNet-20 for 32x32 inputs: 3 stages x 3 basic blocks, 16/32/64 channels (0.27 M params)."""

    def __init__(self, in_channels: int = 3, num_classes: int = 10, blocks: int = 3,
                 width: int = 16) -> None:
        super().__init__()
        self.stem = _Stem(nn.Conv2d(in_channels, width, 3, 1, 1, bias=False),
                          nn.BatchNorm2d(width))
        planes, layers = width, []
        for i, mult in enumerate((1, 2, 4)):
            out = width * mult
            stride = 1 if i == 0 else 2
            blocks_ = [BasicBlock(planes, out, stride)] + [BasicBlock(out, out)
                                                           for _ in range(blocks - 1)]
            setattr(self, f"layer{i + 1}", nn.Sequential(*blocks_))
            layers.append(f"layer{i + 1}")
            planes = out
        self.stages = layers
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(planes, num_classes)
        self.num_classes = num_classes
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")


class ResNet18(_CifarResNet):
    """ResNet-18 for 32x32 inputs with OpenOOD ``ResNet18_32x32`` parameter names."""

    def __init__(self, in_channels: int = 3, num_classes: int = 10) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 64, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU()
        planes = 64
        for i, (out, stride) in enumerate(((64, 1), (128, 2), (256, 2), (512, 2))):
            setattr(self, f"layer{i + 1}",
                    nn.Sequential(BasicBlock(planes, out, stride), BasicBlock(out, out)))
            planes = out
        self.stages = ["layer1", "layer2", "layer3", "layer4"]
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(512, num_classes)
        self.num_classes = num_classes

    def stem(self, x: torch.Tensor) -> torch.Tensor:  # a method, so state-dict keys stay OpenOOD's
        return self.relu(self.bn1(self.conv1(x)))

    def monitored_layers(self) -> dict[str, nn.Module]:
        layers: dict[str, nn.Module] = {"stem": self.bn1}
        for name in self.stages:
            for i, block in enumerate(getattr(self, name)):
                layers[f"{name}.{i}"] = block
        return layers

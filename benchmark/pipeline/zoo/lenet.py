"""LeNet-style CNN for 28x28 inputs (MNIST family)."""

from __future__ import annotations

import torch
from torch import nn


class LeNet(nn.Module):
    """Two conv blocks, a 128-d penultimate layer, a linear classifier.

    Monitored layers are the ReLU outputs of each block (conv1, conv2, fc1), which is where
    the in-house detector reads per-channel statistics.
    """

    def __init__(self, in_channels: int = 1, num_classes: int = 10, width: int = 32) -> None:
        super().__init__()
        self.conv1 = nn.Sequential(nn.Conv2d(in_channels, width, 5, padding=2), nn.ReLU())
        self.pool1 = nn.MaxPool2d(2)
        self.conv2 = nn.Sequential(nn.Conv2d(width, 2 * width, 5), nn.ReLU())
        self.pool2 = nn.MaxPool2d(2)
        self.fc1 = nn.Sequential(nn.Flatten(), nn.Linear(2 * width * 5 * 5, 128), nn.ReLU())
        self.fc = nn.Linear(128, num_classes)
        self.num_classes = num_classes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.fc1(self.pool2(self.conv2(self.pool1(self.conv1(x))))))

    def monitored_layers(self) -> dict[str, nn.Module]:
        return {"conv1": self.conv1, "conv2": self.conv2, "fc1": self.fc1}

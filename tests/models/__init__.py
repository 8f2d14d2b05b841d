"""Models a user would bring (``backbone=custom backbone.model._target_=tests.models.<Class>``)."""

from __future__ import annotations

import torch
from torch import nn


class TinyCNN(nn.Module):
    """A user's own CNN, written without the harness in mind: functional ReLUs, a pooled head."""

    def __init__(self, in_channels: int = 3, num_classes: int = 10, width: int = 8) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, 3, padding=1), nn.BatchNorm2d(2 * width), nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(2 * width, 4 * width, 3, padding=1), nn.ReLU())
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(4 * width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.pool(self.body(x)), 1))


class LogitsAfterSoftmax(nn.Module):
    """Returns probabilities, not logits: no ``nn.Linear`` produces the output."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(3 * 32 * 32, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.flatten(1)).softmax(1)


def tiny_vit(num_classes: int = 10) -> nn.Module:
    """A ViT-style model (torchvision's VisionTransformer, 2 layers of width 32)."""
    from torchvision.models import VisionTransformer

    return VisionTransformer(image_size=32, patch_size=8, num_layers=2, num_heads=2,
                             hidden_dim=32, mlp_dim=64, num_classes=num_classes)


class NormedHead(TinyCNN):
    """A norm between the global pool and the classifier (ConvNeXt-style heads)."""

    def __init__(self, num_classes: int = 10, width: int = 8) -> None:
        super().__init__(num_classes=num_classes, width=width)
        self.norm = nn.LayerNorm(4 * width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.norm(torch.flatten(self.pool(self.body(x)), 1)))

"""Model zoo: architectures that follow the harness network contract.

Contract (also what OpenOOD and pytorch-ood adapters rely on):
``forward(x) -> logits``; ``forward_features(x) -> B x D`` penultimate features;
``forward_head(features) -> logits``; ``forward_feature_maps(x) -> B x C x H x W`` (last
convolutional block); ``forward_from_feature_maps(maps) -> logits``; ``fc`` the final
``nn.Linear``; ``monitored_layers() -> {name: module}`` whose outputs the in-house detector
summarises per channel.
"""

from benchmark.pipeline.zoo.lenet import LeNet
from benchmark.pipeline.zoo.resnet_cifar import ResNet18, ResNet20

ARCHITECTURES = {"lenet": LeNet, "resnet20": ResNet20, "resnet18": ResNet18}

__all__ = ["ARCHITECTURES", "LeNet", "ResNet18", "ResNet20"]

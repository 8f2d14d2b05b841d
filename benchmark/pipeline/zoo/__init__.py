"""Model zoo: the small classifiers the harness trains itself.

They are ordinary ``nn.Module`` classifiers: :func:`benchmark.pipeline.wrapper.wrap` finds
their features, feature maps and head as it does for any model (each is a chain of its
top-level children). ``monitored_layers()`` is their one hint: the layers whose per-channel
statistics the in-house detector reads (every residual block, not only the stages).
"""

from benchmark.pipeline.zoo.lenet import LeNet
from benchmark.pipeline.zoo.resnet_cifar import ResNet18, ResNet20

ARCHITECTURES = {"lenet": LeNet, "resnet20": ResNet20, "resnet18": ResNet18}

__all__ = ["ARCHITECTURES", "LeNet", "ResNet18", "ResNet20"]

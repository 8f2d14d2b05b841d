"""Model sources: torchvision, timm and the user's class build; missing weights are a message."""

from __future__ import annotations

import pytest
import torch
import torchvision

from benchmark.pipeline import model_sources
from benchmark.pipeline.model_sources import ModelSourceError, ModelSpec, build
from tests.conftest import unavailable
from tests.models import TinyCNN
from tests.pipeline.test_downloads import server  # noqa: F401 - the loopback file server


def test_torchvision_builds_any_architecture_without_weights() -> None:
    model = build(ModelSpec(arch="mobilenet_v3_small", params={"num_classes": 7},
                            source="torchvision"))
    assert model.classifier[-1].out_features == 7
    with pytest.raises(ModelSourceError, match="torchvision has no model 'resnet7'"):
        build(ModelSpec(arch="resnet7", source="torchvision"))


def test_missing_torchvision_weights_say_what_to_download_and_where(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    spec = ModelSpec(arch="resnet50", source="torchvision", weights="IMAGENET1K_V1")
    with pytest.raises(ModelSourceError) as info:
        build(spec)
    text = str(info.value)
    assert "https://download.pytorch.org/models/resnet50-0676ba61.pth" in text
    assert str(tmp_path / "torch" / "hub" / "checkpoints" / "resnet50-0676ba61.pth") in text
    assert "backbone.download=true" in text
    with pytest.raises(ModelSourceError, match="has no weights 'IMAGENET9K'.*IMAGENET1K_V2"):
        build(ModelSpec(arch="resnet50", source="torchvision", weights="IMAGENET9K"))
    with pytest.raises(ModelSourceError, match="1000 classes, backbone.params.num_classes=10"):
        build(ModelSpec(arch="resnet50", params={"num_classes": 10}, source="torchvision",
                        weights="IMAGENET1K_V1"))


def test_torchvision_weights_download_when_allowed(tmp_path, monkeypatch, server):  # noqa: F811
    served, base = server
    reference = torchvision.models.squeezenet1_1(num_classes=1000)
    torch.save(reference.state_dict(), served / "squeezenet.pth")
    cache = tmp_path / "hub" / "checkpoints" / "squeezenet.pth"
    monkeypatch.setattr(model_sources, "torchvision_weights_file",
                        lambda arch, weights: (f"{base}/squeezenet.pth", cache))
    spec = ModelSpec(arch="squeezenet1_1", source="torchvision", weights="IMAGENET1K_V1")
    with pytest.raises(ModelSourceError, match="not on this machine"):
        build(spec)
    spec = ModelSpec(arch="squeezenet1_1", source="torchvision", weights="IMAGENET1K_V1",
                     download=True)
    model = build(spec)
    assert cache.exists()
    for a, b in zip(model.state_dict().values(), reference.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    cache.write_bytes(b"not a checkpoint")
    with pytest.raises(ModelSourceError, match="does not hold the weights.*delete it"):
        build(spec)


def test_torchvision_input_follows_the_weights_metadata() -> None:
    meta = model_sources.torchvision_input("resnet50", "IMAGENET1K_V2")
    assert meta == {"size": 224, "resize": 232, "mean": [0.485, 0.456, 0.406],
                    "std": [0.229, 0.224, 0.225]}


def test_custom_class_by_target_and_its_errors() -> None:
    model = build(ModelSpec(arch="tests.models.TinyCNN", params={"num_classes": 4},
                            source="custom", target="tests.models.TinyCNN"))
    assert isinstance(model, TinyCNN) and model.classifier.out_features == 4
    with pytest.raises(ModelSourceError, match="cannot be imported.*PYTHONPATH"):
        build(ModelSpec(arch="x", source="custom", target="no_such_pkg.Net"))
    with pytest.raises(ModelSourceError, match="failed: .*unexpected keyword.*backbone.model"):
        build(ModelSpec(arch="x", params={"depth": 3}, source="custom",
                        target="tests.models.TinyCNN"))
    with pytest.raises(ModelSourceError, match="not an nn.Module"):
        build(ModelSpec(arch="x", source="custom", target="collections.OrderedDict"))


def test_timm_models_build_and_offline_weights_are_a_message(tmp_path, monkeypatch) -> None:
    try:
        import timm  # noqa: F401
    except ImportError:
        unavailable("timm", "timm is an extra: pip install -e '.[timm]'")
    model = build(ModelSpec(arch="resnet10t", params={"num_classes": 5}, source="timm"))
    assert model.eval()(torch.zeros(1, 3, 32, 32)).shape == (1, 5)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    with pytest.raises(ModelSourceError, match="not available.*backbone.download=true"):
        build(ModelSpec(arch="resnet10t", source="timm", weights=True))
    with pytest.raises(ModelSourceError, match="timm has no model 'no_such_net'"):
        build(ModelSpec(arch="no_such_net", source="timm"))

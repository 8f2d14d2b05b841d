"""The wrapper finds each view of a classifier, exactly, or names what the model lacks."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from benchmark.pipeline import data
from benchmark.pipeline.features import extract
from benchmark.pipeline.wrapper import NetworkContractError, wrap
from benchmark.pipeline.zoo import LeNet, ResNet18, ResNet20
from tests.models import LogitsAfterSoftmax, NormedHead, TinyCNN, tiny_vit

SHAPE = (3, 32, 32)


def _x(n: int = 4, shape=SHAPE) -> torch.Tensor:
    return torch.randn(n, *shape, generator=torch.Generator().manual_seed(1))


@torch.no_grad()
def test_zoo_models_are_ordinary_models_behind_the_wrapper() -> None:
    """Every view equals the zoo's own computation bit for bit (scores cannot move)."""
    torch.manual_seed(0)
    lenet = LeNet().eval()
    x = _x(shape=(1, 28, 28))
    w = wrap(lenet, (1, 28, 28))
    maps = lenet.pool2(lenet.conv2(lenet.pool1(lenet.conv1(x))))
    assert torch.equal(w.forward_feature_maps(x), maps)
    assert torch.equal(w.forward_features(x), lenet.fc1(maps))
    assert torch.equal(w.forward_from_feature_maps(maps), lenet(x))
    assert w.fc is lenet.fc and list(w.monitored_layers()) == ["conv1", "conv2", "fc1"]
    for model in (ResNet20().eval(), ResNet18().eval()):
        x = _x()
        w = wrap(model, SHAPE)
        maps = model.stem(x)
        for stage in model.stages:
            maps = getattr(model, stage)(maps)
        pooled = F.adaptive_avg_pool2d(maps, 1).flatten(1)
        assert torch.equal(w.forward_feature_maps(x), maps)
        assert torch.equal(w.forward_features(x), pooled)
        assert torch.equal(w.forward_head(pooled), model(x))
        assert torch.equal(w.forward_from_feature_maps(maps), model(x))
        assert dict(w.monitored_layers()) == dict(model.monitored_layers())
        assert w.layers_from_hint


@torch.no_grad()
@pytest.mark.parametrize("arch", ["resnet18", "mobilenet_v3_small", "vgg11_bn"])
def test_torchvision_cnns_get_every_view(arch: str) -> None:
    model = torchvision.models.get_model(arch, num_classes=10).eval()
    w = wrap(model, SHAPE)
    x = _x()
    logits = model(x)
    assert torch.equal(w.forward_head(w.forward_features(x)), logits)
    maps = w.forward_feature_maps(x)
    assert maps.dim() == 4 and w.missing() == {}
    assert torch.allclose(w.forward_from_feature_maps(maps), logits, atol=1e-5)
    assert w.fc.out_features == 10 and len(w.monitored_layers()) >= 4


@torch.no_grad()
def test_a_functional_pool_has_no_maps_unless_named() -> None:
    model = torchvision.models.densenet121(num_classes=10).eval()
    w = wrap(model, SHAPE)
    assert not w.has_feature_maps and "DenseNet" in w.missing()["feature_maps"]
    with pytest.raises(NetworkContractError, match="feature maps are not available"):
        w.forward_feature_maps(_x())
    model.features.norm5.bias.data.fill_(-0.5)  # as trained: the head's ReLU then matters
    named = wrap(model, SHAPE, feature_maps="features")
    x = _x()
    maps = named.forward_feature_maps(x)
    # DenseNet's head applies its ReLU in place, to this very output: the maps read are the
    # ReLU'd ones, and global pool + classifier of them are the logits
    assert maps.shape[1] == 1024 and float(maps.min()) >= 0.0
    assert torch.allclose(named.forward_from_feature_maps(maps), model(x), atol=1e-5)


@torch.no_grad()
def test_maps_before_a_norm_have_no_way_to_logits() -> None:
    w = wrap(NormedHead().eval(), SHAPE)
    assert w.describe()["feature_maps"] == "pool (its input)"
    assert w.forward_feature_maps(_x()).shape == (4, 32, 8, 8)
    assert "not a global pool" in w.missing()["forward_from_feature_maps"]
    with pytest.raises(NetworkContractError, match="logits cannot be computed from feature maps"):
        w.forward_from_feature_maps(w.forward_feature_maps(_x()))


@torch.no_grad()
def test_a_user_cnn_with_a_pooled_head() -> None:
    model = TinyCNN().eval()
    w = wrap(model, SHAPE)
    x = _x()
    assert w.describe()["head"] == "classifier" and w.describe()["feature_maps"] == "body"
    assert torch.equal(w.forward_from_feature_maps(w.forward_feature_maps(x)), model(x))


@torch.no_grad()
def test_a_vit_has_token_layers_and_no_feature_maps() -> None:
    model = tiny_vit().eval()
    w = wrap(model, SHAPE)
    assert w.describe()["head"] == "heads.head" and w.fc.in_features == 32
    assert set(w.missing()) == {"feature_maps"}
    seen = {}
    copied = copy.deepcopy(w)  # taps rebind to the copy's modules
    hooks = [m.register_forward_hook(lambda _m, _i, out, n=n: seen.__setitem__(n, out.shape))
             for n, m in copied.monitored_layers().items()]
    copied(_x())
    for h in hooks:
        h.remove()
    # tokens B x T x D are presented channel-first: B x D x T (D = 32, T = 16 patches + class)
    assert list(seen.values()) == [torch.Size([4, 32, 17])] * 2
    assert not any(len(m._forward_hooks) for m in w.taps.modules())


def test_monitored_patterns_match_one_segment_per_star() -> None:
    model = torchvision.models.resnet18(num_classes=10)
    w = wrap(model, SHAPE, monitored=["layer*.*"])
    assert list(w.monitored_layers()) == [f"layer{i}.{j}" for i in range(1, 5) for j in (0, 1)]
    assert not w.layers_from_hint
    with pytest.raises(NetworkContractError, match="matches no module"):
        wrap(model, SHAPE, monitored=["block*"])


def test_what_a_model_does_not_offer_is_named() -> None:
    with pytest.raises(NetworkContractError, match="no nn.Linear .* produces its output"):
        wrap(LogitsAfterSoftmax(), SHAPE)
    with pytest.raises(NetworkContractError, match="head='body' is not an nn.Linear.*classifier"):
        wrap(TinyCNN(), SHAPE, head="body")

    class Tokens(nn.Module):
        def forward(self, x):
            return {"logits": x.flatten(1)}

    with pytest.raises(NetworkContractError, match="must return a B x classes tensor"):
        wrap(Tokens(), SHAPE)


def test_extraction_of_a_vit_and_its_cache_key_follows_the_layers(root, tmp_path) -> None:
    images = data.subsample(data.load("cifar10", "test", root), 40, seed=0)
    t = data.InputTransform(32, 3, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
    torch.manual_seed(0)
    model = tiny_vit().eval()
    reps, _ = extract(model, images, t, "sha-vit", tmp_path, torch.device("cpu"), 16,
                      with_maps=True)
    assert reps.feature_maps is None  # asked for, but a ViT has none
    assert reps.features.shape == (40, 32)
    stats = reps.layer_stats["encoder.layers.encoder_layer_1"]
    assert stats["mean"].shape == (40, 32)
    with torch.no_grad():
        np.testing.assert_allclose(reps.logits, model(t(images.images)).numpy(), atol=1e-5)
    other, hit = extract(wrap(model, SHAPE, monitored=["encoder.layers.encoder_layer_0"]),
                         images, t, "sha-vit", tmp_path, torch.device("cpu"), 16)
    assert not hit and list(other.layer_stats) == ["encoder.layers.encoder_layer_0"]

"""Backbones: seeded and resumable training, cache keys, user checkpoints, OpenOOD layout."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from benchmark.pipeline import backbones, data
from benchmark.pipeline.backbones import BackboneError, Recipe, get_backbone, load_checkpoint, train
from benchmark.pipeline.zoo import LeNet, ResNet18, ResNet20

T = data.InputTransform(28, 1, (0.1307,), (0.3081,))
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def tiny(root):
    return data.subsample(data.load("mnist", "train", root), 512, seed=1)


def _weights(model) -> np.ndarray:
    return torch.cat([p.detach().flatten() for p in model.parameters()]).numpy()


def _seeded_lenet(seed: int) -> LeNet:
    torch.manual_seed(seed)
    return LeNet()


def test_resumed_training_equals_uninterrupted(tiny, tmp_path, monkeypatch) -> None:
    recipe = Recipe(epochs=2, batch_size=64, schedule="onecycle", seed=3)
    straight = train(_seeded_lenet(0), tiny, T, recipe, CPU, tmp_path / "a.partial")

    class Interrupted(Exception):
        pass

    original = backbones._atomic_save

    def save_then_die(obj, path):  # the process dies right after saving epoch 1
        original(obj, path)
        raise Interrupted

    state = tmp_path / "b.partial"
    monkeypatch.setattr(backbones, "_atomic_save", save_then_die)
    with pytest.raises(Interrupted):
        train(_seeded_lenet(0), tiny, T, recipe, CPU, state)
    monkeypatch.setattr(backbones, "_atomic_save", original)
    assert torch.load(state, weights_only=False)["epoch"] == 1
    resumed = train(_seeded_lenet(99), tiny, T, recipe, CPU, state)  # init is overwritten
    assert np.allclose(_weights(straight), _weights(resumed), atol=1e-6)


def test_another_thread_count_trains_its_own_checkpoint(tiny, tmp_path) -> None:
    """1 and 2 threads train different bits: a checkpoint trained under one is never handed
    to a run under the other (the table that trained first would decide the other's LeNet)."""
    from benchmark import compute

    recipe = Recipe(epochs=1, batch_size=128, seed=0)
    got = {}
    for threads in (1, 2, 1):
        with compute.pinned(compute.ComputeSettings(threads=threads)):
            got.setdefault(threads, []).append(
                get_backbone("lenet", {}, recipe, tiny, T, tmp_path, CPU))
    one, two = got[1][0], got[2][0]
    assert one.checkpoint != two.checkpoint and two.trained_now
    assert not got[1][1].trained_now and got[1][1].sha256 == one.sha256


def test_cache_reuses_checkpoint_and_key_tracks_recipe(tiny, tmp_path) -> None:
    recipe = Recipe(epochs=1, batch_size=128, seed=0)
    first = get_backbone("lenet", {}, recipe, tiny, T, tmp_path, CPU)
    again = get_backbone("lenet", {}, recipe, tiny, T, tmp_path, CPU)
    assert first.trained_now and not again.trained_now and first.sha256 == again.sha256
    other = get_backbone("lenet", {}, Recipe(epochs=1, batch_size=128, seed=1), tiny, T,
                         tmp_path, CPU)
    assert other.trained_now and other.checkpoint != first.checkpoint


def test_user_checkpoint_loads_and_bad_one_is_explained(tmp_path) -> None:
    model = LeNet()
    path = tmp_path / "mine.pt"
    torch.save({"state_dict": {f"module.{k}": v for k, v in model.state_dict().items()}}, path)
    loaded = load_checkpoint(LeNet(), path)
    assert np.array_equal(_weights(loaded), _weights(model))
    torch.save(ResNet20().state_dict(), tmp_path / "wrong.pt")
    with pytest.raises(BackboneError, match="does not fit architecture LeNet"):
        load_checkpoint(LeNet(), tmp_path / "wrong.pt")
    with pytest.raises(BackboneError, match="does not exist"):
        load_checkpoint(LeNet(), tmp_path / "missing.pt")


def test_resnet18_state_dict_matches_openood_layout() -> None:
    keys = set(ResNet18().state_dict())
    expected = {"conv1.weight", "bn1.weight", "fc.weight", "fc.bias",
                "layer2.0.shortcut.0.weight", "layer2.0.shortcut.1.running_var",
                "layer4.1.conv2.weight", "layer4.1.bn2.num_batches_tracked"}
    assert expected <= keys and not any(k.startswith("stem") for k in keys)
    openood = pytest.importorskip("openood.networks", reason="OpenOOD not installed: layout-only")
    theirs = openood.ResNet18_32x32(num_classes=10).eval()
    ours = ResNet18().eval()
    ours.load_state_dict(theirs.state_dict())
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(ours(x), theirs(x), atol=1e-5)


def test_two_trainings_in_fresh_caches_give_the_same_bits(tiny, tmp_path) -> None:
    """Bit-reproducible training: same recipe, data and compute settings -> same sha256, and
    the checkpoint's JSON records what it was computed under."""
    from benchmark import compute

    recipe = Recipe(epochs=1, batch_size=64, schedule="onecycle", seed=5)
    shas = []
    for cache in ("a", "b"):
        with compute.pinned(compute.ComputeSettings(threads=1, onednn=True)):
            bb = get_backbone("lenet", {}, recipe, tiny, T, tmp_path / cache, CPU)
        assert bb.trained_now
        shas.append(bb.sha256)
        record = backbones.training_record(bb.checkpoint, bb.sha256)
        assert record is not None and record["sha256"] == bb.sha256
        assert record["compute"]["threads"] == 1 and record["compute"]["onednn_enabled"]
        assert record["compute"]["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
        assert record["n_train"] == len(tiny) and record["recipe"]["seed"] == 5
    assert shas[0] == shas[1]


def test_training_record_is_ignored_when_the_checkpoint_changed(tiny, tmp_path) -> None:
    bb = get_backbone("lenet", {}, Recipe(epochs=1, batch_size=128), tiny, T, tmp_path, CPU)
    assert backbones.training_record(bb.checkpoint, bb.sha256) is not None
    state = torch.load(bb.checkpoint, weights_only=False)
    state["fc.bias"] += 1
    torch.save(state, bb.checkpoint)
    changed = backbones.file_sha256(bb.checkpoint)
    assert backbones.training_record(bb.checkpoint, changed) is None


def test_a_damaged_cached_checkpoint_is_trained_again(tiny, tmp_path, caplog) -> None:
    """A truncated cache entry is detected (its bytes differ from the training record's sha256)
    and rebuilt, bit-identical to the first training."""
    recipe = Recipe(epochs=1, batch_size=128, seed=0)
    first = get_backbone("lenet", {}, recipe, tiny, T, tmp_path, CPU)
    first.checkpoint.write_bytes(first.checkpoint.read_bytes()[:5000])
    again = get_backbone("lenet", {}, recipe, tiny, T, tmp_path, CPU)
    assert again.trained_now and again.sha256 == first.sha256
    assert "does not match its training record" in caplog.text


@pytest.mark.parametrize("damage", ["garbage", "checksum"])
def test_a_damaged_training_state_restarts_from_epoch_0(tiny, tmp_path, caplog, damage) -> None:
    recipe = Recipe(epochs=1, batch_size=128, seed=0)
    clean = train(_seeded_lenet(0), tiny, T, recipe, CPU, tmp_path / "clean.partial")
    state = tmp_path / "damaged.partial"
    if damage == "garbage":
        state.write_bytes(b"\x00garbage" * 100)
    else:  # a loadable file whose checksum file disagrees
        torch.save({"model": {}, "optimizer": {}, "epoch": 1}, state)
        state.with_name(state.name + ".sha256").write_text("0" * 64 + "\n")
    resumed = train(_seeded_lenet(0), tiny, T, recipe, CPU, state)
    assert "starting from epoch 0" in caplog.text
    assert np.array_equal(_weights(clean), _weights(resumed))


def test_checkpoint_mismatch_lists_every_missing_and_unexpected_key(tmp_path) -> None:
    path = tmp_path / "other.pt"
    torch.save(ResNet20(in_channels=1).state_dict(), path)
    with pytest.raises(BackboneError) as err:
        load_checkpoint(LeNet(), path)
    msg = str(err.value)
    assert str(path) in msg and "missing keys: conv1.0.weight" in msg
    assert "unexpected keys: stem.conv.weight" in msg and "(126 in all)" in msg
    torch.save(LeNet(in_channels=3).state_dict(), path)
    with pytest.raises(BackboneError, match="3-channel input, this backbone 1"):
        load_checkpoint(LeNet(), path)


def test_checkpoint_bytes_do_not_depend_on_the_file_name(tmp_path) -> None:
    """The sha256 of a checkpoint names its weights: the same state saved under two cache keys
    hashes the same (torch.save to a path names the archive's folder after the file)."""
    state = LeNet().state_dict()
    backbones._atomic_save(state, tmp_path / "lenet-aaaa.pt")
    backbones._atomic_save(state, tmp_path / "lenet-bbbb.pt")
    assert backbones.file_sha256(tmp_path / "lenet-aaaa.pt") == \
        backbones.file_sha256(tmp_path / "lenet-bbbb.pt")

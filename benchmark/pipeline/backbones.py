"""Backbones: build from the zoo, train with a seeded recipe (cached), or load a checkpoint.

A trained checkpoint is cached under a hash of (architecture, recipe, training data, seed, and
what decides its bits beyond them: device, thread count, oneDNN, CPU kernel path), so a second
run with the same settings reuses it and a run under other compute settings trains its own.
Training saves a resumable state after each epoch.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from benchmark import compute
from benchmark.atomic import atomic_path, file_digest
from benchmark.locks import entry_lock
from benchmark.pipeline import model_sources
from benchmark.pipeline.data import ImageSet, InputTransform
from benchmark.pipeline.model_sources import ModelSourceError, ModelSpec
from benchmark.pipeline.training_rows import rows_record
from benchmark.pipeline.wrapper import ClassifierNetwork, NetworkContractError, wrap

log = logging.getLogger(__name__)


class BackboneError(RuntimeError):
    """Bad backbone configuration or unusable checkpoint; the message says what to do."""


@dataclass(frozen=True)
class Recipe:
    """A seeded training recipe. ``augment``: none | crop_flip (CIFAR-style)."""

    epochs: int = 3
    batch_size: int = 128
    optimizer: str = "adam"
    lr: float = 1e-3
    weight_decay: float = 0.0
    momentum: float = 0.9
    schedule: str = "none"  # none | onecycle | cosine
    label_smoothing: float = 0.0
    augment: str = "none"
    seed: int = 0


@dataclass
class Backbone:
    """The trained classifier, wrapped (``model``: a :class:`ClassifierNetwork`)."""

    model: ClassifierNetwork
    name: str
    checkpoint: Path
    sha256: str
    trained_now: bool
    train_seconds: float
    # rows of each split the backbone was trained on (from its record; see training_rows)
    training_overlap: dict[str, int] = field(default_factory=dict)


def build_model(spec: ModelSpec | str, params: dict[str, Any] | None = None) -> nn.Module:
    """The raw classifier of ``spec`` (or of a zoo architecture name and its params)."""
    if isinstance(spec, str):
        spec = ModelSpec(arch=spec, params=dict(params or {}))
    try:
        return model_sources.build(spec)
    except ModelSourceError as exc:
        raise BackboneError(str(exc)) from exc


def wrapped(model: nn.Module, spec: ModelSpec, transform: InputTransform) -> ClassifierNetwork:
    """``model`` as the harness network; what the wrapper cannot find is a BackboneError."""
    try:
        return wrap(model, (transform.channels, transform.size, transform.size), spec.head,
                    spec.feature_maps, spec.monitored)
    except NetworkContractError as exc:
        raise BackboneError(f"backbone {spec.arch}: {exc}") from exc


def file_sha256(path: Path) -> str:
    return file_digest(path, "sha256")


def cache_key(arch: str, params: dict, recipe: Recipe, data: ImageSet, transform: InputTransform,
              device: torch.device | None = None) -> str:
    ident = {
        "arch": arch,
        "params": params,
        "recipe": recipe.__dict__,
        "data": data.content_hash,
        "transform": transform.describe(),
        "compute": compute.bits(device),  # 1 vs 2 threads train a different network
        "format": 3,  # 2: initial weights seeded by recipe.seed; 3: compute settings
    }
    return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:24]


def _saved_bytes(obj: Any) -> bytes:
    """``torch.save`` through memory, so the bytes (and the sha256 every cache key and manifest
    uses) depend on the weights only: saved to a path, the archive's inner folder is named
    after the file, and the same weights under another cache key hashed differently."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def _atomic_save(obj: Any, path: Path) -> str:
    """``obj`` saved atomically (bytes of :func:`_saved_bytes`); returns their sha256."""
    data = _saved_bytes(obj)
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return hashlib.sha256(data).hexdigest()


def _augment(x: torch.Tensor, kind: str, gen: torch.Generator) -> torch.Tensor:
    if kind == "none":
        return x
    if kind == "crop_flip":  # pad-4 random crop + horizontal flip, per sample
        n, _, h, w = x.shape
        padded = nn.functional.pad(x, (4, 4, 4, 4), mode="reflect")
        dx = torch.randint(0, 9, (n,), generator=gen)
        dy = torch.randint(0, 9, (n,), generator=gen)
        rows = (dy.view(n, 1) + torch.arange(h).view(1, h))
        cols = (dx.view(n, 1) + torch.arange(w).view(1, w))
        idx_n = torch.arange(n).view(n, 1, 1)
        out = padded.permute(0, 2, 3, 1)[idx_n, rows.view(n, h, 1), cols.view(n, 1, w)]
        out = out.permute(0, 3, 1, 2)
        flip = torch.rand(n, generator=gen) < 0.5
        out[flip] = out[flip].flip(-1)
        return out.contiguous()
    raise BackboneError(f"unknown augment {kind!r}; valid: none, crop_flip")


def _optimizer(model: nn.Module, r: Recipe, steps: int):
    if r.optimizer == "adam":
        opt = torch.optim.Adam(model.parameters(), lr=r.lr, weight_decay=r.weight_decay)
    elif r.optimizer == "sgd":
        opt = torch.optim.SGD(model.parameters(), lr=r.lr, momentum=r.momentum,
                              weight_decay=r.weight_decay, nesterov=True)
    else:
        raise BackboneError(f"unknown optimizer {r.optimizer!r}; valid: adam, sgd")
    if r.schedule == "onecycle":
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=r.lr, total_steps=steps,
                                                    pct_start=0.15)
    elif r.schedule == "cosine":
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
    elif r.schedule == "none":
        sched = None
    else:
        raise BackboneError(f"unknown schedule {r.schedule!r}; valid: none, onecycle, cosine")
    return opt, sched


def train(model: nn.Module, data: ImageSet, transform: InputTransform, recipe: Recipe,
          device: torch.device, state_path: Path) -> nn.Module:
    """Seeded mini-batch training; resumes from ``state_path`` (saved after every epoch)."""
    torch.manual_seed(recipe.seed)
    model.to(device)
    steps_per_epoch = math.ceil(len(data) / recipe.batch_size)
    opt, sched = _optimizer(model, recipe, steps_per_epoch * recipe.epochs)
    start_epoch = 0
    state = _resumable_state(state_path, device)
    if state is not None:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        if sched is not None:
            sched.load_state_dict(state["scheduler"])
        start_epoch = state["epoch"]
        log.info("resuming training from epoch %d (%s)", start_epoch, state_path)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=recipe.label_smoothing)
    for epoch in range(start_epoch, recipe.epochs):
        gen = torch.Generator().manual_seed(recipe.seed * 1000 + epoch)
        order = torch.randperm(len(data), generator=gen).numpy()
        model.train()
        t_epoch, loss_sum, correct = time.perf_counter(), 0.0, 0
        bar = tqdm(range(steps_per_epoch), desc=f"train epoch {epoch + 1}/{recipe.epochs}",
                   leave=False, mininterval=2)
        for step in bar:
            idx = np.sort(order[step * recipe.batch_size:(step + 1) * recipe.batch_size])
            x = _augment(transform(data.images[idx]), recipe.augment, gen).to(device)
            y = torch.from_numpy(data.labels[idx]).to(device)
            logits = model(x)
            loss = loss_fn(logits, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if sched is not None:
                sched.step()
            loss_sum += loss.item() * len(idx)
            correct += (logits.argmax(1) == y).sum().item()
            if step % 50 == 0:
                bar.set_postfix(loss=f"{loss.item():.3f}")
        log.info("epoch %d/%d: loss %.4f, train accuracy %.4f, %.0f s", epoch + 1,
                 recipe.epochs, loss_sum / len(data), correct / len(data),
                 time.perf_counter() - t_epoch)
        sha = _atomic_save({"model": model.state_dict(), "optimizer": opt.state_dict(),
                            "scheduler": sched.state_dict() if sched else None,
                            "epoch": epoch + 1}, state_path)
        with atomic_path(_partial_sum(state_path)) as tmp:
            tmp.write_text(sha + "\n")
    model.eval()
    return model


def read_checkpoint(path: Path) -> dict[str, torch.Tensor]:
    """The state dict in ``path`` (raw, or under 'state_dict' / 'model' / 'net'), or a
    BackboneError naming the file and what is wrong with it."""
    if path.is_dir():
        raise BackboneError(f"checkpoint {path} is a folder; set backbone.checkpoint to a "
                            ".pt/.ckpt file (or leave it null to train one)")
    if not path.exists():
        raise BackboneError(f"checkpoint {path} does not exist; set backbone.checkpoint to a "
                            "readable .pt/.ckpt file or leave it null to train one")
    if path.stat().st_size == 0:
        raise BackboneError(f"checkpoint {path} is empty (0 bytes); copy or export it again")
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # truncated zips, pickles of garbage: many types
        why = (str(exc).splitlines() or [""])[0][:200]
        raise BackboneError(f"checkpoint {path} cannot be read as a PyTorch checkpoint "
                            f"({type(exc).__name__}: {why}); it is truncated, damaged or not "
                            "a torch.save file: copy or export it again") from exc
    if isinstance(state, nn.Module):
        state = state.state_dict()
    if isinstance(state, dict):
        for key in ("state_dict", "model", "net"):
            if key in state and isinstance(state[key], dict):
                state = state[key]
                break
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in
                                              state.values()):
        raise BackboneError(f"checkpoint {path} holds a {type(state).__name__}, not a state "
                            "dict of tensors (torch.save(model.state_dict(), path))")
    return {str(k).removeprefix("module."): v for k, v in state.items()}


def _listed(names: list[str], limit: int = 12) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f" ... ({len(names)} in all)" if len(names) > limit else "")


def mismatch(model: nn.Module, state: dict[str, torch.Tensor]) -> str | None:
    """What keeps ``state`` from loading into ``model``: missing and unexpected keys, shape
    mismatches (all of them, not the first line of torch's message); None when it fits."""
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [f"{k} (checkpoint {list(state[k].shape)}, model {list(v.shape)})"
              for k, v in own.items() if k in state and state[k].shape != v.shape]
    parts = []
    if missing:
        parts.append(f"missing keys: {_listed(missing)}")
    if unexpected:
        parts.append(f"unexpected keys: {_listed(unexpected)}")
    if shapes:
        parts.append(f"shape mismatches: {_listed(shapes, 6)}")
        key, first = next(iter(own.items()))  # the input layer
        if key in state and state[key].dim() == 4 and first.dim() == 4 and \
                state[key].shape[1] != first.shape[1]:
            parts.append(f"the checkpoint takes {state[key].shape[1]}-channel input, this "
                         f"backbone {first.shape[1]} (backbone.params.in_channels and "
                         "backbone.input.channels)")
    return "; ".join(parts) or None


def _partial_sum(state_path: Path) -> Path:
    return state_path.with_name(state_path.name + ".sha256")


def _resumable_state(state_path: Path, device: torch.device) -> dict[str, Any] | None:
    """The saved training state, or None (and the damaged file removed) when its checksum
    fails or it does not load: training then starts from epoch 0."""
    if not state_path.exists():
        return None
    sums = _partial_sum(state_path)
    try:
        if sums.exists() and sums.read_text().strip() != file_sha256(state_path):
            raise ValueError("checksum mismatch")
        state = torch.load(state_path, map_location=device, weights_only=False)
        if not isinstance(state, dict) or {"model", "optimizer", "epoch"} - set(state):
            raise ValueError("not a training state")
        return state
    except Exception as exc:  # truncated zips, bad pickles, checksum: restart
        log.warning("training state %s is damaged (%s: %s); starting from epoch 0",
                    state_path, type(exc).__name__, exc)
        state_path.unlink(missing_ok=True)
        sums.unlink(missing_ok=True)
        return None


def load_checkpoint(model: nn.Module, path: Path) -> nn.Module:
    """Load a state dict from ``path`` into ``model``; every problem is a BackboneError that
    names the file and lists what does not fit."""
    state = read_checkpoint(path)
    problem = mismatch(model, state)
    if problem:
        raise BackboneError(f"checkpoint {path} does not fit architecture "
                            f"{type(model).__name__}: {problem}")
    model.load_state_dict(state)
    return model.eval()


def _cached_checkpoint(model: nn.Module, path: Path) -> tuple[nn.Module, str] | None:
    """The cached checkpoint loaded, or None (and the file removed) when it is damaged: its
    bytes differ from its training record's sha256 or it does not load."""
    sha = file_sha256(path)
    record = _read_record(path)
    if record is not None and record.get("sha256") not in (None, sha):
        log.warning("cached checkpoint %s does not match its training record (sha256 %s, "
                    "recorded %s); training it again", path, sha[:12], record["sha256"][:12])
        path.unlink()
        return None
    try:
        return load_checkpoint(model, path), sha
    except BackboneError as exc:
        log.warning("cached checkpoint %s is unusable (%s); training it again", path, exc)
        path.unlink()
        return None


def get_backbone(
    arch: str | ModelSpec, params: dict, recipe: Recipe, train_data: ImageSet,
    transform: InputTransform, cache_dir: Path, device: torch.device,
    checkpoint: str | None = None, split: dict[str, Any] | None = None,
) -> Backbone:
    """The trained backbone, wrapped: a user checkpoint, pretrained weights, the cached one, or
    freshly trained (then cached). ``arch`` is a zoo name (with ``params``) or a ModelSpec;
    ``split`` (seed, sizes) goes into the training record of a checkpoint trained now."""
    spec = arch if isinstance(arch, ModelSpec) else ModelSpec(arch=arch, params=dict(params))
    bb = _get_backbone(spec, recipe, train_data, transform, cache_dir, device, checkpoint,
                       split)
    bb.model = wrapped(bb.model, spec, transform).to(device).eval()
    return bb


def _get_backbone(spec: ModelSpec, recipe: Recipe, train_data: ImageSet,
                  transform: InputTransform, cache_dir: Path, device: torch.device,
                  checkpoint: str | None, split: dict[str, Any] | None = None) -> Backbone:
    torch.manual_seed(recipe.seed)  # initial weights are part of the recipe
    arch, params = spec.key_arch, spec.params
    model = build_model(spec)
    if checkpoint:
        path = Path(checkpoint).expanduser()
        model = load_checkpoint(model, path)
        return Backbone(model.to(device), arch, path, file_sha256(path), False, 0.0)
    if spec.weights:  # pretrained: the library's own file is the checkpoint
        return Backbone(model.to(device).eval(), arch, Path(f"<{spec.source} {spec.weights}>"),
                        hashlib.sha256(_saved_bytes(model.state_dict())).hexdigest(), False,
                        0.0)
    key = cache_key(arch, params, recipe, train_data, transform, device)
    folder = cache_dir / "checkpoints"
    folder.mkdir(parents=True, exist_ok=True)
    stem = arch.replace(":", "-").replace("/", "-")
    path = folder / f"{stem}-{key}.pt"
    if path.exists() and (cached := _cached_checkpoint(model, path)) is not None:
        return Backbone(cached[0].to(device), arch, path, cached[1], False, 0.0)
    with entry_lock(path, f"the {arch} checkpoint"):  # concurrent jobs train it once
        if path.exists() and (cached := _cached_checkpoint(model, path)) is not None:
            return Backbone(cached[0].to(device), arch, path, cached[1], False, 0.0)
        return _train_and_cache(model, spec, recipe, train_data, transform, device, path, split)


def _train_and_cache(model: nn.Module, spec: ModelSpec, recipe: Recipe, train_data: ImageSet,
                     transform: InputTransform, device: torch.device, path: Path,
                     split: dict[str, Any] | None = None) -> Backbone:
    arch, params = spec.key_arch, spec.params
    log.info("training %s on %s (%d images); checkpoint will be cached at %s",
             arch, train_data.name, len(train_data), path)
    wrapped(model, spec, transform)  # a model that cannot run on this input fails now, clearly
    t0 = time.perf_counter()
    state_path = path.with_suffix(".partial")
    model = train(model, train_data, transform, recipe, device, state_path)
    seconds = time.perf_counter() - t0
    sha = _atomic_save(model.state_dict(), path)
    state_path.unlink(missing_ok=True)
    _partial_sum(state_path).unlink(missing_ok=True)
    record = {"sha256": sha, "architecture": arch, "params": params, "recipe": recipe.__dict__,
              "train_data": train_data.content_hash, "n_train": len(train_data),
              "train_seconds": seconds, "compute": compute.describe(device)}
    if (rows := rows_record(train_data, split)) is not None:
        record["train_rows"] = rows
    with atomic_path(training_record_path(path)) as tmp:
        tmp.write_text(json.dumps(record, indent=2) + "\n")
    return Backbone(model, arch, path, sha, True, seconds)


def training_record_path(checkpoint: Path) -> Path:
    """The JSON beside a cached checkpoint: how (threads, CPU kernels, seconds) it was trained."""
    return checkpoint.with_suffix(".json")


def _read_record(checkpoint: Path) -> dict[str, Any] | None:
    try:
        record = json.loads(training_record_path(checkpoint).read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def training_record(checkpoint: Path, sha256: str) -> dict[str, Any] | None:
    """The training record of a checkpoint the harness trained (None: brought by the user, or
    trained before records existed, or recorded for other bytes than ``sha256``, the
    checkpoint's hash the caller already has)."""
    record = _read_record(checkpoint)
    if record is None or record.get("sha256") != sha256:
        return None
    return record

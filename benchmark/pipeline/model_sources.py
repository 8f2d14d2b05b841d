"""Where a classifier comes from: the harness's zoo, torchvision, timm, or the user's own class.

``backbone.source`` picks one (configs/backbone/{lenet,resnet20,resnet18,torchvision,timm,
custom}.yaml). Each builds a plain ``nn.Module``; :mod:`benchmark.pipeline.wrapper` then finds
its features, maps and head. Pretrained weights never download silently: they are read from
the library's own cache, fetched (with a timeout) only when ``backbone.download`` is true, and
otherwise missing weights are a :class:`ModelSourceError` that says what to download and where
to put it.
"""

from __future__ import annotations

import importlib
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from benchmark.pipeline.zoo import ARCHITECTURES

SOURCES = ("zoo", "torchvision", "timm", "custom")


class ModelSourceError(RuntimeError):
    """A model that cannot be built or its weights had; the message says what to do."""


@dataclass(frozen=True)
class ModelSpec:
    """What to build: ``source`` + ``arch`` (+ ``params``), optional pretrained ``weights``
    (a torchvision weights name, or ``true`` for timm), ``target`` (custom: a dotted class path)
    and the wrapper's hints (``head``, ``feature_maps``, ``monitored``)."""

    arch: str
    params: dict[str, Any] = field(default_factory=dict)
    source: str = "zoo"
    weights: str | bool | None = None
    target: str | None = None
    head: str | None = None
    feature_maps: str | None = None
    monitored: tuple[str, ...] | None = None
    download: bool = False

    @classmethod
    def from_config(cls, bb: Any) -> ModelSpec:
        source = str(bb.get("source") or "zoo")
        if source not in SOURCES:
            raise ModelSourceError(f"backbone.source={source!r} is not one of "
                                   f"{', '.join(SOURCES)}")
        model = bb.get("model") or {}
        target = model.get("_target_") if source == "custom" else None
        if source == "custom" and not target:
            raise ModelSourceError("backbone=custom needs backbone.model._target_=<package."
                                   "module.ClassName> (your nn.Module) and its arguments under "
                                   "backbone.model")
        params = dict(bb.get("params") or {})
        if source == "custom":
            params = {k: v for k, v in dict(model).items() if k != "_target_"}
        monitored = bb.get("monitored")
        return cls(arch=str(target or bb.arch), params=params, source=source,
                   weights=bb.get("weights"), target=target, head=bb.get("head"),
                   feature_maps=bb.get("feature_maps"),
                   monitored=tuple(monitored) if monitored else None,
                   download=bool(bb.get("download", False)))

    @property
    def key_arch(self) -> str:
        """The architecture as it enters cache keys (the zoo's names stay as they were)."""
        return self.arch if self.source == "zoo" else f"{self.source}:{self.arch}"

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {"source": self.source, "arch": self.arch}
        out.update({k: v for k, v in (("weights", self.weights), ("head", self.head),
                                      ("feature_maps", self.feature_maps),
                                      ("monitored", list(self.monitored or []) or None))
                    if v not in (None, False)})
        return out


def build(spec: ModelSpec) -> nn.Module:
    """The model of ``spec``, with its pretrained weights when it names some."""
    if spec.source == "zoo":
        if spec.arch not in ARCHITECTURES:
            raise ModelSourceError(f"unknown architecture {spec.arch!r}; valid: "
                                   f"{', '.join(ARCHITECTURES)} (or backbone=torchvision / "
                                   "timm / custom for other models)")
        return ARCHITECTURES[spec.arch](**spec.params)
    if spec.source == "torchvision":
        return _torchvision(spec)
    if spec.source == "timm":
        return _timm(spec)
    return _custom(spec)


# --------------------------------------------------------------------------- torchvision


def _torchvision_weights(arch: str, weights: str):
    import torchvision

    try:
        enum = torchvision.models.get_model_weights(arch)
    except (ValueError, KeyError) as exc:
        raise ModelSourceError(f"torchvision has no model {arch!r}") from exc
    try:
        return enum[str(weights).split(".")[-1]]
    except KeyError:
        raise ModelSourceError(f"torchvision model {arch!r} has no weights {weights!r}; valid: "
                               f"{', '.join(w.name for w in enum)}") from None


def torchvision_weights_file(arch: str, weights: str) -> tuple[str, Path]:
    """The URL of a torchvision weights entry and where torchvision caches it."""
    w = _torchvision_weights(arch, weights)
    return w.url, Path(torch.hub.get_dir()) / "checkpoints" / w.url.rsplit("/", 1)[-1]


def _torchvision(spec: ModelSpec) -> nn.Module:
    import torchvision

    if spec.arch not in torchvision.models.list_models():
        raise ModelSourceError(f"torchvision has no model {spec.arch!r}; e.g. resnet18, "
                               "resnet50, vgg16_bn, densenet121, mobilenet_v3_large, vit_b_16 "
                               "(torchvision.models.list_models())")
    params = dict(spec.params)
    if not spec.weights:
        return torchvision.models.get_model(spec.arch, weights=None, **params)
    w = _torchvision_weights(spec.arch, str(spec.weights))
    classes = len(w.meta.get("categories") or [])
    if params.get("num_classes") not in (None, classes):
        raise ModelSourceError(
            f"weights {w} have {classes} classes, backbone.params.num_classes="
            f"{params['num_classes']}: pretrained weights keep their own head (leave "
            "num_classes out, or set backbone.weights=null and bring a checkpoint)")
    params.pop("num_classes", None)
    model = torchvision.models.get_model(spec.arch, weights=None, num_classes=classes, **params)
    url, path = torchvision_weights_file(spec.arch, str(spec.weights))
    if not path.exists():
        if not spec.download:
            raise ModelSourceError(
                f"the weights {w} are not on this machine: download {url} to {path} (or run "
                "once with backbone.download=true on a machine with internet; the file is "
                "then reused)")
        from benchmark.pipeline.downloads import fetch_url

        path.parent.mkdir(parents=True, exist_ok=True)
        fetch_url({"url": url, "to": path.name}, path.parent)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        model.load_state_dict(state)
    except Exception as exc:
        raise ModelSourceError(f"{path} does not hold the weights {w} ({type(exc).__name__}: "
                               f"{str(exc)[:200]}); delete it and download {url} again"
                               ) from exc
    return model


def torchvision_input(arch: str, weights: str) -> dict[str, Any]:
    """The input a torchvision weights entry was trained with (its ``transforms()``)."""
    t = _torchvision_weights(arch, weights).transforms()
    return {"size": int(t.crop_size[0]), "resize": int(t.resize_size[0]),
            "mean": [float(v) for v in t.mean], "std": [float(v) for v in t.std]}


# --------------------------------------------------------------------------- timm


def _timm_module():
    try:
        import timm
    except ImportError as exc:
        raise ModelSourceError("backbone=timm needs timm: pip install -e '.[timm]'") from exc
    return timm


def _timm(spec: ModelSpec) -> nn.Module:
    timm = _timm_module()
    if not timm.is_model(spec.arch):  # an architecture name, with or without a weights tag
        raise ModelSourceError(f"timm has no model {spec.arch!r} (timm.list_models('*name*'))")
    if not spec.weights:
        return timm.create_model(spec.arch, pretrained=False, **spec.params)
    from huggingface_hub import constants as hub

    offline, before = not spec.download, hub.HF_HUB_OFFLINE
    if offline:  # never wait on a network that is not there: the hub answers from its cache
        hub.HF_HUB_OFFLINE = True  # read per request (the env var only at import)
    timeout = socket.getdefaulttimeout()
    socket.setdefaulttimeout(60)  # weights timm fetches by URL, not through the hub
    try:
        return timm.create_model(spec.arch, pretrained=True, **spec.params)
    except Exception as exc:
        raise ModelSourceError(
            f"timm's pretrained weights for {spec.arch!r} are not available "
            f"({type(exc).__name__}: {str(exc)[:160]}): run once with backbone.download=true "
            f"on a machine with internet (they land in the Hugging Face cache "
            f"{hub.HF_HUB_CACHE}), or give backbone.checkpoint=<a state dict>") from exc
    finally:
        socket.setdefaulttimeout(timeout)
        hub.HF_HUB_OFFLINE = before


def timm_input(arch: str) -> dict[str, Any]:
    """The input a timm model's pretrained config expects."""
    timm = _timm_module()
    cfg = timm.data.resolve_data_config({}, model=timm.create_model(arch, pretrained=False))
    size = int(cfg["input_size"][-1])
    return {"size": size, "resize": int(round(size / cfg.get("crop_pct", 1.0))),
            "mean": [float(v) for v in cfg["mean"]], "std": [float(v) for v in cfg["std"]]}


# --------------------------------------------------------------------------- custom


def _custom(spec: ModelSpec) -> nn.Module:
    module_name, _, cls_name = str(spec.target).rpartition(".")
    try:
        cls = getattr(importlib.import_module(module_name), cls_name)
    except (ImportError, AttributeError, ValueError) as exc:
        raise ModelSourceError(
            f"backbone.model._target_={spec.target!r} cannot be imported ({type(exc).__name__}: "
            f"{exc}); give the dotted path of your class and make its package importable "
            "(pip install -e it, or put its folder on PYTHONPATH)") from exc
    try:
        model = cls(**spec.params)
    except TypeError as exc:
        raise ModelSourceError(f"{spec.target}({', '.join(spec.params)}) failed: {exc}; set its "
                               "arguments under backbone.model") from exc
    if not isinstance(model, nn.Module):
        raise ModelSourceError(f"{spec.target} built a {type(model).__name__}, not an "
                               "nn.Module")
    return model


def weights_input(spec: ModelSpec) -> dict[str, Any] | None:
    """The input transform pretrained weights come with (None: no weights, or no metadata)."""
    if spec.source == "torchvision" and spec.weights:
        return torchvision_input(spec.arch, str(spec.weights))
    if spec.source == "timm" and spec.weights:
        return timm_input(spec.arch)
    return None

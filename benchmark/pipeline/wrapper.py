"""Any classifier as the harness network: found by one traced forward pass, not hand-written.

The harness needs five views of a classifier (see :class:`benchmark.representations.Network`):
logits, penultimate features, the final ``nn.Linear``, the last convolutional feature maps
(with the tail that turns them into logits) and a set of monitored layers. ``wrap`` finds
them in any ``nn.Module`` by running it once on a dummy batch:

* **head**: the last ``nn.Linear`` whose output is the model's output (or ``head=<name>``);
  the penultimate features are its input, read by a forward hook.
* **feature maps**: the output of ``feature_maps=<name>``, else of the last top-level child
  with a 4-D output when the model is a chain of its top-level children (LeNet, ResNets,
  VGG, MobileNet, timm's ResNets and ConvNeXts), else the input of a global pooling module.
  ``forward_from_feature_maps`` exists when the rest is computable from the maps alone: the
  chain's tail, or global pool + ``head`` when pooled maps are exactly the features (checked
  on the probe batch: name ``feature_maps`` only where that holds for every input).
* **monitored layers**: ``monitored=[names or patterns]`` (``layer*.*``: one ``*`` per
  name segment), else the model's own ``monitored_layers()`` if it has one (the zoo), else
  its stages: the top-level containers, descending while there is a single one. Token
  outputs (``B x T x D``, transformers) are presented channel-first (``B x D x T``) by a tap
  module, so per-channel statistics are per embedding dimension.

What a model does not offer raises :class:`NetworkContractError` naming the missing piece,
so a detector that needs it fails with that message (a failed row) and the others run.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

POOLS = (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)


class NetworkContractError(RuntimeError):
    """The model lacks a piece a detector (or a config) asked for; the message names it."""


class _Tap(nn.Identity):
    """A channel-first view of a token layer's output: hooks on the tap see ``B x D x T``."""

    def observe(self, _module: nn.Module, _inputs: Any, output: Any) -> Any:
        """The block's output, routed through the tap (so gradients reach what hooks see)."""
        out = output[0] if isinstance(output, tuple) else output
        routed = self(out.transpose(1, 2)).transpose(1, 2)
        return (routed, *output[1:]) if isinstance(output, tuple) else routed


def _tensor(out: Any) -> torch.Tensor | None:
    if isinstance(out, torch.Tensor):
        return out
    if isinstance(out, tuple | list) and out and isinstance(out[0], torch.Tensor):
        return out[0]
    return None


def _trace(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, list[tuple[str, Any, Any]]]:
    """The model's output and (name, input, output) of every module, in the order they end."""
    calls: list[tuple[str, Any, Any]] = []
    hooks = [m.register_forward_hook(
        lambda _m, inp, out, name=name: calls.append((name, _tensor(inp), _tensor(out))))
        for name, m in model.named_modules() if name]
    try:
        with torch.no_grad():
            out = model(x)
    except Exception as exc:  # wrong input size / channels, above all: a message, not a trace
        why = (str(exc).splitlines() or [""])[0][:200]
        raise NetworkContractError(
            f"{type(model).__name__} cannot run on a {tuple(x.shape[1:])} input "
            f"({type(exc).__name__}: {why}); set backbone.input.size / channels to what it "
            "expects") from exc
    finally:
        for h in hooks:
            h.remove()
    if not isinstance(out, torch.Tensor) or out.dim() != 2:
        raise NetworkContractError(
            f"{type(model).__name__}(x) must return a B x classes tensor of logits; it returned "
            f"{type(out).__name__}{tuple(out.shape) if isinstance(out, torch.Tensor) else ''}")
    return out, calls


def _same(a: torch.Tensor | None, b: torch.Tensor) -> bool:
    return (a is not None and a.shape == b.shape
            and torch.allclose(a, b, rtol=1e-4, atol=1e-5 * (1 + float(b.abs().max()))))


def _segments_match(pattern: str, name: str) -> bool:
    p, n = pattern.split("."), name.split(".")
    return len(p) == len(n) and all(fnmatch.fnmatchcase(a, b) for a, b in zip(n, p, strict=True))


class ClassifierNetwork(nn.Module):
    """A classifier with the harness's views (see the module docstring). ``model`` is the
    wrapped module unchanged; the wrapper holds no weights of its own."""

    def __init__(self, model: nn.Module, input_shape: Sequence[int], head: str | None = None,
                 feature_maps: str | None = None, monitored: Sequence[str] | None = None
                 ) -> None:
        super().__init__()
        self.model = model
        was_training = model.training
        model.eval()
        try:
            probe = torch.randn(2, *input_shape, generator=torch.Generator().manual_seed(0))
            param = next(model.parameters(), None)
            probe = probe.to(param.device if param is not None else "cpu")
            with torch.no_grad():
                logits, calls = _trace(model, probe)
                self._find_head(model, calls, logits, head)
                self._find_maps(model, calls, logits, probe, feature_maps)
                self._find_monitored(model, calls, monitored)
        finally:
            model.train(was_training)
        self.num_classes = int(logits.shape[1])

    # ------------------------------------------------------------------ discovery
    def _find_head(self, model: nn.Module, calls, logits, name: str | None) -> None:
        modules = dict(model.named_modules())
        if name is not None:
            if not isinstance(modules.get(name), nn.Linear):
                linears = [n for n, m in modules.items() if isinstance(m, nn.Linear)]
                raise NetworkContractError(
                    f"head={name!r} is not an nn.Linear of {type(model).__name__}; its linear "
                    f"layers: {', '.join(linears) or 'none'}")
            candidates = [c for c in calls if c[0] == name]
        else:
            candidates = [c for c in calls if isinstance(modules[c[0]], nn.Linear)]
        for call_name, inp, out in reversed(candidates):
            if _same(out, logits):
                if inp is None or inp.dim() != 2:
                    raise NetworkContractError(
                        f"the classifier layer {call_name!r} reads a "
                        f"{'non-tensor' if inp is None else tuple(inp.shape)} input; the "
                        "harness needs B x D penultimate features")
                self.head_name = call_name
                # not registered as a child: the weights stay under ``model.`` only
                object.__setattr__(self, "_head", modules[call_name])
                self._probe_features = inp
                return
        raise NetworkContractError(
            f"no nn.Linear of {type(model).__name__} produces its output (the logits); name the "
            "final classifier layer with backbone.head=<module name>, or end the model with one")

    def _chain(self, model: nn.Module, probe: torch.Tensor, logits: torch.Tensor
               ) -> list[tuple[str, torch.Tensor]] | None:
        """The outputs of the top-level children applied in order, when that is the model."""
        outs: list[tuple[str, torch.Tensor]] = []
        x = probe
        try:
            with torch.no_grad():
                for name, child in model.named_children():
                    if isinstance(child, nn.Linear | nn.Sequential) and x.dim() > 2 and \
                            _first_linear(child):
                        x = torch.flatten(x, 1)
                    x = child(x)
                    if not isinstance(x, torch.Tensor):
                        return None
                    outs.append((name, x))
        except Exception:  # a forward that is not a chain fails here in many ways
            return None
        return outs if _same(x, logits) else None

    def _find_maps(self, model, calls, logits, probe, name: str | None) -> None:
        self.maps_name: str | None = None
        self._tail: list[str] | None = None  # the chain's children after the maps
        self._pool: str | None = None  # or: a global pool ("avg"/"max") then the head
        self.maps_why = ""
        self._maps_from_input = False  # the maps are a global pool's input
        chain = self._chain(model, probe, logits)
        if name is not None:
            found = [c for c in calls if c[0] == name]
            if not found or found[-1][2] is None or found[-1][2].dim() != 4:
                raise NetworkContractError(
                    f"feature_maps={name!r}: no module of that name with a B x C x H x W output "
                    f"in {type(model).__name__}")
            self.maps_name = name
        elif chain is not None:
            children = dict(model.named_children())
            four_d = [n for n, out in chain if out.dim() == 4 and not isinstance(children[n],
                                                                                POOLS)]
            if four_d:
                self.maps_name = four_d[-1]
        if self.maps_name is None and name is None:
            modules = dict(model.named_modules())
            pools = [c for c in calls if _global_pool_module(modules[c[0]])
                     and c[1] is not None and c[1].dim() == 4 and _pooled(c[1], c[2])]
            if pools:
                self.maps_name = pools[-1][0]
                self._maps_from_input = True
        if self.maps_name is None:
            self.maps_why = (f"{type(self.model).__name__} has no convolutional feature maps "
                             "before a global pool (a transformer, or a functional pool): name "
                             "the layer with backbone.feature_maps=<module name> if it has one")
            return
        if chain is not None and self.maps_name in dict(chain) and not self._maps_from_input:
            names = [n for n, _ in chain]
            self._tail = names[names.index(self.maps_name) + 1:]
            return
        traced = next(c for c in reversed(calls) if c[0] == self.maps_name)
        maps = traced[1] if self._maps_from_input else traced[2]
        for kind in ("avg", "max"):
            if _same(_global_pool(maps, kind), self._probe_features):
                self._pool = kind
                return
        self.maps_why = (f"the layers between the feature maps {self.maps_name!r} and the "
                         f"classifier {self.head_name!r} are not a global pool (a norm or an "
                         "activation sits in between), so logits cannot be computed from maps")

    def _find_monitored(self, model: nn.Module, calls, patterns: Sequence[str] | None) -> None:
        modules = dict(model.named_modules())
        outputs = {c[0]: c[2] for c in calls}
        self.layers_from_hint = False  # True: the model named them (then its weights key them)
        if patterns:
            names = [n for n in modules if n and any(_segments_match(p, n) for p in patterns)]
            if not names:
                raise NetworkContractError(
                    f"monitored={list(patterns)} matches no module of {type(model).__name__} "
                    f"(top-level: {', '.join(n for n, _ in model.named_children())})")
            layers = {n: modules[n] for n in names}
        elif hasattr(model, "monitored_layers"):
            layers = dict(model.monitored_layers())
            self.layers_from_hint = True
        else:
            layers = {n: modules[n] for n in _stages(model, outputs)}
        self.taps = nn.ModuleDict()
        self._layers: dict[str, str] = {}  # layer name -> module name or tap key
        for key, module in layers.items():
            name = next(n for n, m in modules.items() if m is module)
            out = outputs.get(name)
            if out is None or out.dim() < 2:
                raise NetworkContractError(f"monitored layer {key!r} produced no tensor output")
            if out.dim() == 3:  # tokens: B x T x D
                tap_key = key.replace(".", "_")
                self.taps[tap_key] = _Tap()
                module.register_forward_hook(self.taps[tap_key].observe)
                self._layers[key] = f"taps.{tap_key}"
            else:
                self._layers[key] = f"model.{name}"

    # ------------------------------------------------------------------ the contract
    @property
    def fc(self) -> nn.Linear:
        """The final ``nn.Linear`` (a module of ``model``)."""
        return self._head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def forward_all(self, x: torch.Tensor, with_maps: bool = False
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Logits, penultimate features and (``with_maps``) the feature maps, all from one
        forward pass (hooks on the head and the maps layer)."""
        box: dict[str, torch.Tensor] = {}
        hooks = [self.fc.register_forward_hook(
            lambda _m, inp, _out: box.__setitem__("features", _tensor(inp)))]
        if with_maps:
            if self.maps_name is None:
                raise NetworkContractError(f"feature maps are not available: {self.maps_why}")
            hooks.append(self.model.get_submodule(self.maps_name).register_forward_hook(
                lambda _m, inp, out: box.__setitem__(
                    "maps", _tensor(inp) if self._maps_from_input else _tensor(out))))
        try:
            logits = self.model(x)
        finally:
            for h in hooks:
                h.remove()
        return logits, box["features"], box.get("maps")

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate features: the input of the classifier layer."""
        return self.forward_all(x)[1]

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        return self.fc(features)

    def forward_feature_maps(self, x: torch.Tensor) -> torch.Tensor:
        """The feature maps as the model's own forward pass leaves them."""
        return self.forward_all(x, with_maps=True)[2]

    def forward_from_feature_maps(self, maps: torch.Tensor) -> torch.Tensor:
        if self._tail is not None:
            x = maps
            for name in self._tail:
                child = self.model.get_submodule(name)
                if x.dim() > 2 and _first_linear(child):
                    x = torch.flatten(x, 1)
                x = child(x)
            return x
        if self._pool is not None:
            return self.fc(_global_pool(maps, self._pool))
        raise NetworkContractError("logits cannot be computed from feature maps: "
                                   + (self.maps_why or "no feature maps"))

    @property
    def has_feature_maps(self) -> bool:
        return self.maps_name is not None

    @property
    def has_maps_to_logits(self) -> bool:
        return self._tail is not None or self._pool is not None

    def monitored_layers(self) -> dict[str, nn.Module]:
        return {key: self.get_submodule(path) for key, path in self._layers.items()}

    def describe(self) -> dict[str, Any]:
        """What was found (recorded in manifests; layers key the cached representations)."""
        return {"model": type(self.model).__name__, "head": self.head_name,
                "feature_dim": self.fc.in_features, "num_classes": self.num_classes,
                "feature_maps": (f"{self.maps_name} (its input)" if self._maps_from_input
                                 else self.maps_name),
                "maps_to_logits": ("chain" if self._tail is not None else self._pool),
                "monitored_layers": list(self._layers)}

    def missing(self) -> dict[str, str]:
        """Pieces this model does not offer, with why (empty for a CNN with a pooled head)."""
        out = {}
        if not self.has_feature_maps:
            out["feature_maps"] = self.maps_why
        elif not self.has_maps_to_logits:
            out["forward_from_feature_maps"] = self.maps_why
        return out


def _first_linear(module: nn.Module) -> bool:
    """Whether ``module`` starts with an ``nn.Linear`` (then a chain flattens before it)."""
    while isinstance(module, nn.Sequential) and len(module):
        module = module[0]
    return isinstance(module, nn.Linear)


def _global_pool(maps: torch.Tensor, kind: str) -> torch.Tensor:
    pooled = F.adaptive_avg_pool2d(maps, 1) if kind == "avg" else F.adaptive_max_pool2d(maps, 1)
    return pooled.flatten(1)


def _global_pool_module(module: nn.Module) -> bool:
    """An adaptive (global) pool: torch's, or a library's (timm's SelectAdaptivePool2d)."""
    name = type(module).__name__.lower()
    return isinstance(module, POOLS) or "adaptivepool" in name or "globalpool" in name


def _pooled(inp: torch.Tensor, out: torch.Tensor | None) -> bool:
    if out is None or out.numel() != inp.shape[0] * inp.shape[1]:
        return False
    flat = out.reshape(inp.shape[0], inp.shape[1])
    return _same(_global_pool(inp, "avg"), flat) or _same(_global_pool(inp, "max"), flat)


def _stages(model: nn.Module, outputs: dict[str, torch.Tensor | None]) -> list[str]:
    """The model's stages: top-level containers with a feature output (>= 3-D), descending
    into a single container (MobileNet's ``features``, a ViT's ``encoder.layers``)."""
    prefix, module = "", model
    while True:
        kids = [(f"{prefix}{n}", m) for n, m in module.named_children()]
        stages = [(n, m) for n, m in kids if len(list(m.children()))
                  and (out := outputs.get(n)) is not None and out.dim() >= 3]
        if len(stages) == 1:
            prefix, module = f"{stages[0][0]}.", stages[0][1]
            continue
        if 1 < len(stages) < 3:  # e.g. [stem, stages]: open the containers of blocks
            opened = []
            for n, m in stages:
                blocks = [f"{n}.{c}" for c, k in m.named_children() if len(list(k.children()))]
                opened += blocks if isinstance(m, nn.Sequential) and len(blocks) > 1 else [n]
            return opened
        if stages:
            return [n for n, _ in stages]
        leaves = [n for n, _ in kids if (out := outputs.get(n)) is not None and out.dim() >= 3]
        if leaves:
            return leaves
        raise NetworkContractError(
            f"no stage of {type(model).__name__} has a feature output; name the monitored "
            "layers with backbone.monitored=[<module names or patterns>]")


def wrap(model: nn.Module, input_shape: Sequence[int], head: str | None = None,
         feature_maps: str | None = None, monitored: Sequence[str] | None = None
         ) -> ClassifierNetwork:
    """``model`` as the harness network (idempotent: a wrapped model comes back as it is)."""
    if isinstance(model, ClassifierNetwork):
        return model
    return ClassifierNetwork(model, input_shape, head, feature_maps, monitored)

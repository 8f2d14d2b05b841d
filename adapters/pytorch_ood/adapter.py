"""Adapter for pytorch-ood 0.4.0: every post-hoc detector class behind the harness interface.

Each detector reads the cached representation that pytorch-ood has a precomputed path for
(``fit_logits``/``predict_logits``, ``fit_features``/``predict_features``,
``fit_feature_maps``/``predict_feature_maps``, ``fit_structured``/``predict_structured``); only
the methods that need input gradients, dropout sampling or full per-layer maps run the live
model on ``split.inputs()``. Scores are pytorch-ood's own (higher = more OOD), as float64.

Detectors (harness name = pytorch-ood class; config key ``pytorch_ood_<short>``)
--------------------------------------------------------------------------------
``consumes`` is the harness typed base; "labels" says what the fit split must carry.

  class               short             consumes      reads                                labels
  MaxSoftmax          msp               logits        logits                               -
  MaxLogit            maxlogit          logits        logits                               -
  EnergyBased         energy            logits        logits                               -
  Entropy             entropy           logits        logits                               -
  GEN                 gen               logits        logits                               -
  WeightedEBO         webo              logits        logits (+ ``weights`` param)         -
  TemperatureScaling  tempscale         logits        logits                               yes
  KLMatching          klm               logits        logits                               -
  OpenMax             openmax           logits        logits                               yes
  Mahalanobis         mahalanobis       features      features                             all
  RMD                 rmd               features      features                             all
  GMM                 gmm               features      features                             yes
  KNN                 knn               features      features                             -
  ViM                 vim               features      features + fc weight, bias           -
  DICE                dice              features      features + fc weight, bias           -
  SHE                 she               features      features + forward_head              all
  fDBD                fdbd              features      features + copy of fc                -
  NCI                 nci               features      features + copy of fc                -
  NNGuide             nnguide           features      features + forward_head              -
  PNML                pnml              features      features + forward_head              -
  LTS                 lts               features      features + forward_head              -
  ReAct               react             features      features as BxDx1x1 + forward_head   -
  ASH                 ash               features      features as BxDx1x1 + forward_head   -
  SCALE               scale             features      features as BxDx1x1 + forward_head   -
  VRA                 vra               features      features as BxDx1x1 + forward_head   -
  RankFeat            rankfeat          feature_maps  maps + forward_from_feature_maps     -
  MultiMahalanobis    mmahalanobis      layer_stats   layer_stats[layer]["mean"]           all
  MahalanobisODIN     mahalanobis_odin  model         fit: features; score: live model     all
  Gram                gram              model         live model (hooked layer maps)       all
  ODIN                odin              model         live model                           -
  GradNorm            gradnorm          model         live model                           -
  GradUncertainty     graduncertainty   model         live model                           -
  NACUE               nacue             model         live model                           -
  MCD                 mcd               model         live model (must contain dropout)    -

"all" = every class ``0..C-1`` must occur in the fit split (checked; ``DetectorError`` otherwise).
Fit rows with a label < 0 are dropped before fitting. KNN needs at least ``k`` fit rows.

What the runner must provide
----------------------------
* ``feature_maps`` in Representations only for RankFeat (``consumes == FEATURE_MAPS``).
* ``layer_stats`` with the ``"mean"`` reduction for MultiMahalanobis.
* ``split.inputs()`` (fit split and every scored split) for the ``model`` detectors; they score
  in the batches ``inputs()`` yields, on ``network.device``. Everything else is chunked by
  ``network.batch_size``.
* ``network.fc`` (final ``nn.Linear``), ``forward_head``, ``forward_from_feature_maps``,
  ``forward_features`` and ``monitored_layers()`` per the zoo contract.

Left out: **MCM** (Maximum Concept Matching) scores image embeddings against *text embeddings of
class prompts* from a vision-language model such as CLIP; the harness's classifiers have no text
encoder, and substituting another matrix (e.g. the fc weights) would be a different method.

Representation choices
----------------------
* ReAct, ASH, SCALE, VRA act on the **penultimate features** (cached ``features``, passed as
  ``B x D x 1 x 1`` maps, head ``forward_head``), which is where their papers apply them: after
  the global pooling (ASH's reference README applies ``ash_b`` right after ``avgpool``). This
  needs no feature-map cache. RankFeat removes the rank-1 component of a ``C x HW`` matrix, which
  is meaningless on pooled features, so it consumes ``feature_maps`` (head
  ``forward_from_feature_maps``); the runner must extract them for it (``consumes`` says so).
* MultiMahalanobis fits one Gaussian per layer on the *spatial mean* of that layer's output,
  exactly what the harness caches as ``layer_stats[layer]["mean"]``, so it is a
  LayerStatsDetector (``layers: null`` = every cached layer, in cache order). pytorch-ood's own
  ``model`` argument is not needed on this path (placeholders are passed).
* Gram needs row sums of per-layer Gram matrices ``F F^T`` of the *full* ``C x HW`` maps of
  several layers, which the harness does not cache (only max/mean per channel), and pytorch-ood
  0.4.0 has no ``fit_structured`` for it. It is therefore a ModelDetector: forward hooks on
  ``model.monitored_layers()`` feed pytorch-ood's own ``fit``/``predict``.
* MahalanobisODIN fits on cached features (its ``fit_features``) and scores on perturbed inputs.

Traps and how they are handled
------------------------------
* **OpenMax batch dependence**: pytorch-ood computes distances only to the centres of classes
  that are some row's argmax *in the batch*; others get distance 0. Policy here: scoring runs in
  chunks of ``network.batch_size``, and each chunk is extended by one-hot anchor rows (row
  ``e_k`` has argmax ``k``) for every class in some row's top-``alpha`` that no row's argmax
  provides, so each row gets its true distances; anchor rows are dropped. A score then depends
  only on its own row (invariant to batch size, order and split composition) and equals
  pytorch-ood's ``predict`` on any batch whose argmaxes cover all classes (which is also the
  original OpenMax algorithm).
* **TemperatureScaling** refits are not idempotent (the temperature continues from the last
  optimum): every ``fit`` builds a fresh pytorch-ood instance (true for every detector here).
* Logit/feature detectors: scoring runs under ``torch.no_grad()`` with the model copy in eval
  mode, in chunks of ``network.batch_size`` on ``network.device``.
* **Mutation**: a detector that needs the model gets a private ``copy.deepcopy`` (eval, on
  ``network.device``, parameters frozen except for NACUE which differentiates through
  activations). ``detector.to(device)``, MCD's train/eval switching, NACUE's hooks and
  MahalanobisODIN's ``backward()`` all touch only that copy. ViM/DICE get cloned fc tensors.
* **Label coverage**: Mahalanobis, RMD, MahalanobisODIN, MultiMahalanobis, SHE and Gram need every
  class ``0..C-1`` in the fit split (pytorch-ood asserts, or silently fits fewer classes); the
  adapter checks first and raises ``DetectorError`` naming the missing classes. SHE also needs one
  correctly classified sample per class. Other library ValueErrors/AssertionErrors become
  DetectorErrors prefixed with the detector name. Fit rows with label < 0 are dropped.
* MCD on a model without dropout modules (``nn.Dropout*``) would give every input the same
  score: DetectorError instead.
  MCD and Gram draw random numbers; they run under a forked RNG seeded by ``seed``.

Parameters are constructor parameters, pinned to pytorch-ood 0.4.0 defaults except where there is
none (DICE ``p`` = 0.7, WeightedEBO ``weights``), where the default depends on the model (ViM
``d`` = null: half the feature dimension, OpenOOD's ratio for ResNet-18, since ``d`` >= the
dimension gives NaN scores; ODIN/MahalanobisODIN ``norm_std`` = ``network``: the backbone's input
std, so ``eps`` is in pixel units as in the paper and OpenOOD; Gram ``num_poles_list`` =
[1, 2, 3] instead of 1..L), or a YAML-friendly form is needed:
``detector`` (score function of ReAct/ASH/SCALE/VRA/RankFeat/LTS/DICE) is one of ``energy``,
``msp``, ``maxlogit``, ``entropy``; GradNorm/GradUncertainty ``param_filter`` is a list of
parameter names (``null`` = all; ``fc.*`` = the final layer's, whatever its name; pinned to
``[fc.weight]``, as in GradNorm's paper); layer arguments of NACUE/Gram/MultiMahalanobis are
lists of monitored layer names (``null`` = all). ``seed`` (MCD, Gram) is the adapter's own.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np
import torch
from pytorch_ood import detector as pod
from pytorch_ood.api import ModelNotSetException, RequiresFittingException
from torch import Tensor, nn

from adapters.base import (
    Detector,
    DetectorError,
    FeatureDetector,
    FeatureMapDetector,
    LabelNeed,
    LayerStatsDetector,
    LogitDetector,
    ModelDetector,
    check_labels,
)
from adapters.pytorch_ood import LEFT_OUT, LIBRARY_INFO, METHODS
from benchmark.representations import Network, Representations
from benchmark.seeding import seeded

_CPU = torch.device("cpu")

SCORE_FUNCTIONS: dict[str, Callable[[Tensor], Tensor]] = {
    "energy": pod.EnergyBased.score,
    "msp": pod.MaxSoftmax.score,
    "maxlogit": pod.MaxLogit.score,
    "entropy": pod.Entropy.score,
}


# --------------------------------------------------------------------------------------------
# helpers


@dataclass
class _Context:
    """What a constructor may use: the network, a private model copy, the device."""

    network: Network
    model: nn.Module | None
    device: torch.device

    def require_model(self, name: str) -> nn.Module:
        assert self.model is not None, f"{name}: spec must set needs_model"
        return self.model


def _private_model(network: Network, freeze: bool) -> nn.Module:
    model = copy.deepcopy(network.model)
    model.eval()
    model.to(network.device)
    if freeze:
        for p in model.parameters():
            p.requires_grad_(False)
    return model


def _tensor(a: np.ndarray, device: torch.device, dtype: torch.dtype = torch.float32) -> Tensor:
    return torch.as_tensor(np.asarray(a), dtype=dtype).to(device)


def _to_numpy(t: Tensor) -> np.ndarray:
    return t.detach().to("cpu", torch.float64).numpy().reshape(-1)


def _chunks(n: int, size: int) -> Iterator[slice]:
    size = max(1, int(size))
    for start in range(0, n, size):
        yield slice(start, min(n, start + size))


def _score_function(name: str, value: Any) -> Callable[[Tensor], Tensor]:
    if value not in SCORE_FUNCTIONS:
        raise DetectorError(
            f"{name}: detector={value!r} is not one of {sorted(SCORE_FUNCTIONS)}"
        )
    return SCORE_FUNCTIONS[value]


def _monitored(model: nn.Module, names: list[str] | None, who: str) -> dict[str, nn.Module]:
    if not hasattr(model, "monitored_layers"):
        raise DetectorError(f"{who} needs model.monitored_layers() (zoo contract)")
    layers = dict(model.monitored_layers())
    if names is None:
        return layers
    unknown = [n for n in names if n not in layers]
    if unknown:
        raise DetectorError(f"{who}: unknown layers {unknown}; monitored: {sorted(layers)}")
    return {n: layers[n] for n in names}


@contextmanager
def _library_errors(name: str, stage: str):
    """Turn pytorch-ood's assertion/value errors into messages worth showing verbatim."""
    try:
        yield
    except DetectorError:
        raise
    except (ValueError, AssertionError, RequiresFittingException, ModelNotSetException) as exc:
        text = str(exc) or type(exc).__name__
        raise DetectorError(f"pytorch-ood {name} {stage} failed: {text}") from exc


def _known_rows(split: Representations) -> np.ndarray:
    return np.asarray(split.labels) >= 0


# --------------------------------------------------------------------------------------------
# the table


@dataclass(frozen=True)
class Spec:
    """One row of the table: how a harness name maps onto a pytorch-ood class."""

    cls: type
    adapter: type[PytorchOODDetector]
    defaults: Mapping[str, Any]
    make: Callable[[_Context, dict[str, Any]], Any]
    representation: str
    needs_model: bool = False  # a private deep copy of the network's model
    freeze: bool = True  # parameters of that copy do not require grad
    labels: LabelNeed = "unused"  # "unused" | "used" | "every class"
    adapter_params: frozenset[str] = field(default_factory=frozenset)  # not constructor args
    fit_on_features: bool = False  # a live-model detector that fits on cached features
    error_hint: str = ""

    @property
    def name(self) -> str:
        return self.cls.__name__

    @property
    def short(self) -> str:
        """The canonical method id, also the config's short name (``LIBRARY_INFO.methods``)."""
        return METHODS[self.name]


def _fc(network: Network) -> nn.Linear:
    fc = network.fc
    if not isinstance(fc, nn.Linear):
        raise DetectorError("network.fc must be the final nn.Linear (zoo contract)")
    return fc


def _fc_tensors(ctx: _Context) -> tuple[Tensor, Tensor]:
    fc = _fc(ctx.network)
    w = fc.weight.detach().clone().to(ctx.device)
    b = fc.bias.detach().clone().to(ctx.device) if fc.bias is not None else torch.zeros(
        w.shape[0], device=ctx.device)
    return w, b


def _vim(ctx: _Context, p: dict[str, Any]) -> Any:
    """ViM with ``d`` (principal subspace) below the feature dimension; null = half of it."""
    dim = _fc(ctx.network).in_features
    d = dim // 2 if p["d"] is None else int(p["d"])
    if not 0 < d < dim:
        raise DetectorError(f"ViM: d={d} must be between 1 and the feature dimension {dim} "
                            "(exclusive); pytorch-ood returns NaN scores otherwise. Use d: null "
                            "(half the feature dimension) or a smaller d")
    return pod.ViM(None, d, *_fc_tensors(ctx))


def _norm_std(ctx: _Context, value: Any) -> list[float] | None:
    """``"network"``: the backbone's input std, so ``eps`` is a step in pixel units as in the
    ODIN paper and OpenOOD; ``null``: pytorch-ood's default (a step in normalised units)."""
    if value == "network":
        std = ctx.network.input_std
        return [float(s) for s in std] if std is not None else None
    return None if value is None else [float(s) for s in value]


def _fc_copy(ctx: _Context) -> nn.Linear:
    fc = copy.deepcopy(_fc(ctx.network)).eval().to(ctx.device)
    for p in fc.parameters():
        p.requires_grad_(False)
    return fc


def _pooled_head(model: nn.Module) -> Callable[[Tensor], Tensor]:
    def head(maps: Tensor) -> Tensor:
        return model.forward_head(maps.flatten(1))

    return head


def _param_filter(ctx: _Context, names: list[str] | None) -> Callable[[str], bool] | None:
    """Parameter names of the model; ``fc.<param>`` is the final layer's, whatever the model
    calls it (``model.fc`` in a wrapped zoo network, ``classifier.3`` in a MobileNet)."""
    if names is None:
        return None
    model, fc = ctx.network.model, ctx.network.fc
    head = next((n for n, m in model.named_modules() if m is fc), "fc")
    wanted = frozenset(f"{head}.{n[3:]}" if n.startswith("fc.") else n for n in names)
    return lambda n: n in wanted


def _weights(ctx: _Context, weights: list[float] | None) -> Tensor:
    c = ctx.network.num_classes
    if weights is None:
        return torch.ones(c, device=ctx.device)
    if len(weights) != c:
        raise DetectorError(f"WeightedEBO: {len(weights)} weights given for {c} classes")
    return torch.tensor(weights, dtype=torch.float32, device=ctx.device)


class _Tap(nn.Module):
    """Runs the whole model once and keeps the outputs of the chosen monitored layers.

    Used as Gram's first ``feature_layer``; :class:`_TapOutput` and :class:`_TapLogits` replay
    what it captured, so pytorch-ood's sequential ``feature_layers`` contract is met for any zoo
    model without splitting it into stages.
    """

    def __init__(self, model: nn.Module, layers: dict[str, nn.Module]) -> None:
        super().__init__()
        self.model = model
        self.layer_names = list(layers)
        self._modules_by_name = layers
        self.outputs: list[Tensor] = []
        self.logits: Tensor | None = None

    def forward(self, x: Tensor) -> Tensor:
        captured: dict[str, Tensor] = {}

        def keep(name: str, _m: nn.Module, _i: Any, out: Tensor) -> None:
            captured[name] = out

        hooks = [m.register_forward_hook(partial(keep, n)) for n, m in
                 self._modules_by_name.items()]
        try:
            self.logits = self.model(x)
        finally:
            for h in hooks:
                h.remove()
        self.outputs = [captured[n] for n in self.layer_names]
        return self.outputs[0]


class _TapOutput(nn.Module):
    def __init__(self, tap: _Tap, index: int) -> None:
        super().__init__()
        self._tap = [tap]  # a list, so the tap (and the model) is not registered twice
        self.index = index

    def forward(self, _x: Tensor) -> Tensor:
        return self._tap[0].outputs[self.index]


class _TapLogits(_TapOutput):
    def forward(self, _x: Tensor) -> Tensor:
        logits = self._tap[0].logits
        assert logits is not None
        return logits


def _make_gram(ctx: _Context, p: dict[str, Any]) -> Any:
    model = ctx.require_model("Gram")
    layers = _monitored(model, p["feature_layers"], "Gram")
    if not layers:
        raise DetectorError("Gram needs at least one monitored layer")
    tap = _Tap(model, layers)
    feature_layers = [tap] + [_TapOutput(tap, i) for i in range(1, len(layers))]
    return pod.Gram(
        head=_TapLogits(tap, -1),
        feature_layers=feature_layers,
        num_classes=ctx.network.num_classes,
        num_poles_list=p["num_poles_list"],
    )


def _make_nacue(ctx: _Context, p: dict[str, Any]) -> Any:
    model = ctx.require_model("NACUE")
    layers = list(_monitored(model, p["layers"], "NACUE").values())
    if not layers:
        raise DetectorError("NACUE needs at least one monitored layer")
    return pod.NACUE(model, layers=layers, m_bins=p["m_bins"], alpha=p["alpha"],
                     o_star=p["o_star"], device=ctx.device)


def _make_mcd(ctx: _Context, p: dict[str, Any]) -> Any:
    model = ctx.require_model("MCD")
    if not any(isinstance(m, nn.modules.dropout._DropoutNd) for m in model.modules()):
        raise DetectorError(
            f"MCD needs dropout layers in the model; {type(model).__name__} has none, so every "
            "input would get the same score"
        )
    return pod.MCD(model, samples=p["samples"], mode=p["mode"], batch_norm=p["batch_norm"])


def _make_mmahalanobis(ctx: _Context, p: dict[str, Any]) -> Any:
    # the modules are only used by pytorch-ood's fit(loader)/predict(x); this path feeds it the
    # cached per-layer spatial means, so placeholders suffice (resized to one per layer in fit)
    return pod.MultiMahalanobis([nn.Identity()], alpha=p["alpha"])


# --------------------------------------------------------------------------------------------
# adapters, one per representation


class PytorchOODDetector(Detector):
    """Common lifecycle: a fresh pytorch-ood instance per ``fit``, numpy float64 scores."""

    library = LIBRARY_INFO.name

    def __init__(self, name: str, spec: Spec, **params: Any) -> None:
        super().__init__(name, **params)
        self.spec = spec
        self._det: Any = None
        self._model: nn.Module | None = None
        self._device = torch.device("cpu")
        self._batch_size = 256

    # -- lifecycle ----------------------------------------------------------------------------
    def fit(self, id_fit: Representations, network: Network,
            calibration: Representations | None = None) -> PytorchOODDetector:
        """Fit on ``id_fit``; pytorch-ood's post-hoc detectors use no held-out split."""
        self._det, self.fitted_ = None, False  # a failed refit leaves nothing stale behind
        self._device = torch.device(network.device)
        self._batch_size = int(network.batch_size)
        check_labels(self.name, id_fit, int(network.num_classes), self.spec.labels)
        self._model = (
            _private_model(network, self.spec.freeze) if self.spec.needs_model else None
        )
        ctx = _Context(network=network, model=self._model, device=self._device)
        ctor = {k: v for k, v in self.params.items() if k not in self.spec.adapter_params}
        with _library_errors(self.name, "construction"):
            det = self.spec.make(ctx, ctor)
        det.to(self._device)  # moves only state this adapter owns (private copies, clones)
        with _library_errors(self.name, "fit"), seeded(self.params.get("seed")):
            try:
                self._fit(det, id_fit)
            except ValueError as exc:
                if self.spec.error_hint:
                    raise DetectorError(f"{self.spec.error_hint} ({exc})") from exc
                raise
        self._det = det
        self.fitted_ = True
        return self

    def score(self, split: Representations, network: Network) -> np.ndarray:
        self.check_fitted()
        self._batch_size = int(network.batch_size)  # the device stays the fitted copy's
        with _library_errors(self.name, "score"), seeded(self.params.get("seed")):
            scores = self._score(self._det, split)
        if len(scores) != len(split):
            raise DetectorError(
                f"{self.name}: {len(scores)} scores for {len(split)} rows of {split.name!r}"
            )
        return scores

    @property
    def library_detector(self) -> Any:
        """The fitted pytorch-ood instance (for inspection and tests)."""
        return self._det

    # -- per representation -------------------------------------------------------------------
    def _fit(self, det: Any, id_fit: Representations) -> None:
        raise NotImplementedError

    def _score(self, det: Any, split: Representations) -> np.ndarray:
        raise NotImplementedError

    # fit inputs stay on the CPU, as pytorch-ood's own fit(loader) hands them over (its
    # TensorBuffer stores on the CPU; KNN.fit_features even requires it); each detector moves
    # them to its device. Scoring chunks go to network.device.
    @staticmethod
    def _fit_tensor(arr: np.ndarray) -> Tensor:
        return _tensor(arr, _CPU)

    @staticmethod
    def _labels(split: Representations, rows: np.ndarray) -> Tensor:
        return torch.as_tensor(np.asarray(split.labels)[rows], dtype=torch.long)

    def _batched(self, arr: np.ndarray, fn: Callable[[Tensor], Tensor]) -> np.ndarray:
        out = []
        with torch.no_grad():
            for sl in _chunks(len(arr), self._batch_size):
                out.append(_to_numpy(fn(_tensor(arr[sl], self._device))))
        return np.concatenate(out) if out else np.zeros(0)


class _Logits(PytorchOODDetector, LogitDetector):
    def _fit(self, det: Any, id_fit: Representations) -> None:
        if det.requires_fit:
            rows = _known_rows(id_fit)
            det.fit_logits(self._fit_tensor(id_fit.logits[rows]), self._labels(id_fit, rows))

    def _score(self, det: Any, split: Representations) -> np.ndarray:
        return self._batched(split.logits, det.predict_logits)


class _OpenMax(_Logits):
    """Anchor rows make pytorch-ood compute every distance a row of the chunk needs.

    pytorch-ood reads ``distances[j, k]`` for the top-``alpha`` classes ``k`` of row ``j`` but
    computes them only for classes that are some row's argmax (others stay 0). Each chunk gets
    one-hot anchor rows (argmax ``k``) for the classes that are needed but missing; the same
    ``np.argsort``/``np.argmax`` as pytorch-ood pick them. Anchor outputs are dropped.
    """

    def _score(self, det: Any, split: Representations) -> np.ndarray:
        c = split.logits.shape[1]
        alpha = min(c, int(det.alpha))  # pytorch-ood's effective alpha after fit
        eye = torch.eye(c, device=self._device)

        def predict(chunk: Tensor) -> Tensor:
            x = chunk.detach().cpu().numpy()
            top = np.argsort(x, axis=1)[:, -alpha:]
            missing = np.setdiff1d(np.unique(top), np.unique(np.argmax(x, axis=1)))
            anchors = eye[torch.as_tensor(missing, dtype=torch.long, device=self._device)]
            return det.predict_logits(torch.cat([chunk, anchors]))[: len(chunk)]

        return self._batched(split.logits, predict)


class _Features(PytorchOODDetector, FeatureDetector):
    def _fit(self, det: Any, id_fit: Representations) -> None:
        if det.requires_fit:
            rows = _known_rows(id_fit)
            det.fit_features(self._fit_tensor(id_fit.features[rows]), self._labels(id_fit, rows))

    def _score(self, det: Any, split: Representations) -> np.ndarray:
        return self._batched(split.features, det.predict_features)


class _PooledMaps(PytorchOODDetector, FeatureDetector):
    """Feature-map detectors applied to the penultimate features, as ``B x D x 1 x 1`` maps."""

    def _fit(self, det: Any, id_fit: Representations) -> None:
        if det.requires_fit:
            rows = _known_rows(id_fit)
            maps = self._fit_tensor(id_fit.features[rows])[:, :, None, None]
            det.fit_feature_maps(maps, self._labels(id_fit, rows))

    def _score(self, det: Any, split: Representations) -> np.ndarray:
        def predict(features: Tensor) -> Tensor:
            return det.predict_feature_maps(features[:, :, None, None])

        return self._batched(split.features, predict)


class _FeatureMaps(PytorchOODDetector, FeatureMapDetector):
    def _maps(self, split: Representations) -> np.ndarray:
        if split.feature_maps is None:
            raise DetectorError(
                f"{self.name} consumes feature maps, but Representations {split.name!r} has none; "
                "extract them (features.extract(..., with_maps=True))"
            )
        return split.feature_maps

    def _fit(self, det: Any, id_fit: Representations) -> None:
        maps = self._maps(id_fit)  # checked even when nothing is fitted
        if det.requires_fit:
            rows = _known_rows(id_fit)
            det.fit_feature_maps(self._fit_tensor(maps[rows]), self._labels(id_fit, rows))

    def _score(self, det: Any, split: Representations) -> np.ndarray:
        return self._batched(self._maps(split), det.predict_feature_maps)


class _LayerStats(PytorchOODDetector, LayerStatsDetector):
    """MultiMahalanobis on the cached per-channel spatial means of the monitored layers."""

    def _layers(self, split: Representations) -> list[str]:
        names = self.params["layers"]
        if names is None:
            names = list(split.layer_stats)
        if not names:
            raise DetectorError(f"{self.name} needs layer_stats in Representations {split.name!r}")
        missing = [n for n in names if "mean" not in split.layer_stats.get(n, {})]
        if missing:
            raise DetectorError(
                f"{self.name}: layer_stats of {split.name!r} lack the 'mean' of layers {missing}; "
                f"present: {sorted(split.layer_stats)}"
            )
        return names

    def _fit(self, det: Any, id_fit: Representations) -> None:
        names = self._layers(id_fit)
        alpha = self.params["alpha"]
        if alpha is None:
            det.alpha = [1.0] * len(names)
        elif len(alpha) != len(names):
            raise DetectorError(f"{self.name}: {len(alpha)} alpha values for {len(names)} layers")
        det.model = [nn.Identity() for _ in names]
        self._names = names
        rows = _known_rows(id_fit)
        zs = [self._fit_tensor(id_fit.layer_stats[n]["mean"][rows]) for n in names]
        det.fit_structured(zs, self._labels(id_fit, rows))

    def _score(self, det: Any, split: Representations) -> np.ndarray:
        names = self._names
        missing = [n for n in names if "mean" not in split.layer_stats.get(n, {})]
        if missing:
            raise DetectorError(
                f"{self.name}: Representations {split.name!r} lack layer_stats means of {missing}"
            )
        arrays = [split.layer_stats[n]["mean"] for n in names]
        out = []
        with torch.no_grad():
            for sl in _chunks(len(split), self._batch_size):
                zs = [_tensor(a[sl], self._device) for a in arrays]
                out.append(_to_numpy(det.predict_structured(zs)))
        return np.concatenate(out) if out else np.zeros(0)


class _InputLoader:
    """What pytorch-ood's ``fit(data_loader)`` iterates: ``(x, y)`` batches; ``x`` on device."""

    def __init__(self, split: Representations, device: torch.device, batch_size: int) -> None:
        self.split = split
        self.device = device
        self.batch_size = batch_size

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        for x, y in self.split.inputs():  # type: ignore[misc]
            yield x.to(self.device), torch.as_tensor(y, dtype=torch.long)

    def __len__(self) -> int:  # only used in log messages by pytorch-ood
        return math.ceil(len(self.split) / self.batch_size)


class _Model(PytorchOODDetector, ModelDetector):
    """Runs the private model copy on ``split.inputs()`` through pytorch-ood's ``predict``."""

    def _inputs(self, split: Representations) -> _InputLoader:
        if split.inputs is None:
            raise DetectorError(
                f"{self.name} runs the live model, but Representations {split.name!r} has no "
                "inputs(); the runner must attach the input batches"
            )
        return _InputLoader(split, self._device, self._batch_size)

    def _fit(self, det: Any, id_fit: Representations) -> None:
        if not det.requires_fit:
            return
        if self.spec.fit_on_features:
            rows = _known_rows(id_fit)
            det.fit_features(self._fit_tensor(id_fit.features[rows]), self._labels(id_fit, rows))
        else:
            det.fit(self._inputs(id_fit))

    def _score(self, det: Any, split: Representations) -> np.ndarray:
        out = [_to_numpy(det.predict(x)) for x, _ in self._inputs(split)]
        return np.concatenate(out) if out else np.zeros(0)


# --------------------------------------------------------------------------------------------


def _spec(cls: type, adapter: type[PytorchOODDetector], defaults: dict[str, Any],
          make: Callable[[_Context, dict[str, Any]], Any], representation: str,
          **kw: Any) -> Spec:
    return Spec(cls=cls, adapter=adapter, defaults=defaults, make=make,
                representation=representation, **kw)


def _m(ctx: _Context, name: str) -> nn.Module:
    return ctx.require_model(name)


_SPECS: list[Spec] = [
    # ---- logits
    _spec(pod.MaxSoftmax, _Logits, {"t": 1.0},
          lambda c, p: pod.MaxSoftmax(None, t=p["t"]), "logits"),
    _spec(pod.MaxLogit, _Logits, {},
          lambda c, p: pod.MaxLogit(None), "logits"),
    _spec(pod.EnergyBased, _Logits, {"t": 1.0},
          lambda c, p: pod.EnergyBased(None, t=p["t"]), "logits"),
    _spec(pod.Entropy, _Logits, {},
          lambda c, p: pod.Entropy(None), "logits"),
    _spec(pod.GEN, _Logits, {"gamma": 0.1, "M": None},
          lambda c, p: pod.GEN(None, gamma=p["gamma"], M=p["M"]), "logits"),
    _spec(pod.WeightedEBO, _Logits, {"weights": None},
          lambda c, p: pod.WeightedEBO(None, weights=_weights(c, p["weights"])),
          "logits (weights: null = all ones, i.e. EnergyBased at T=1)"),
    _spec(pod.TemperatureScaling, _Logits, {},
          lambda c, p: pod.TemperatureScaling(None), "logits", labels="used"),
    _spec(pod.KLMatching, _Logits, {},
          lambda c, p: pod.KLMatching(None), "logits"),
    _spec(pod.OpenMax, _OpenMax, {"tailsize": 25, "alpha": 10, "euclid_weight": 1.0},
          lambda c, p: pod.OpenMax(None, **p), "logits", labels="used"),
    # ---- penultimate features
    _spec(pod.Mahalanobis, _Features, {},
          lambda c, p: pod.Mahalanobis(None), "features", labels="every class"),
    _spec(pod.RMD, _Features, {},
          lambda c, p: pod.RMD(None), "features", labels="every class"),
    _spec(pod.GMM, _Features, {"reg": 1e-6},
          lambda c, p: pod.GMM(None, reg=p["reg"]), "features", labels="used"),
    _spec(pod.KNN, _Features, {"k": 50, "normalize": True},
          lambda c, p: pod.KNN(None, k=p["k"], normalize=p["normalize"]), "features"),
    _spec(pod.ViM, _Features, {"d": None}, _vim, "features + fc weight/bias"),
    _spec(pod.DICE, _Features, {"p": 0.7, "detector": "energy"},
          lambda c, p: pod.DICE(None, *_fc_tensors(c), p=p["p"],
                                detector=_score_function("DICE", p["detector"])),
          "features + fc weight/bias"),
    _spec(pod.SHE, _Features, {},
          lambda c, p: pod.SHE(None, head=_m(c, "SHE").forward_head),
          "features + forward_head", needs_model=True, labels="every class",
          error_hint="SHE needs at least one correctly classified fit sample of every class"),
    _spec(pod.fDBD, _Features, {},
          lambda c, p: pod.fDBD(None, head=_fc_copy(c)), "features + fc"),
    _spec(pod.NCI, _Features, {"alpha": 0.0},
          lambda c, p: pod.NCI(None, head=_fc_copy(c), alpha=p["alpha"]), "features + fc"),
    _spec(pod.NNGuide, _Features, {"k": 10},
          lambda c, p: pod.NNGuide(None, head=_m(c, "NNGuide").forward_head, k=p["k"]),
          "features + forward_head", needs_model=True),
    _spec(pod.PNML, _Features, {"eps": 1e-12},
          lambda c, p: pod.PNML(None, head=_m(c, "PNML").forward_head, eps=p["eps"]),
          "features + forward_head", needs_model=True),
    _spec(pod.LTS, _Features, {"p": 0.05, "detector": "energy"},
          lambda c, p: pod.LTS(None, head=_m(c, "LTS").forward_head, p=p["p"],
                               detector=_score_function("LTS", p["detector"])),
          "features + forward_head", needs_model=True),
    # ---- feature-map detectors on pooled penultimate features
    _spec(pod.ReAct, _PooledMaps,
          {"threshold": None, "percentile": 0.9, "detector": "energy"},
          lambda c, p: pod.ReAct(None, _pooled_head(_m(c, "ReAct")), threshold=p["threshold"],
                                 percentile=p["percentile"],
                                 detector=_score_function("ReAct", p["detector"])),
          "features as BxDx1x1 + forward_head", needs_model=True),
    _spec(pod.ASH, _PooledMaps, {"variant": "ash-s", "percentile": 0.65,
                                        "detector": "energy"},
          lambda c, p: pod.ASH(None, _pooled_head(_m(c, "ASH")), variant=p["variant"],
                               percentile=p["percentile"],
                               detector=_score_function("ASH", p["detector"])),
          "features as BxDx1x1 + forward_head", needs_model=True),
    _spec(pod.SCALE, _PooledMaps, {"percentile": 0.65, "detector": "energy"},
          lambda c, p: pod.SCALE(None, _pooled_head(_m(c, "SCALE")), percentile=p["percentile"],
                                 detector=_score_function("SCALE", p["detector"])),
          "features as BxDx1x1 + forward_head", needs_model=True),
    _spec(pod.VRA, _PooledMaps,
          {"lower_percentile": 0.01, "upper_percentile": 0.99, "detector": "energy"},
          lambda c, p: pod.VRA(None, _pooled_head(_m(c, "VRA")),
                               lower_percentile=p["lower_percentile"],
                               upper_percentile=p["upper_percentile"],
                               detector=_score_function("VRA", p["detector"])),
          "features as BxDx1x1 + forward_head", needs_model=True),
    # ---- spatial feature maps
    _spec(pod.RankFeat, _FeatureMaps, {"detector": "energy"},
          lambda c, p: pod.RankFeat(None, _m(c, "RankFeat").forward_from_feature_maps,
                                    detector=_score_function("RankFeat", p["detector"])),
          "feature_maps + forward_from_feature_maps", needs_model=True),
    # ---- structured, several layers
    _spec(pod.MultiMahalanobis, _LayerStats, {"layers": None, "alpha": None},
          _make_mmahalanobis, "layer_stats[layer]['mean']", labels="every class",
          adapter_params=frozenset({"layers"})),
    _spec(pod.Gram, _Model, {"feature_layers": None, "num_poles_list": [1, 2, 3],
                                     "seed": 0},
          _make_gram, "inputs (full maps of monitored layers, hooked)", needs_model=True,
          labels="every class", adapter_params=frozenset({"seed"})),
    # ---- live model
    _spec(pod.MahalanobisODIN, _Model,
          {"eps": 0.002, "norm_std": "network"},
          lambda c, p: pod.MahalanobisODIN(_m(c, "MahalanobisODIN").forward_features,
                                           eps=p["eps"], norm_std=_norm_std(c, p["norm_std"])),
          "fit: features; score: inputs", needs_model=True, labels="every class",
          fit_on_features=True),
    _spec(pod.ODIN, _Model,
          {"eps": 0.0014, "temperature": 1000.0, "norm_std": "network"},
          lambda c, p: pod.ODIN(_m(c, "ODIN"), eps=p["eps"], temperature=p["temperature"],
                                norm_std=_norm_std(c, p["norm_std"])),
          "inputs", needs_model=True),
    _spec(pod.GradNorm, _Model,
          {"param_filter": ["fc.weight"], "micro_batch_size": 32, "temperature": 1.0},
          lambda c, p: pod.GradNorm(_m(c, "GradNorm"),
                                    param_filter=_param_filter(c, p["param_filter"]),
                                    micro_batch_size=p["micro_batch_size"],
                                    temperature=p["temperature"]),
          "inputs", needs_model=True),
    _spec(pod.GradUncertainty, _Model, {"param_filter": ["fc.weight"]},
          lambda c, p: pod.GradUncertainty(_m(c, "GradUncertainty"),
                                           param_filter=_param_filter(c, p["param_filter"])),
          "inputs", needs_model=True),
    _spec(pod.NACUE, _Model,
          {"layers": None, "m_bins": 50, "alpha": 100.0, "o_star": 50},
          _make_nacue, "inputs", needs_model=True, freeze=False),
    _spec(pod.MCD, _Model, {"samples": 30, "mode": "var", "batch_norm": True, "seed": 0},
          _make_mcd, "inputs (needs dropout)", needs_model=True,
          adapter_params=frozenset({"seed"})),
]

TABLE: dict[str, Spec] = {s.name: s for s in _SPECS}
_ALIASES: dict[str, str] = {}
for _s in _SPECS:
    _ALIASES[_s.name.lower()] = _s.name
    _ALIASES[_s.short.lower()] = _s.name


def spec(name: str) -> Spec:
    key = _ALIASES.get(str(name).lower())
    if key is None:
        if name in LEFT_OUT or str(name).lower() == "mcm":
            raise DetectorError(f"pytorch-ood MCM is not supported: {LEFT_OUT['MCM']}")
        raise DetectorError(
            f"unknown pytorch-ood detector {name!r}; available: {', '.join(sorted(TABLE))}"
        )
    return TABLE[key]


def build(name: str, params: dict[str, Any] | None = None) -> PytorchOODDetector:
    """A detector for pytorch-ood class ``name`` (or its short name) with pinned defaults."""
    s = spec(name)
    given = dict(params or {})
    unknown = sorted(set(given) - set(s.defaults))
    if unknown:
        raise DetectorError(
            f"{s.name}: unknown parameters {unknown}; valid: {sorted(s.defaults) or 'none'}"
        )
    resolved = {**s.defaults, **given}
    if "detector" in resolved:
        _score_function(s.name, resolved["detector"])
    return s.adapter(s.name, s, **resolved)

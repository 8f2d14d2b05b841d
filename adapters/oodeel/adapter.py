"""Adapter for Oodeel 0.4.0: every detector and flag behind the harness interface.

Oodeel's own lifecycle is used unchanged: ``det = Cls(**params)``, ``det.fit(model,
fit_loader, feature_layers_id=..., head_layer_id='fc')``, ``scores, _ = det.score(loader)``.
Its scores are already higher = more OOD (returned as float64). Around it:

* **Replay** (``mode='auto'`` where possible): the model Oodeel is given is a
  :class:`~adapters.oodeel.networks.ReplayNet` over cached rows, so no image is touched. Logit
  methods read the cached logits; with ReAct/ASH/SCALE they read the cached features through a
  copy of the final linear layer; feature-based methods with ``eps == 0`` read the cached
  penultimate features or, for monitored layers, the cached per-channel spatial means (Oodeel's
  default post-processing is exactly that average pool).
* **Live model** (``mode='model'``, and always for ODIN, Gram and ``eps > 0``): a private
  :class:`~adapters.oodeel.networks.LiveNet` copy of ``network.model`` on ``split.inputs()``.
  Oodeel leaves forward hooks on the model it was given (measured: 2 after fit + score), so the
  shared model is never handed over.
* **Layers** (feature-based methods): ``layers='penultimate'`` (default), ``'monitored'`` (the
  backbone's monitored layers, as the in-house detector uses them), or a list of monitored
  layer names and ``'penultimate'``. Several layers are combined by ``aggregator``: ``fisher``
  (Fisher's method with Brown's correction on empirical CDFs of the fit data), ``mean``,
  ``std`` (Oodeel's default for several layers).
* **A quirk handled here**: ``OODBaseDetector._load_feature_extractor`` has a mutable default
  ``feature_layers_id=[]`` to which ReAct's threshold computation appends ``'penultimate'``
  (hidden global state: each ReAct fit in a process adds a hook); the default is emptied
  after every fit.

Adapter parameters (besides the method's own): ``mode`` (``auto``/``replay``/``model``),
``layers``, ``aggregator``, ``batch_size``, ``seed`` (default 0), ``norm_std`` (input
perturbations: ``network`` = ``eps`` in pixel units, through the backbone's input std, see
:class:`~adapters.oodeel.networks.LiveNet`; null = Oodeel's normalised units). VIM's
``princ_dims: null`` is half the feature dimension (the harness's ViM default elsewhere).
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from typing import Any

import numpy as np
import oodeel  # noqa: F401  (fail early, with ImportError, when Oodeel is not installed)
import oodeel.aggregator as aggregators
import oodeel.extractor.torch_feature_extractor  # noqa: F401  (its torch backend: see below)
import oodeel.methods as methods
import torch
from oodeel.methods.base import OODBaseDetector
from torch.utils.data import DataLoader, IterableDataset, TensorDataset

from adapters.base import (
    Detector,
    DetectorError,
    FeatureDetector,
    LayerStatsDetector,
    LogitDetector,
    ModelDetector,
    check_labels,
    frozen_copy,
)
from adapters.oodeel import LIBRARY_INFO
from adapters.oodeel.networks import LiveNet, ReplayNet
from adapters.oodeel.specs import AGGREGATORS, FEATURE_FLAGS, SPECS, Spec
from benchmark.representations import Network, Representations
from benchmark.seeding import seeded

# Oodeel loads its torch backend on the first fit, and it imports Hugging Face ``datasets``:
# importing it above makes a missing dependency fail at build time with the install hint.
ADAPTER_PARAMS = frozenset({"mode", "layers", "aggregator", "batch_size", "seed", "norm_std"})
MODES = ("auto", "replay", "model")
PENULTIMATE = "penultimate"


def _method_params(cls: type) -> dict[str, Any]:
    """The constructor parameters of an Oodeel method (its own and its base's) -> default."""
    out: dict[str, Any] = {}
    for klass in (OODBaseDetector, cls):
        for p in inspect.signature(klass.__init__).parameters.values():
            if p.name != "self" and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL):
                out[p.name] = p.default
    return out


def _wanted_layers(name: str, layers: Any) -> list[str]:
    if isinstance(layers, str):
        return [layers]
    if isinstance(layers, (list, tuple)) and layers and all(isinstance(x, str) for x in layers):
        return list(layers)
    raise DetectorError(f"oodeel {name}: layers={layers!r} must be 'penultimate', 'monitored' "
                        "or a list of monitored layer names")


def _uses_features(spec: Spec, args: dict[str, Any]) -> bool:
    return spec.kind == "logits" and any(args.get(f) for f in FEATURE_FLAGS)


def build(name: str, params: dict[str, Any]) -> Detector:
    if name not in SPECS:
        raise DetectorError(f"unknown Oodeel detector {name!r}; valid: {', '.join(sorted(SPECS))}")
    spec = SPECS[name]
    params = dict(params or {})
    mode = params.get("mode", "auto")
    if mode not in MODES:
        raise DetectorError(f"oodeel {name}: mode={mode!r} is not one of {MODES}")
    defaults = _method_params(getattr(methods, spec.cls))
    unknown = sorted(set(params) - ADAPTER_PARAMS - set(defaults))
    if unknown:
        raise DetectorError(f"oodeel {name}: unknown params {unknown}; valid: "
                            f"{sorted(set(defaults) | ADAPTER_PARAMS)}")
    fixed = sorted(set(params) & set(spec.flags))
    if fixed:
        raise DetectorError(f"oodeel {name}: {fixed} are fixed by the detector's name "
                            f"({spec.flags}); use detector {spec.cls} to set them")
    aggregator = params.get("aggregator")
    if aggregator is not None and aggregator not in AGGREGATORS:
        raise DetectorError(f"oodeel {name}: aggregator={aggregator!r} is not one of "
                            f"{sorted(AGGREGATORS)} or null")
    if spec.kind != "layers" and spec.cls != "Gram" and ("layers" in params or aggregator):
        raise DetectorError(f"oodeel {name} reads the head only; 'layers' and 'aggregator' "
                            "apply to feature-based detectors")
    layers = _wanted_layers(name, params.get("layers", spec.layers))
    args = {**defaults, **spec.flags, **{k: v for k, v in params.items()
                                         if k not in ADAPTER_PARAMS}}
    if params.get("norm_std") is not None and not args.get("eps"):
        raise DetectorError(f"oodeel {name}: norm_std scales an input perturbation; this "
                            f"detector has none (eps={args.get('eps')})")
    replayable = spec.kind == "logits" or (spec.kind == "layers" and not args.get("eps"))
    if mode == "replay" and not replayable:
        why = ("eps > 0: an input perturbation" if spec.kind == "layers"
               else "it needs the live model")
        raise DetectorError(f"oodeel {name}: cannot replay cached representations ({why}); "
                            "use mode='model'")
    if mode == "model" or not replayable:
        cls: type[OodeelDetector] = OodeelModelDetector
    elif spec.kind == "logits":
        cls = OodeelFeatureDetector if _uses_features(spec, args) else OodeelLogitDetector
    else:
        cls = OodeelFeatureDetector if layers == [PENULTIMATE] else OodeelLayerStatsDetector
    return cls(name, **params)


def _chunks(n: int, batch_size: int) -> list[list[int]]:
    """Row indices in batches of ``batch_size``, never a last batch of one row when there are
    more: SHE squeezes its batch (``op.squeeze(layer_features)``), so a single-row batch loses
    its batch axis and fails."""
    out = [list(range(i, min(i + batch_size, n))) for i in range(0, n, batch_size)]
    if len(out) > 1 and len(out[-1]) == 1:
        out[-2] += out.pop()
    return out


class _Batches(IterableDataset):
    """``split.inputs()`` re-batched by ``batch_size`` rows (no last batch of one row, see
    :func:`_chunks`) as a re-iterable dataset of ready batches (Oodeel iterates twice)."""

    def __init__(self, inputs: Any, batch_size: int, keep: np.ndarray | None = None,
                 scale: tuple[float, ...] | None = None) -> None:
        self.inputs, self.batch_size, self.keep = inputs, batch_size, keep
        self.scale = None if scale is None else torch.tensor(scale).view(1, -1, 1, 1)

    def _rows(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        start = 0
        for x, y in self.inputs():
            if self.keep is not None:
                mask = torch.as_tensor(self.keep[start:start + len(x)])
                start += len(x)
                x, y = x[mask], y[mask]
            if self.scale is not None:
                x = x * self.scale.to(x.device)
            if len(x):
                yield x, y

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        xs: list[torch.Tensor] = []
        ys: list[torch.Tensor] = []
        n = 0
        for x, y in self._rows():
            xs.append(x)
            ys.append(y)
            n += len(x)
            if n > self.batch_size + 1:
                bx, by = torch.cat(xs), torch.cat(ys)
                while len(bx) > self.batch_size + 1:
                    yield bx[:self.batch_size], by[:self.batch_size]
                    bx, by = bx[self.batch_size:], by[self.batch_size:]
                xs, ys, n = [bx], [by], len(bx)
        if n:
            yield torch.cat(xs), torch.cat(ys)


class OodeelDetector(Detector):
    """One Oodeel method; the typed subclasses below say what it consumes."""

    library = LIBRARY_INFO.name

    def __init__(self, name: str, **params: Any) -> None:
        super().__init__(name, **params)
        self.spec = SPECS[name]
        self.seed = params.get("seed", 0)
        self.layers = _wanted_layers(name, params.get("layers", self.spec.layers))
        self.args = {**self.spec.flags,
                     **{k: v for k, v in params.items() if k not in ADAPTER_PARAMS}}
        self.detector_: Any = None
        self.net_: torch.nn.Module | None = None
        self.layer_ids_: list[str] = []
        self._batch_size = 256
        self._device = torch.device("cpu")

    # -- what each typed subclass provides ---------------------------------------------

    def _make_net(self, network: Network, id_fit: Representations) -> torch.nn.Module:
        raise NotImplementedError

    def _loader(self, split: Representations, keep: np.ndarray | None = None) -> DataLoader:
        raise NotImplementedError

    # -- shared -------------------------------------------------------------------------

    def _monitored(self, network: Network) -> list[str]:
        monitored = getattr(network.model, "monitored_layers", None)
        return list(monitored()) if callable(monitored) else []

    def _resolve_layers(self, network: Network) -> list[str]:
        """The requested layers as harness names ('penultimate' or monitored layer names)."""
        if self.spec.kind == "logits" or self.spec.cls == "ODIN":
            return []
        monitored = self._monitored(network)
        if self.layers == ["monitored"]:
            if not monitored:
                raise DetectorError(f"oodeel {self.name}: the backbone has no monitored layers")
            return monitored
        unknown = [x for x in self.layers if x != PENULTIMATE and x not in monitored]
        if unknown:
            raise DetectorError(f"oodeel {self.name}: layers {unknown} are not monitored "
                                f"layers of the backbone; valid: {[PENULTIMATE, *monitored]}")
        return list(self.layers)

    def _head(self) -> str:
        return "fc"

    def level_threshold(self, alpha: float) -> float | None:
        """Fisher aggregation scores ``1 - p`` with ``p`` Brown's chi-square p-value of the
        combined layer p-values (empirical CDFs of the fit scores): Oodeel's own reading of
        "flag at level alpha" is ``p <= alpha``. Other scores claim no level."""
        several = self.layers == ["monitored"] or len(self.layers) > 1
        if self.params.get("aggregator") == "fisher" and several:
            return 1.0 - float(alpha)
        return None

    def _constructor(self, id_fit: Representations) -> Any:
        args = dict(self.args)
        if "princ_dims" in args and args["princ_dims"] is None:
            args["princ_dims"] = int(id_fit.features.shape[1]) // 2
        aggregator = self.params.get("aggregator")
        if aggregator is not None:
            args["aggregator"] = getattr(aggregators, AGGREGATORS[aggregator])()
        cls = getattr(methods, self.spec.cls)
        try:
            return cls(**args)
        except (TypeError, ValueError) as exc:
            raise DetectorError(f"oodeel {self.name}: {exc}") from exc

    def fit(self, id_fit: Representations, network: Network,
            calibration: Representations | None = None) -> OodeelDetector:
        num_classes = int(network.num_classes or id_fit.num_classes)
        check_labels(f"oodeel {self.name}", id_fit, num_classes, self.spec.labels)
        self._device = torch.device(network.device)
        self._batch_size = int(self.params.get("batch_size") or network.batch_size)
        self.harness_layers_ = self._resolve_layers(network)
        self.detector_, self.fitted_ = None, False
        keep = np.asarray(id_fit.labels) >= 0 if self.spec.labels != "unused" else None
        with seeded(self.seed), torch.enable_grad():
            self.net_ = self._make_net(network, id_fit)
            det = self._constructor(id_fit)
            try:
                det.fit(self.net_, self._loader(id_fit, keep),
                        feature_layers_id=list(self.layer_ids_), head_layer_id=self._head())
            except DetectorError:
                raise
            except Exception as exc:
                raise DetectorError(f"oodeel {self.name} fit failed: {type(exc).__name__}: "
                                    f"{exc}") from exc
            finally:
                # Oodeel's mutable default list (see the module docstring)
                OODBaseDetector._load_feature_extractor.__defaults__[0].clear()
        self.detector_, self.fitted_ = det, True
        return self

    def score(self, split: Representations, network: Network) -> np.ndarray:
        self.check_fitted()
        if len(split) == 0:
            return np.zeros(0, dtype=np.float64)
        with seeded(self.seed), torch.enable_grad():
            try:
                scores, _ = self.detector_.score(self._loader(split))
            except Exception as exc:
                raise DetectorError(f"oodeel {self.name} scoring failed: "
                                    f"{type(exc).__name__}: {exc}") from exc
        scores = np.asarray(scores, dtype=np.float64).reshape(-1)
        if len(scores) != len(split):
            raise DetectorError(f"oodeel {self.name}: {len(scores)} scores for {len(split)} rows")
        return scores


class _ReplayMixin:
    """Cached rows ``[logits | features | layer means]`` through a :class:`ReplayNet`."""

    name: str
    spec: Spec
    harness_layers_: list[str]
    layer_ids_: list[str]
    _batch_size: int
    _device: torch.device
    _head: Any

    def _make_net(self, network: Network, id_fit: Representations) -> torch.nn.Module:
        fc = frozen_copy(network.fc, self._device)
        blocks = [x for x in self.harness_layers_ if x != PENULTIMATE]
        for layer in blocks:
            if "mean" not in id_fit.layer_stats.get(layer, {}):
                raise DetectorError(f"oodeel {self.name}: no cached spatial means of layer "
                                    f"{layer!r} (layer_stats[{layer!r}]['mean'])")
        widths = [id_fit.layer_stats[layer]["mean"].shape[1] for layer in blocks]
        names = iter(f"layer{i}" for i in range(len(blocks)))
        self.layer_ids_ = ["features" if x == PENULTIMATE else next(names)
                           for x in self.harness_layers_]
        self.blocks_ = blocks
        return ReplayNet(fc, int(id_fit.logits.shape[1]), int(id_fit.features.shape[1]),
                         widths, head=self._head()).to(self._device)

    def _rows(self, split: Representations) -> np.ndarray:
        parts = [split.logits, split.features]
        for layer in self.blocks_:
            try:
                parts.append(split.layer_stats[layer]["mean"])
            except KeyError:
                raise DetectorError(f"oodeel {self.name}: split {split.name!r} has no cached "
                                    f"spatial means of layer {layer!r}") from None
        return np.hstack([np.asarray(p, np.float32) for p in parts])

    def _loader(self, split: Representations, keep: np.ndarray | None = None) -> DataLoader:
        rows, labels = self._rows(split), np.asarray(split.labels, np.int64)
        if keep is not None:
            rows, labels = rows[keep], labels[keep]
        data = TensorDataset(torch.from_numpy(rows), torch.from_numpy(labels))
        return DataLoader(data, batch_sampler=_chunks(len(rows), self._batch_size))


class _ModelMixin:
    """End to end on ``split.inputs()`` with a private :class:`LiveNet` copy of the model."""

    name: str
    harness_layers_: list[str]
    layer_ids_: list[str]
    _batch_size: int
    _device: torch.device
    params: dict[str, Any]
    scale_: tuple[float, ...] | None = None

    def _input_scale(self, network: Network) -> tuple[float, ...] | None:
        value = self.params.get("norm_std")
        if value is None:
            return None
        if value == "network":
            if network.input_std is None:
                raise DetectorError(f"oodeel {self.name}: norm_std='network' but the backbone "
                                    "declares no input std")
            return tuple(float(v) for v in network.input_std)
        if isinstance(value, (list, tuple)) and all(isinstance(v, (int, float)) for v in value):
            return tuple(float(v) for v in value)
        raise DetectorError(f"oodeel {self.name}: norm_std={value!r} must be 'network', a list "
                            "of per-channel stds, or null")

    def _make_net(self, network: Network, id_fit: Representations) -> torch.nn.Module:
        self.scale_ = self._input_scale(network)
        net = LiveNet(frozen_copy(network.model, self._device), self.scale_).to(self._device)
        monitored = net.monitored()
        self.layer_ids_ = ["features" if x == PENULTIMATE else monitored[x]
                           for x in self.harness_layers_]
        return net

    def _loader(self, split: Representations, keep: np.ndarray | None = None) -> DataLoader:
        if split.inputs is None:
            raise DetectorError(f"oodeel {self.name} runs the live model on images and needs "
                                f"Representations.inputs for split {split.name!r} (not attached)")
        return DataLoader(_Batches(split.inputs, self._batch_size, keep, self.scale_),
                          batch_size=None)


class OodeelLogitDetector(_ReplayMixin, OodeelDetector, LogitDetector):
    def _head(self) -> str:
        return "logits"


class OodeelFeatureDetector(_ReplayMixin, OodeelDetector, FeatureDetector):
    pass


class OodeelLayerStatsDetector(_ReplayMixin, OodeelDetector, LayerStatsDetector):
    pass


class OodeelModelDetector(_ModelMixin, OodeelDetector, ModelDetector):
    pass

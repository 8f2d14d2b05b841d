"""Adapter for OpenOOD (GitHub ``Jingkang50/OpenOOD``, pinned commit; see docs/openood-install.md).

Every purely post-hoc OpenOOD postprocessor behind the harness interface. Scores are OpenOOD's
``conf`` **negated** (OpenOOD: higher = more ID; harness: higher = more OOD), as float64.

How a postprocessor runs
========================
OpenOOD's own lifecycle is used unchanged: ``pp = Cls(config)`` (a fresh instance per ``fit``:
``setup`` is guarded by a flag, a reused instance would keep stale statistics),
``pp.setup(net, id_loader_dict, ood_loader_dict)``, ``pp.inference(net, loader)``. Around it:

* **Feature replay** (``mode='replay'``, the default where possible): methods that read only
  logits, penultimate features and the final linear layer run on the cached
  ``Representations`` through :class:`~adapters.openood.networks.ReplayNet`, whose input
  rows are ``[logits | features]``; no image is touched. RankFeat replays cached
  ``feature_maps`` through the backbone's ``forward_from_feature_maps``.
* **Live model** (``mode='model'``): the others (ODIN, IODIN, AdaScale-A/L, Gram, GMM, MDS
  ensemble) run end to end on ``split.inputs()`` with a frozen private copy of
  ``network.model`` wrapped in
  :class:`~adapters.openood.networks.ZooNet` (OpenOOD's network contract). Any
  replayable method can also be forced to run this way (the equivalence tests do).
* ReAct, ASH, SCALE and AdaScale are wrapped in OpenOOD's own ``ReactNet``/``ASHNet``/
  ``ScaleNet``/``AdaScaleANet``/``AdaScaleLNet``.
* **Device**: OpenOOD hard-codes ``.cuda()``; every OpenOOD call runs inside
  :func:`~adapters.openood.device.device_shim` (``network.device``; the real GPU when it
  is a CUDA device).
* **Loader dicts**: ``id_loader_dict = {'train': fit split, 'val': calibration split (the fit
  split if the runner gives none), 'test': same as 'val'}``; batches are
  ``{'data', 'data_aux', 'label'}`` of exactly ``batch_size`` rows (``network.batch_size``).
  ``ood_loader_dict`` is always empty: no OOD data is used to fit, and OpenOOD's automatic
  hyper-parameter search (APS, which needs OOD validation data) is never run.
* **Config**: ``adapters/openood/postprocessor_configs/<name>.yml`` (OpenOOD's values at the pinned
  commit); detector ``params`` override ``postprocessor_args`` keys. ``dataset.name`` is the ID
  dataset's name (from ``Representations.name`` or param ``dataset``) and is registered in
  OpenOOD's ``num_classes_dict`` (and, with ``input_std``, ``normalization_dict``) while the
  postprocessor is constructed, so any ID dataset and class count works.

Adapter parameters (besides the postprocessor's own): ``mode`` (``auto``/``replay``/``model``),
``seed`` (RNG for Gram, CFOOD, GMM, AdaScale; default 0), ``dataset``, ``input_std`` (ODIN's,
IODIN's and MDS ensemble's per-channel gradient scaling: set it to the backbone's input
normalisation std; OpenOOD's fallback for unknown datasets is 0.5), ``batch_size``,
``verbose`` (show OpenOOD's prints and progress bars; default off).

See :mod:`adapters.openood.specs` for what each postprocessor consumes and needs, and
``LEFT_OUT`` there for the snapshot's postprocessors that are not purely post-hoc.
"""

from __future__ import annotations

import contextlib
import io
import logging
from collections.abc import Iterator
from typing import Any

import numpy as np
import openood  # noqa: F401  (fail early, with ImportError, when OpenOOD is not installed)
import torch

from adapters.base import (
    Detector,
    DetectorError,
    FeatureDetector,
    FeatureMapDetector,
    LogitDetector,
    ModelDetector,
    check_labels,
)
from adapters.openood import LIBRARY_INFO
from adapters.openood.compat import NOTES, ensure_importable, stubbed
from adapters.openood.config import (
    build_config,
    config_path,
    dataset_key,
    load_postprocessor_section,
    registered_dataset,
)
from adapters.openood.device import device_shim
from adapters.openood.loaders import BatchLoader, array_loader, pad_channels
from adapters.openood.networks import RankFeatNet, ReplayNet, ZooNet, frozen_copy
from adapters.openood.specs import LEFT_OUT, SPECS, Spec
from benchmark.representations import Network, Representations
from benchmark.seeding import seeded

log = logging.getLogger(__name__)

ADAPTER_PARAMS = frozenset({"mode", "seed", "dataset", "input_std", "batch_size", "verbose"})
MODES = ("auto", "replay", "model")


def build(name: str, params: dict[str, Any]) -> Detector:
    if name not in SPECS:
        why = LEFT_OUT.get(name)
        if why:
            raise DetectorError(f"OpenOOD postprocessor {name!r} is not supported: {why}")
        raise DetectorError(
            f"unknown OpenOOD postprocessor {name!r}; valid: {', '.join(sorted(SPECS))}"
        )
    spec = SPECS[name]
    params = dict(params or {})
    mode = params.get("mode", "auto")
    if mode not in MODES:
        raise DetectorError(f"openood {name}: mode={mode!r} is not one of {MODES}")
    if mode == "replay" and spec.replay is None:
        raise DetectorError(f"openood {name}: cannot replay cached representations "
                            f"({spec.note}); use mode='model'")
    if not config_path(name).exists():
        raise DetectorError(f"openood {name}: config {config_path(name)} is missing")
    section = load_postprocessor_section(name)
    unknown = sorted(set(params) - ADAPTER_PARAMS - set(section["postprocessor_args"]))
    if unknown:
        valid = sorted(set(section["postprocessor_args"]) | ADAPTER_PARAMS)
        raise DetectorError(f"openood {name}: unknown params {unknown}; valid: {valid}")
    replay = spec.replay if mode != "model" else None
    cls = {"logits": OpenOODLogitDetector, "features": OpenOODFeatureDetector,
           "maps": OpenOODFeatureMapDetector, None: OpenOODModelDetector}[replay]
    return cls(name, **params)


# --------------------------------------------------------------------------------------------
# helpers


def _postprocessor_class(spec: Spec) -> type:
    ensure_importable()
    import openood.postprocessors as pps

    return getattr(pps, spec.cls)


def _network_wrapper(name: str) -> type:
    ensure_importable()
    from openood.networks.adascale_net import AdaScaleANet, AdaScaleLNet
    from openood.networks.ash_net import ASHNet
    from openood.networks.react_net import ReactNet
    from openood.networks.scale_net import ScaleNet

    return {"ReactNet": ReactNet, "ASHNet": ASHNet, "ScaleNet": ScaleNet,
            "AdaScaleANet": AdaScaleANet, "AdaScaleLNet": AdaScaleLNet}[name]


@contextlib.contextmanager
def _quiet(verbose: bool) -> Iterator[io.StringIO]:
    """Capture OpenOOD's prints and tqdm bars (logged at DEBUG) unless ``verbose``."""
    buf = io.StringIO()
    if verbose:
        yield buf
        return
    try:
        with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(buf):
            yield buf
    finally:
        text = buf.getvalue().strip()
        if text:
            log.debug("openood output:\n%s", text[-4000:])


# --------------------------------------------------------------------------------------------
# the detector


class OpenOODDetector(Detector):
    """One OpenOOD postprocessor; typed subclasses below say what it consumes."""

    library = LIBRARY_INFO.name
    replay: str | None = None

    def __init__(self, name: str, **params: Any) -> None:
        super().__init__(name, **params)
        self.spec = SPECS[name]
        self.section = load_postprocessor_section(name)
        self.mode = params.get("mode", "auto")
        self.seed = params.get("seed", 0)
        self.verbose = bool(params.get("verbose", False))
        self.args = {k: v for k, v in params.items() if k not in ADAPTER_PARAMS}
        self.effective_args_: dict[str, Any] = {}
        self.postprocessor_: Any = None
        self.net_: torch.nn.Module | None = None
        self._device = torch.device("cpu")
        self._batch_size = 256

    # -- configuration ------------------------------------------------------------------

    def _resolve_args(self, feature_dim: int) -> dict[str, Any]:
        args = dict(self.args)
        key = self.spec.dim_arg
        if key is not None:
            given = key in args
            dim = int(args.get(key, self.section["postprocessor_args"].get(key)))
            if dim >= feature_dim:
                if given:
                    raise DetectorError(
                        f"openood {self.name}: {key}={dim} must be smaller than the feature "
                        f"dimension {feature_dim} (OpenOOD would return constant or NaN scores)"
                    )
                clamped = feature_dim // 2
                log.warning("openood %s: config %s=%d >= feature dim %d; using %d (half the "
                            "features, OpenOOD's ratio for ResNet-18)", self.name, key, dim,
                            feature_dim, clamped)
                args[key] = clamped
        return args

    def _dataset_name(self, id_fit: Representations) -> str:
        name = self.params.get("dataset") or (id_fit.name.split("/")[0] if id_fit.name else "")
        return name or "id"

    # -- networks and loaders -----------------------------------------------------------

    def _wrap(self, net: torch.nn.Module) -> torch.nn.Module:
        if self.spec.wrapper in ("ReactNet", "ASHNet", "ScaleNet", "AdaScaleANet",
                                 "AdaScaleLNet"):
            return _network_wrapper(self.spec.wrapper)(net)
        return net

    def _make_net(self, network: Network, id_fit: Representations) -> torch.nn.Module:
        raise NotImplementedError

    def _loader(self, split: Representations, role: str) -> BatchLoader:
        raise NotImplementedError

    # -- the interface ------------------------------------------------------------------

    def fit(self, id_fit: Representations, network: Network,
            calibration: Representations | None = None) -> OpenOODDetector:
        spec = self.spec
        if spec.needs:
            ensure_importable()
            if stubbed(spec.needs):
                raise DetectorError(f"openood {self.name}: {NOTES[spec.needs]}")
        num_classes = int(network.num_classes or id_fit.num_classes)
        check_labels(f"openood {self.name}", id_fit, num_classes, spec.labels)
        self._device = torch.device(network.device)
        self._batch_size = int(self.params.get("batch_size") or network.batch_size)
        args = self._resolve_args(int(id_fit.features.shape[1]))
        self.effective_args_ = {**self.section["postprocessor_args"], **args}
        dataset = dataset_key(self._dataset_name(id_fit), num_classes)
        config = build_config(self.section, args, dataset, num_classes)
        self.postprocessor_ = None
        self.fitted_ = False
        val = calibration if calibration is not None and len(calibration) else id_fit
        cls = _postprocessor_class(spec)
        with _quiet(self.verbose), device_shim(self._device), seeded(self.seed):
            input_std = self.params.get("input_std") or network.input_std
            with registered_dataset(dataset, num_classes, input_std):
                pp = cls(config)  # fresh instance: setup() is guarded by a flag
            self.net_ = self._make_net(network, id_fit)
            train = self._loader(id_fit, "train")
            held_out = self._loader(val, "val") if spec.val else train
            id_loaders = {"train": train, "val": held_out, "test": held_out}
            try:
                pp.setup(self.net_, id_loaders, {})
                if spec.hyperparams:
                    pp.set_hyperparam([self.effective_args_[k] for k in spec.hyperparams])
            except DetectorError:
                raise
            except Exception as exc:
                raise DetectorError(f"openood {self.name} setup failed: "
                                    f"{type(exc).__name__}: {exc}") from exc
        self.postprocessor_ = pp
        self.fitted_ = True
        return self

    def score(self, split: Representations, network: Network) -> np.ndarray:
        self.check_fitted()
        if len(split) == 0:
            return np.zeros(0, dtype=np.float64)
        loader = self._loader(split, "score")
        with _quiet(self.verbose), device_shim(self._device), seeded(self.seed):
            try:
                _, conf, _ = self.postprocessor_.inference(self.net_, loader, progress=False)
            except DetectorError:
                raise
            except Exception as exc:
                raise DetectorError(f"openood {self.name} inference failed: "
                                    f"{type(exc).__name__}: {exc}") from exc
        conf = np.asarray(conf, dtype=np.float64).reshape(len(split), -1)
        if conf.shape[1] != 1:
            raise DetectorError(f"openood {self.name}: conf has shape {conf.shape}")
        return -conf[:, 0]  # OpenOOD: higher conf = more ID


class _ReplayMixin:
    """Feature replay on cached arrays (no forward pass through the backbone)."""

    name: str
    spec: Spec
    _device: torch.device
    _batch_size: int
    _wrap: Any

    def _make_net(self, network: Network, id_fit: Representations) -> torch.nn.Module:
        fc = frozen_copy(network.fc, self._device)
        return self._wrap(ReplayNet(fc, int(id_fit.logits.shape[1])).to(self._device))

    def _loader(self, split: Representations, role: str) -> BatchLoader:
        rows = np.hstack([np.asarray(split.logits, np.float32),
                          np.asarray(split.features, np.float32)])
        return array_loader(rows, split.labels, self._batch_size, f"{split.name}:{role}")


class _ModelMixin:
    """End to end on ``split.inputs()`` with a frozen copy of the live model."""

    name: str
    spec: Spec
    _device: torch.device
    _batch_size: int
    _wrap: Any

    def _make_net(self, network: Network, id_fit: Representations) -> torch.nn.Module:
        model = frozen_copy(network.model, self._device)
        if self.spec.wrapper == "RankFeatNet":
            return RankFeatNet(model, replay=False)
        in_channels = None
        if self.spec.pad3:
            in_channels = self._input_channels(id_fit)
        pad = in_channels if in_channels and in_channels < 3 else None
        return self._wrap(ZooNet(model, pad, feature_size=int(id_fit.features.shape[1])))

    def _input_channels(self, split: Representations) -> int:
        x, _ = next(iter(self._inputs(split)()))
        return int(x.shape[1])

    def _inputs(self, split: Representations):
        if split.inputs is None:
            raise DetectorError(
                f"openood {self.name} runs the live model on images and needs "
                f"Representations.inputs for split {split.name!r} (not attached)"
            )
        return split.inputs

    def _loader(self, split: Representations, role: str) -> BatchLoader:
        transform = pad_channels(3) if self.spec.pad3 else None
        return BatchLoader(self._inputs(split), len(split), self._batch_size,
                           f"{split.name}:{role}", transform)


class OpenOODLogitDetector(_ReplayMixin, OpenOODDetector, LogitDetector):
    replay = "logits"


class OpenOODFeatureDetector(_ReplayMixin, OpenOODDetector, FeatureDetector):
    replay = "features"


class OpenOODModelDetector(_ModelMixin, OpenOODDetector, ModelDetector):
    replay = None


class OpenOODFeatureMapDetector(OpenOODDetector, FeatureMapDetector):
    """RankFeat on cached ``feature_maps`` through the backbone's remaining head."""

    replay = "maps"

    def _make_net(self, network: Network, id_fit: Representations) -> torch.nn.Module:
        return RankFeatNet(frozen_copy(network.model, self._device), replay=True)

    def _loader(self, split: Representations, role: str) -> BatchLoader:
        if role == "train":  # RankFeat has no setup; nothing to replay
            return array_loader(np.zeros((0, 1, 1, 1), np.float32), np.zeros(0, np.int64),
                                self._batch_size, f"{split.name}:{role}")
        if split.feature_maps is None:
            raise DetectorError(
                f"openood {self.name} replays cached feature maps and split {split.name!r} has "
                "none (extract with feature maps, or use mode='model')"
            )
        return array_loader(split.feature_maps, split.labels, self._batch_size,
                            f"{split.name}:{role}")


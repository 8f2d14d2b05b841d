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
  ``Representations`` through :class:`~adapters.openood_support.networks.ReplayNet`, whose input
  rows are ``[logits | features]``; no image is touched. RankFeat replays cached
  ``feature_maps`` through the backbone's ``forward_from_feature_maps``.
* **Live model** (``mode='model'``): the others (ODIN, IODIN, AdaScale-A/L, Gram, GMM, MDS
  ensemble) run end to end on ``split.inputs()`` with a frozen private copy of
  ``network.model`` wrapped in
  :class:`~adapters.openood_support.networks.ZooNet` (OpenOOD's network contract). Any
  replayable method can also be forced to run this way (the equivalence tests do).
* ReAct, ASH, SCALE and AdaScale are wrapped in OpenOOD's own ``ReactNet``/``ASHNet``/
  ``ScaleNet``/``AdaScaleANet``/``AdaScaleLNet``.
* **Device**: OpenOOD hard-codes ``.cuda()``; every OpenOOD call runs inside
  :func:`~adapters.openood_support.device.device_shim` (``network.device``; the real GPU when it
  is a CUDA device).
* **Loader dicts**: ``id_loader_dict = {'train': fit split, 'val': calibration split (the fit
  split if the runner gives none), 'test': same as 'val'}``; batches are
  ``{'data', 'data_aux', 'label'}`` of exactly ``batch_size`` rows (``network.batch_size``).
  ``ood_loader_dict`` is always empty: no OOD data is used to fit, and OpenOOD's automatic
  hyper-parameter search (APS, which needs OOD validation data) is never run.
* **Config**: ``configs/openood_postprocessors/<name>.yml`` (OpenOOD's values at the pinned
  commit); detector ``params`` override ``postprocessor_args`` keys. ``dataset.name`` is the ID
  dataset's name (from ``Representations.name`` or param ``dataset``) and is registered in
  OpenOOD's ``num_classes_dict`` (and, with ``input_std``, ``normalization_dict``) while the
  postprocessor is constructed, so any ID dataset and class count works.

Adapter parameters (besides the postprocessor's own): ``mode`` (``auto``/``replay``/``model``),
``seed`` (RNG for Gram, CFOOD, GMM, AdaScale; default 0), ``dataset``, ``input_std`` (ODIN's,
IODIN's and MDS ensemble's per-channel gradient scaling: set it to the backbone's input
normalisation std; OpenOOD's fallback for unknown datasets is 0.5), ``batch_size``,
``verbose`` (show OpenOOD's prints and progress bars; default off).

See ``SPECS`` below for what each postprocessor consumes and needs, and ``LEFT_OUT`` for the
snapshot's postprocessors that are not purely post-hoc.
"""

from __future__ import annotations

import contextlib
import io
import logging
import random
from collections.abc import Iterator
from dataclasses import dataclass
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
)
from adapters.openood_support.compat import NOTES, ensure_importable, stubbed
from adapters.openood_support.config import (
    build_config,
    config_path,
    dataset_key,
    load_postprocessor_section,
    registered_dataset,
)
from adapters.openood_support.device import device_shim
from adapters.openood_support.loaders import BatchLoader, array_loader, pad_channels
from adapters.openood_support.networks import RankFeatNet, ReplayNet, ZooNet, frozen_copy
from benchmark.representations import Network, Representations

log = logging.getLogger(__name__)

LIBRARY = "openood"
# The commit the project pins (after v1.5: FPR@95 with OOD positive, AUPR-In/Out un-swapped).
PINNED_COMMIT = "3c35632ee91b54b09d1f085d04f94744cece7d0b"
ADAPTER_PARAMS = frozenset({"mode", "seed", "dataset", "input_std", "batch_size", "verbose"})
MODES = ("auto", "replay", "model")


@dataclass(frozen=True)
class Spec:
    """How one OpenOOD postprocessor is run.

    ``replay``: ``"logits"``/``"features"`` (cached ``[logits | features]`` rows), ``"maps"``
    (cached feature maps) or ``None`` (live model only). ``labels``: ``"every class"`` (fit
    labels must cover 0..C-1), ``"correct every class"`` (and >= 1 correctly classified row per
    class), or ``""``. ``val``: uses ``id_loader_dict['val']``. ``wrapper``: OpenOOD network
    wrapper class. ``pad3``: indexes input channels 0..2 (1-channel inputs are zero-padded).
    ``dim_arg``: a subspace dimension that must be < the feature dimension. ``needs``: an
    optional module that may be a placeholder (then the method raises a DetectorError).
    ``hyperparams``: OpenOOD derives some state only in ``set_hyperparam``, which its evaluator
    calls from the automatic parameter search; the adapter calls it once after ``setup`` with
    these ``postprocessor_args`` values (what the search would do with a one-point sweep).
    """

    cls: str
    replay: str | None
    labels: str = ""
    val: bool = False
    wrapper: str | None = None
    pad3: bool = False
    dim_arg: str | None = None
    note: str = ""
    needs: str | None = None  # an optional module (see openood_support.compat)
    hyperparams: tuple[str, ...] = ()  # set_hyperparam(these args) after setup (see AdaScale)


SPECS: dict[str, Spec] = {
    "msp": Spec("BasePostprocessor", "logits"),
    "odin": Spec("ODINPostprocessor", None, pad3=True,
                 note="input perturbation: gradients w.r.t. the images"),
    "iodin": Spec("IODINPostprocessor", None, pad3=True,
                  note="input perturbation of the most sensitive pixel"),
    "adascale_a": Spec("AdaScalePostprocessor", None, val=True, wrapper="AdaScaleANet",
                       hyperparams=("percentile", "k1", "k2", "lmbda", "o"),
                       note="input gradients (perturbed-feature shift)"),
    "adascale_l": Spec("AdaScalePostprocessor", None, val=True, wrapper="AdaScaleLNet",
                       hyperparams=("percentile", "k1", "k2", "lmbda", "o"),
                       note="input gradients (perturbed-feature shift)"),
    "ebo": Spec("EBOPostprocessor", "logits"),
    "mls": Spec("MaxLogitPostprocessor", "logits"),
    "gen": Spec("GENPostprocessor", "logits"),
    "klm": Spec("KLMatchingPostprocessor", "logits", val=True),
    "temp_scaling": Spec("TemperatureScalingPostprocessor", "logits", val=True),
    "openmax": Spec("OpenMax", "logits", labels="correct every class", needs="libmr"),
    "mds": Spec("MDSPostprocessor", "features", labels="every class"),
    "rmds": Spec("RMDSPostprocessor", "features", labels="every class"),
    "mds_ensemble": Spec("MDSEnsemblePostprocessor", None, labels="every class", pad3=True,
                         note="per-layer outputs + input perturbation"),
    "gram": Spec("GRAMPostprocessor", None, labels="every class",
                 note="Gram matrices of every ReLU/Conv2d output (forward hooks)"),
    "gmm": Spec("GMMPostprocessor", None, note="per-layer outputs (return_feature_list)"),
    "knn": Spec("KNNPostprocessor", "features"),
    "nnguide": Spec("NNGuidePostprocessor", "features"),
    "relation": Spec("RelationPostprocessor", "features"),
    "she": Spec("SHEPostprocessor", "features", labels="correct every class"),
    "vim": Spec("VIMPostprocessor", "features", dim_arg="dim"),
    "residual": Spec("ResidualPostprocessor", "features", val=True, dim_arg="dim"),
    "dice": Spec("DICEPostprocessor", "features"),
    "react": Spec("ReactPostprocessor", "features", val=True, wrapper="ReactNet"),
    "ash": Spec("ASHPostprocessor", "features", wrapper="ASHNet"),
    "scale": Spec("ScalePostprocessor", "features", wrapper="ScaleNet"),
    "rankfeat": Spec("RankFeatPostprocessor", "maps", wrapper="RankFeatNet",
                     note="last-block feature maps; block-3 branch degenerates (see RankFeatNet)"),
    "gradnorm": Spec("GradNormPostprocessor", "features"),
    "fdbd": Spec("fDBDPostprocessor", "features"),
    "nci": Spec("NCIPostprocessor", "features"),
    "vra": Spec("VRAPostprocessor", "features", val=True),
    "cfood": Spec("CFOODPostprocessor", "features"),
}

# What it takes to run OpenOOD's postprocessors here (read by the ease-of-use report):
# "*" applies to every postprocessor.
WORKAROUNDS: dict[str, list[str]] = {
    "*": [
        "device shim: .cuda()/'cuda' mapped to the harness device for the duration of each "
        "OpenOOD call (every postprocessor calls .cuda() unconditionally; fails on CPU otherwise)",
        "placeholder imgaug module when imgaug is missing or broken (numpy >= 2), so "
        "openood.postprocessors imports",
        "own name -> class map and local YAML configs (the evaluation API downloads configs)",
        "ID dataset name and class count registered (several postprocessors KeyError otherwise)",
    ],
    "openmax": ["libmr built with pip --no-build-isolation (build deps undeclared)"],
    "vim": ["dim clamped below the feature dimension (all-NaN scores otherwise)"],
    "residual": ["dim clamped below the feature dimension"],
    "odin": ["1-channel inputs padded to the 3 channels OpenOOD indexes"],
    "iodin": ["1-channel inputs padded to the 3 channels OpenOOD indexes"],
    "mds_ensemble": ["1-channel inputs padded to the 3 channels OpenOOD indexes"],
    "adascale_a": ["set_hyperparam called after setup (normally run by OpenOOD's OOD search)"],
    "adascale_l": ["set_hyperparam called after setup (normally run by OpenOOD's OOD search)"],
}

LEFT_OUT: dict[str, str] = {
    "cider": "needs a network trained with the CIDER contrastive head",
    "npos": "needs a network trained with NPOS (outlier synthesis) head",
    "godin": "needs a GODIN-trained network (dividend/divisor heads)",
    "conf_branch": "needs a network trained with a confidence branch",
    "rotpred": "needs a network trained with a rotation-prediction head",
    "mos": "needs a network trained with grouped softmax (MOS)",
    "t2fnorm": "needs a T2FNorm-trained network (forward_ood_inference)",
    "reweightood": "needs a ReweightOOD-trained network",
    "rts": "needs an RTS-trained network (variance head)",
    "dropout": "needs a network with OpenOOD's dropout forward (forward_with_dropout)",
    "mcd": "needs a two-head MCD-trained network",
    "opengan": "trains a GAN discriminator on OOD/ID features",
    "ssd": "self-supervised detector: needs its own contrastive training",
    "ensemble": "needs several independently trained checkpoints",
    "mcm": "needs a CLIP vision-language model (text prompts)",
    "grood": "fits on OOD validation data (use_val_ood) and its config is a .yaml file, which "
    "openood.utils.Config refuses",
    "cutpaste": "industrial anomaly detection: needs its own trained network",
    "draem": "industrial anomaly detection: needs its own trained network",
    "dsvdd": "industrial anomaly detection: needs its own trained network",
    "patchcore": "industrial anomaly detection: needs a patch feature extractor",
    "rd4ad": "industrial anomaly detection: needs a trained decoder",
}


def available() -> list[str]:
    return sorted(SPECS)


def build(name: str, params: dict[str, Any]) -> Detector:
    if name not in SPECS:
        why = LEFT_OUT.get(name)
        if why:
            raise DetectorError(f"OpenOOD postprocessor {name!r} is not supported: {why}")
        raise DetectorError(
            f"unknown OpenOOD postprocessor {name!r}; valid: {', '.join(available())}"
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
def _seeded(seed: int | None) -> Iterator[None]:
    """Seed python, numpy and torch RNGs for the block; restore their states afterwards."""
    if seed is None:
        yield
        return
    py_state, np_state = random.getstate(), np.random.get_state()
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    try:
        with torch.random.fork_rng(devices=devices):
            random.seed(seed)
            np.random.seed(seed)
            torch.manual_seed(seed)
            yield
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)


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


def _check_labels(name: str, how: str, split: Representations, num_classes: int) -> None:
    labels = np.asarray(split.labels)
    missing = sorted(set(range(num_classes)) - set(labels[labels >= 0].tolist()))
    if missing:
        raise DetectorError(f"openood {name} fits one statistic per class and the fit split "
                            f"has no rows of classes {missing}")
    if how == "correct every class":
        correct = labels[(labels >= 0) & (split.predictions == labels)]
        missing = sorted(set(range(num_classes)) - set(correct.tolist()))
        if missing:
            raise DetectorError(f"openood {name} needs at least one correctly classified fit "
                                f"row per class; none for classes {missing}")


# --------------------------------------------------------------------------------------------
# the detector


class OpenOODDetector(Detector):
    """One OpenOOD postprocessor; typed subclasses below say what it consumes."""

    library = LIBRARY
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
        if spec.labels:
            _check_labels(self.name, spec.labels, id_fit, num_classes)
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
        with _quiet(self.verbose), device_shim(self._device), _seeded(self.seed):
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
        if not self.fitted_ or self.postprocessor_ is None:
            raise DetectorError(f"openood {self.name}: score() before fit()")
        if len(split) == 0:
            return np.zeros(0, dtype=np.float64)
        loader = self._loader(split, "score")
        with _quiet(self.verbose), device_shim(self._device), _seeded(self.seed):
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


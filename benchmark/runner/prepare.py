"""Everything detectors need, computed once per run: data splits, the backbone, and one
forward pass per split (cached by content)."""

from __future__ import annotations

import hashlib
import logging
import os
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from benchmark.config_groups import runtime_dirs
from benchmark.paths import REPO, display_path
from benchmark.pipeline import catalog, checks, shifts, training_rows
from benchmark.pipeline import data as data_mod
from benchmark.pipeline.backbones import (
    Backbone,
    BackboneError,
    Recipe,
    get_backbone,
    training_record,
)
from benchmark.pipeline.features import extract
from benchmark.pipeline.model_sources import ModelSourceError, ModelSpec, weights_input
from benchmark.representations import InputBatches, Network, PrivateNetwork, Representations
from benchmark.results import ID_TEST, OOD_PREFIX, ood_key

log = logging.getLogger(__name__)


@dataclass
class Prepared:
    """Everything detectors need, computed once per run."""

    backbone: Backbone
    transform: data_mod.InputTransform
    splits: data_mod.IDSplits
    sets: dict[str, data_mod.ImageSet]
    reps: dict[str, Representations]
    device: torch.device
    timings: dict[str, float] = field(default_factory=dict)
    cache_hits: dict[str, bool] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    task: str = "ood"

    @property
    def ood_keys(self) -> list[str]:
        return [k for k in self.reps if k.startswith(OOD_PREFIX)]

    @property
    def scored_keys(self) -> list[str]:
        """The splits every detector scores: ID test, then each OOD set (and, for an anomaly
        pair, the validation splits its decision threshold is picked on)."""
        extra = [VALIDATION, VALIDATION_OOD] if self.task == ANOMALY else []
        return [ID_TEST, *self.ood_keys, *[k for k in extra if k in self.reps]]


def cache_root(cfg: DictConfig) -> Path:
    return Path(cfg.cache_dir).expanduser()


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


VALIDATION = "validation"  # ID rows held out for tuning
VALIDATION_OOD = "validation_ood"  # OOD rows for tuning, disjoint from every OOD test set
ANOMALY = "anomaly"  # pair.task of the anomaly-detection track


def tuning(cfg: DictConfig) -> bool:
    """Whether detectors with a search space are tuned on a validation split (``tune``)."""
    return bool(cfg.get("tune", False))


def task(cfg: DictConfig) -> str:
    """``pair.task``: ``ood`` (a classifier's ID vs OOD inputs; the default) or ``anomaly``
    (normal vs anomalous images; the backbone is only a feature extractor trained on other
    data, and every detector's decision threshold is picked on the validation splits)."""
    value = str(cfg.pair.get("task") or "ood")
    if value not in ("ood", ANOMALY):
        raise data_mod.DataError(f"pair {cfg.pair.name}: task={value!r}; valid: ood, anomaly")
    return value


def with_validation(cfg: DictConfig) -> bool:
    """Whether the run builds validation splits: for tuning, always on an anomaly pair, and
    when the pair's ``data.with_validation`` asks (a novelty protocol sets its alarm on them)."""
    return (tuning(cfg) or task(cfg) == ANOMALY
            or bool(data_settings(cfg).get("with_validation", False)))


def data_settings(cfg: DictConfig) -> DictConfig:
    """``cfg.data`` with the pair's own ``data`` block on top: a protocol that fixes its split
    sizes (one class of CIFAR-10 has 5,000 training images) says so in its pair config;
    change them there, or with ``pair.data.<key>=...``."""
    extra = cfg.pair.get("data")
    return OmegaConf.merge(cfg.data, extra) if extra else cfg.data


SELECT_KEYS = ("classes", "exclude_classes")


def selected(images: data_mod.ImageSet, spec, where: str) -> data_mod.ImageSet:
    """The rows of ``images`` whose label is in ``spec.classes`` and not in
    ``spec.exclude_classes`` (a protocol's normal class, its anomalies); all without them."""
    keep, drop = spec.get("classes"), spec.get("exclude_classes")
    if keep is None and drop is None:
        return images
    mask = np.ones(len(images), dtype=bool)
    if keep is not None:
        mask &= np.isin(images.labels, [int(c) for c in keep])
    if drop is not None:
        mask &= ~np.isin(images.labels, [int(c) for c in drop])
    if not mask.any():
        raise data_mod.DataError(
            f"{where}: no image of {images.name}/{images.split} ({images.source}) has a label "
            f"in classes={_plain(keep)} and outside exclude_classes={_plain(drop)}; labels "
            f"there: {sorted(np.unique(images.labels).tolist())[:20]}")
    return images.take(np.flatnonzero(mask))


def known_classes(cfg: DictConfig) -> list[int] | None:
    """The ID classes a classification pair keeps (``pair.id.classes``, e.g. digits 0-7 with 8
    and 9 held out as novel classes), in the order the classifier numbers them; None = all.
    (An anomaly pair's ``classes`` picks its normal class and is not a classifier's.)"""
    classes = cfg.pair.id.get("classes")
    if classes is None or task(cfg) == ANOMALY:
        return None
    return [int(c) for c in classes]


def id_num_classes(cfg: DictConfig) -> int:
    """How many classes the ID classifier predicts: the kept classes, else the dataset's
    (0 = not declared)."""
    kept = known_classes(cfg)
    return len(kept) if kept is not None else int(id_dataset_entry(cfg).num_classes or 0)


def relabelled(images: data_mod.ImageSet, classes: list[int]) -> data_mod.ImageSet:
    """A class subset's labels renumbered 0..len(classes)-1 (in the order of ``classes``), so
    the classifier's head has one output per kept class; the identity records the mapping."""
    lookup = np.full(int(max(classes)) + 1, -1, dtype=np.int64)
    lookup[np.asarray(classes)] = np.arange(len(classes))
    labels = lookup[images.labels]
    digest = hashlib.sha256(f"{images.content_hash}|relabel|{classes}".encode()).hexdigest()
    return replace(images, labels=labels, _hash=digest)


def as_pair_reads(images: data_mod.ImageSet, spec, cfg: DictConfig,
                  where: str) -> data_mod.ImageSet:
    """A loaded set as the pair reads it: ``pair.grayscale`` (one-channel luma), then the
    entry's class selection (:func:`selected`)."""
    images = shifts.grayscale(images) if cfg.pair.get("grayscale") else images
    return selected(images, spec, where)


def _shifted(images: data_mod.ImageSet, spec, seed: int) -> data_mod.ImageSet:
    """An entry's ``shift: {kind, severity}`` applied (the set itself without one)."""
    if not spec.get("shift"):
        return images
    return shifts.shifted(images, spec.shift.kind, spec.shift.get("severity", 3), seed)


def data_roots(d: DictConfig) -> list[Path]:
    """Where datasets are looked up, in order: ``data.root`` (relative: to the directory the
    command was started in), ``OOD_BENCH_DATA_ROOT``, the read-only ``data.mirrors`` (relative:
    to the repository), then ``data.download_dir`` (added by the loader). A root that is a file
    or a dangling link is an error; one that does not exist is skipped (the not-found message
    lists every root)."""
    candidates: list[tuple[str, Path]] = []
    if d.get("root"):
        candidates.append(("data.root", Path(str(d.root)).expanduser().absolute()))
    if os.environ.get("OOD_BENCH_DATA_ROOT"):
        candidates.append(("OOD_BENCH_DATA_ROOT",
                           Path(os.environ["OOD_BENCH_DATA_ROOT"]).expanduser().absolute()))
    for mirror in d.get("mirrors") or []:
        p = Path(str(mirror)).expanduser()
        candidates.append(("data.mirrors", p if p.is_absolute() else (REPO / p).resolve()))
    roots: list[Path] = []
    for what, path in candidates:
        if path.is_symlink() and not path.exists():
            raise data_mod.DataError(f"{what}={path} is a dangling symbolic link or a link loop;"
                                     " point it at a folder of datasets")
        if path.exists() and not path.is_dir():
            raise data_mod.DataError(f"{what}={path} is a file, not a folder; point it at the "
                                     "folder that holds the datasets")
        roots.append(path)
    return list(dict.fromkeys(roots))


def _size(d: DictConfig, key: str) -> int | None:
    """A size setting: None, or an integer > 0 (else a DataError naming the key)."""
    value = d.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise data_mod.DataError(f"data.{key}={value!r} must be a whole number > 0 (or null "
                                 "for no cap)")
    return value


def _check_size(data: data_mod.ImageSet, what: str, minimum: int) -> None:
    if len(data) < minimum:
        raise data_mod.DataError(
            f"{what} ({data.name}/{data.split}, {data.source}) has {len(data)} image(s); at "
            f"least {minimum} are needed for its metrics to mean anything (data.min_set_size)")


def load_sets(
    cfg: DictConfig,
) -> tuple[dict[str, data_mod.ImageSet], data_mod.IDSplits, dict[str, str]]:
    """ID train/fit/calibration/test and every OOD set, seeded subsets recorded; with
    ``tune``, the validation splits too (ID rows out of the calibration block, OOD rows from
    the pair's ``validation`` set, removed from any OOD test set drawn from the same split).

    Every set is checked at the door (layout, dtype, labels, sizes; ID labels within the
    classes and every class present in training). OOD sets marked ``optional`` that cannot be
    had (no local copy, no download) are skipped; the third value maps their names to the
    reason.
    """
    d, pair = data_settings(cfg), cfg.pair
    anomaly = task(cfg) == ANOMALY
    dirs = tuple(runtime_dirs())
    kw = {"roots": data_roots(d), "download": bool(d.download),
          "download_dir": Path(d.download_dir).expanduser(), "dirs": dirs}
    for key in ("fit_size", "calibration_size", "max_id_test", "max_ood", "train_size",
                "batch_size"):
        _size(d, key)
    minimum = int(d.get("min_set_size", 1) or 1)
    id_entry = id_dataset_entry(cfg)
    where = f"pair {pair.name} (id)"
    id_train = as_pair_reads(data_mod.load(id_entry, pair.id.train_split, **kw), pair.id, cfg,
                             where)
    id_test = as_pair_reads(data_mod.load(id_entry, pair.id.test_split, **kw), pair.id, cfg,
                            where)
    kept = known_classes(cfg)
    if kept is not None:
        id_train, id_test = relabelled(id_train, kept), relabelled(id_test, kept)
    num_classes = id_num_classes(cfg) or int((cfg.backbone.get("params") or {}).get(
        "num_classes", 0) or 0)
    if num_classes and not anomaly:  # an anomaly pair's labels only pick its normal class
        checks.check_id_labels(id_train.labels, num_classes, id_train.source, every_class=True)
        checks.check_id_labels(id_test.labels, num_classes, id_test.source, every_class=False)
    validation_size = int(d.get("validation_size") or 0) if with_validation(cfg) else 0
    splits = data_mod.plan_id_splits(len(id_train), d.split_seed, d.calibration_size,
                                     d.fit_size, d.get("train_size"), validation_size)
    sets = {
        "train": id_train.take(splits.train, split="train"),
        "fit": id_train.take(splits.fit, split="fit"),
        "calibration": id_train.take(splits.calibration, split="calibration"),
        ID_TEST: data_mod.subsample(id_test, d.max_id_test, d.split_seed),
    }
    for key in ("fit", "calibration", ID_TEST):
        _check_size(sets[key], f"ID {key} set", minimum)
    held_out: tuple[str, str, np.ndarray] | None = None  # OOD validation rows of a split
    if validation_size:
        sets[VALIDATION] = id_train.take(splits.validation, split=VALIDATION)
        spec = pair.get("validation")
        if not spec:
            raise data_mod.DataError(
                f"{'an anomaly pair' if anomaly else 'tune=true'} needs OOD validation images: "
                f"pair {pair.name} has no `validation: "
                "{dataset: ..., split: ..., size: ...}` entry (configs/pair/" + str(pair.name)
                + ".yaml); add one whose images are not in any OOD test set")
        source = as_pair_reads(data_mod.load(_plain(spec.dataset), spec.get("split"), **kw,
                                             name=f"{pair.name}-validation"),
                               spec, cfg, f"pair {pair.name} (validation)")
        if spec.size >= len(source):
            raise data_mod.DataError(f"pair {pair.name}: validation size {spec.size} must be "
                                     f"< the {len(source)} images of {source.name}/"
                                     f"{source.split}")
        rows = np.sort(np.random.default_rng([d.split_seed, 17]).choice(
            len(source), size=spec.size, replace=False))
        # e.g. corrupted uploads: validation anomalies are corrupted too (their own draws)
        sets[VALIDATION_OOD] = _shifted(source.take(rows, split=VALIDATION_OOD), spec,
                                        d.split_seed + 1)
        held_out = (source.content_hash, source.split, rows)
    skipped: dict[str, str] = {}
    for ood_name, spec in pair.ood.items():
        _check_ood_spec(str(pair.name), str(ood_name), spec)
        try:
            ood = data_mod.load(_plain(spec.dataset), spec.get("split"), **kw, name=ood_name)
            ood = as_pair_reads(ood, spec, cfg, f"pair {pair.name}: OOD set {ood_name!r}")
        except data_mod.DataUnavailable as exc:  # damaged or wrong files are errors
            if not spec.get("optional", False):
                raise
            skipped[ood_name] = str(exc)
            log.warning("skipping optional OOD set %s: %s", ood_name, exc)
            continue
        if held_out is not None and ood.content_hash == held_out[0]:
            ood = ood.take(np.setdiff1d(np.arange(len(ood)), held_out[2]))
        ood = data_mod.subsample(ood, d.max_ood, d.split_seed)
        ood = _shifted(ood, spec, d.split_seed)
        _check_size(ood, f"OOD set {ood_name!r}", minimum)
        sets[ood_key(ood_name)] = ood
    return sets, splits, skipped


OOD_KEYS = ("dataset", "split", "group", "optional", "shift", *SELECT_KEYS)


def _check_ood_spec(pair: str, name: str, spec) -> None:
    """An OOD entry of a pair: known keys only, a dataset and a group (typos are errors)."""
    if not isinstance(spec, DictConfig):
        raise data_mod.DataError(f"pair {pair}: OOD set {name!r} must be a mapping "
                                 "{dataset: ..., group: ...}, got " + repr(spec))
    unknown = sorted(set(spec) - set(OOD_KEYS))
    missing = [k for k in ("dataset", "group") if k not in spec]
    if unknown or missing:
        raise data_mod.DataError(
            f"pair {pair}: OOD set {name!r} has " + "; ".join(
                [f"unknown key(s) {', '.join(unknown)}"] * bool(unknown)
                + [f"no {', '.join(missing)}"] * bool(missing))
            + f" (valid: {', '.join(OOD_KEYS)}; dataset and group are required)")


def id_dataset_entry(cfg: DictConfig) -> catalog.DatasetEntry:
    """The pair's ID dataset entry (``configs/dataset/``, the user's folders, or inline)."""
    return catalog.as_entry(_plain(cfg.pair.id.dataset), tuple(runtime_dirs()),
                            name=f"{cfg.pair.name}-id")


def _plain(value):
    """A config value as plain Python (inline dataset entries come as DictConfig)."""
    return OmegaConf.to_container(value, resolve=True) if isinstance(value, DictConfig) else value


def backbone_spec(cfg: DictConfig) -> ModelSpec:
    """What ``cfg.backbone`` builds (source, architecture, weights, the wrapper's hints);
    ``params.num_classes: null`` is the ID dataset's class count."""
    try:
        spec = ModelSpec.from_config(cfg.backbone)
    except ModelSourceError as exc:
        raise BackboneError(str(exc)) from exc
    if "num_classes" in spec.params and spec.params["num_classes"] is None and spec.weights:
        spec = replace(spec, params={k: v for k, v in spec.params.items() if k != "num_classes"})
    if "num_classes" in spec.params and spec.params["num_classes"] is None:
        entry = id_dataset_entry(cfg)
        if not entry.num_classes:
            raise BackboneError(f"backbone.params.num_classes is null and the ID dataset "
                                f"{entry.name!r} ({entry.origin}) declares no num_classes: set "
                                "one of them")
        spec = replace(spec, params={**spec.params, "num_classes": int(entry.num_classes)})
    kept = known_classes(cfg)
    if kept is not None and "num_classes" in spec.params and not spec.weights:
        # a pair that keeps some classes trains (or loads) a head with one output per kept class
        spec = replace(spec, params={**spec.params, "num_classes": len(kept)})
    return spec


def backbone_input(cfg: DictConfig) -> dict:
    """``backbone.input``, with size and normalisation taken from the pretrained weights'
    own metadata when the backbone has weights (unless ``input.from_weights: false``)."""
    bb = cfg.backbone
    values = {k: bb.input[k] for k in ("size", "channels", "mean", "std")}
    if bb.input.get("from_weights", True):
        try:
            meta = weights_input(backbone_spec(cfg))
        except ModelSourceError as exc:
            raise BackboneError(str(exc)) from exc
        if meta is not None:
            values.update({k: meta[k] for k in ("size", "mean", "std")})
    return values


def input_transform(cfg: DictConfig) -> data_mod.InputTransform:
    values = backbone_input(cfg)
    return data_mod.InputTransform(int(values["size"]), int(values["channels"]),
                                   tuple(values["mean"]), tuple(values["std"]))


def split_record(cfg: DictConfig) -> dict[str, Any]:
    """How the ID training split was drawn (recorded with a checkpoint trained on it)."""
    d = data_settings(cfg)
    return {"seed": int(d.split_seed), "calibration_size": int(d.calibration_size),
            "train_size": d.get("train_size")}


def data_and_backbone(cfg: DictConfig) -> tuple[dict[str, data_mod.ImageSet],
                                                 data_mod.IDSplits, dict[str, str],
                                                 data_mod.InputTransform, Backbone,
                                                 torch.device, float, float]:
    """The images of every split and the backbone (trained or loaded), nothing extracted:
    ``(sets, splits, skipped, transform, backbone, device, data_seconds, backbone_seconds)``."""
    t0 = time.perf_counter()
    device = resolve_device(cfg.device)
    sets, splits, skipped = load_sets(cfg)
    bb = cfg.backbone
    transform = input_transform(cfg)
    t_data = time.perf_counter() - t0
    anomaly = task(cfg) == ANOMALY
    if anomaly and not bb.get("checkpoint") and not bb.get("weights"):
        raise BackboneError(
            f"pair {cfg.pair.name} is an anomaly-detection pair: its feature detectors read a "
            "backbone trained on other data (never on this pair's images or labels), so "
            f"backbone {bb.name} needs a checkpoint or pretrained weights; use "
            "backbone=resnet20_tin (trained on Tiny ImageNet, committed) or "
            "backbone.checkpoint=<your file>")
    backbone = get_backbone(backbone_spec(cfg), {}, Recipe(**bb.recipe), sets["train"],
                            transform, cache_root(cfg), device, bb.checkpoint,
                            split=split_record(cfg))
    if not anomaly:  # an anomaly pair's backbone is a feature extractor: its head is unused
        _check_classes(cfg, backbone, sets["train"])
    record = training_record(backbone.checkpoint, backbone.sha256) or {}
    backbone.training_overlap = training_rows.check_held_out(
        record.get("train_rows"), sets, display_path(backbone.checkpoint))
    t_backbone = time.perf_counter() - t0 - t_data
    return sets, splits, skipped, transform, backbone, device, t_data, t_backbone


def prepare(cfg: DictConfig, need_maps: bool) -> Prepared:
    """Data, backbone (trained or loaded) and the representations of every split."""
    (sets, splits, skipped, transform, backbone, device, t_data,
     t_backbone) = data_and_backbone(cfg)
    reps: dict[str, Representations] = {}
    hits: dict[str, bool] = {}
    t1 = time.perf_counter()
    extra = [k for k in (VALIDATION, VALIDATION_OOD) if k in sets]
    for name in ["fit", "calibration", *extra, ID_TEST] + [k for k in sets
                                                          if k.startswith(OOD_PREFIX)]:
        reps[name], hits[name] = extract(
            backbone.model, sets[name], transform, backbone.sha256, cache_root(cfg), device,
            cfg.data.batch_size, with_maps=need_maps,
        )
        reps[name].inputs = input_batches(sets[name], transform, cfg.data.batch_size)
    timings = {"data_seconds": t_data, "backbone_seconds": t_backbone,
               "extraction_seconds": time.perf_counter() - t1}
    return Prepared(backbone, transform, splits, sets, reps, device, timings, hits, skipped,
                    task(cfg))


def _check_classes(cfg: DictConfig, backbone: Backbone, train: data_mod.ImageSet) -> None:
    """The classifier's head and the ID dataset agree on the number of classes."""
    entry = id_dataset_entry(cfg)
    classes = id_num_classes(cfg) or int(train.labels.max()) + 1
    if backbone.model.num_classes != classes:
        raise BackboneError(
            f"backbone {cfg.backbone.name} predicts {backbone.model.num_classes} classes, the ID "
            f"dataset {entry.name!r} has {classes}: pretrained weights belong with the dataset "
            "they were trained on (e.g. ImageNet weights with pair=imagenet); for this pair, "
            "train one (backbone.weights=null) or bring a checkpoint with this many classes")


def input_batches(images: data_mod.ImageSet, transform: data_mod.InputTransform,
                  batch_size: int) -> InputBatches:
    """Model-ready batches of ``images``, re-created on every call (never cached)."""
    return lambda: data_mod.batches(images, transform, batch_size)


def private_network(prep: Prepared, batch_size: int) -> Network:
    """A deep copy of the backbone, in eval mode, for one detector alone to use (or mutate),
    made when the detector first touches it."""
    return PrivateNetwork(prep.backbone.model, prep.device,
                          num_classes=prep.reps["fit"].num_classes, batch_size=batch_size,
                          input_mean=prep.transform.mean, input_std=prep.transform.std)

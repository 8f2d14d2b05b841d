"""The runner: data -> backbone -> cached representations -> detectors -> metric tables.

Every detector gets a deep copy of the network and runs inside its own try block: a crash or a
NaN score becomes a ``failed`` row with its error, and the run goes on.
"""

from __future__ import annotations

import copy
import inspect
import logging
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from omegaconf import DictConfig, OmegaConf
from tqdm.auto import tqdm

from adapters.base import Consumes, Detector
from adapters.registry import build_detector
from benchmark import data as data_mod
from benchmark.backbones import Backbone, Recipe, get_backbone
from benchmark.features import extract
from benchmark.manifest import write_manifest
from benchmark.metrics import accuracy, compute_metrics
from benchmark.representations import Network, Representations
from benchmark.tables import write_metric_tables

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


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def load_sets(cfg: DictConfig) -> tuple[dict[str, data_mod.ImageSet], data_mod.IDSplits]:
    """ID train/fit/calibration/test and every OOD set, seeded subsets recorded."""
    d, pair = cfg.data, cfg.pair
    kw = {"root": d.root, "download": d.download, "download_dir": d.download_dir}
    id_train = data_mod.load(pair.id.dataset, pair.id.train_split, **kw)
    id_test = data_mod.load(pair.id.dataset, pair.id.test_split, **kw)
    splits = data_mod.plan_id_splits(len(id_train), d.split_seed, d.calibration_size, d.fit_size)
    sets = {
        "train": id_train.take(splits.train, split="train"),
        "fit": id_train.take(splits.fit, split="fit"),
        "calibration": id_train.take(splits.calibration, split="calibration"),
        "id_test": data_mod.subsample(id_test, d.max_id_test, d.split_seed),
    }
    for ood_name, spec in pair.ood.items():
        ood = data_mod.load(spec.dataset, spec.split, **kw)
        sets[f"ood/{ood_name}"] = data_mod.subsample(ood, d.max_ood, d.split_seed)
    return sets, splits


def prepare(cfg: DictConfig, need_maps: bool) -> Prepared:
    t0 = time.perf_counter()
    device = resolve_device(cfg.device)
    sets, splits = load_sets(cfg)
    bb = cfg.backbone
    transform = data_mod.InputTransform(bb.input.size, bb.input.channels,
                                        tuple(bb.input.mean), tuple(bb.input.std))
    t_data = time.perf_counter() - t0
    backbone = get_backbone(
        bb.arch, OmegaConf.to_container(bb.params), Recipe(**bb.recipe), sets["train"],
        transform, Path(cfg.cache_dir), device, bb.checkpoint,
    )
    t_backbone = time.perf_counter() - t0 - t_data
    reps: dict[str, Representations] = {}
    hits: dict[str, bool] = {}
    t1 = time.perf_counter()
    for name in ["fit", "calibration", "id_test"] + [k for k in sets if k.startswith("ood/")]:
        reps[name], hits[name] = extract(
            backbone.model, sets[name], transform, backbone.sha256, Path(cfg.cache_dir), device,
            cfg.data.batch_size, with_maps=need_maps,
        )
        reps[name].inputs = _input_factory(sets[name], transform, cfg.data.batch_size)
    timings = {"data_seconds": t_data, "backbone_seconds": t_backbone,
               "extraction_seconds": time.perf_counter() - t1}
    return Prepared(backbone, transform, splits, sets, reps, device, timings, hits)


def _input_factory(s: data_mod.ImageSet, transform: data_mod.InputTransform, bs: int):
    return lambda: data_mod.batches(s, transform, bs)


def _error_text(exc: BaseException) -> str:
    msg = f"{type(exc).__name__}: {exc}".strip().replace("\n", " ")
    return msg[:500]


def _fit(det: Detector, prep: Prepared, net: Network) -> None:
    kwargs: dict[str, Any] = {}
    if "calibration" in inspect.signature(det.fit).parameters:
        kwargs["calibration"] = prep.reps["calibration"]
    det.fit(prep.reps["fit"], net, **kwargs)


def _score(det: Detector, reps: Representations, net: Network) -> np.ndarray:
    scores = np.asarray(det.score(reps, net), dtype=np.float64).ravel()
    if len(scores) != len(reps):
        raise ValueError(f"detector returned {len(scores)} scores for {len(reps)} samples")
    n_nan = int(np.isnan(scores).sum())
    if n_nan:
        raise ValueError(f"scores contain {n_nan} NaN of {len(scores)}")
    return scores


def run_detector(det_id: str, spec: DictConfig, prep: Prepared, cfg: DictConfig,
                 scores_dir: Path) -> list[dict[str, Any]]:
    """One detector over every OOD set: metric rows, ``failed`` rows with the error on failure."""
    base = {
        "library": spec.library, "detector": det_id, "backbone": cfg.backbone.name,
        "id_dataset": cfg.pair.id.dataset,
    }
    oods = [(k.removeprefix("ood/"), k) for k in prep.reps if k.startswith("ood/")]
    id_reps = prep.reps["id_test"]
    id_acc = accuracy(id_reps.predictions, id_reps.labels)

    def rows_failed(error: str, fit_s: float = float("nan")) -> list[dict[str, Any]]:
        return [{**base, "ood_dataset": name, "ood_group": cfg.pair.ood[name].group,
                 "id_accuracy": id_acc, "fit_seconds": fit_s, "status": "failed",
                 "error": error} for name, _ in oods]

    try:
        det = build_detector(spec.library, spec.name, OmegaConf.to_container(spec.params))
    except Exception as exc:
        return rows_failed(_error_text(exc))
    net = Network(copy.deepcopy(prep.backbone.model).eval(), prep.device,
                  num_classes=id_reps.num_classes, batch_size=cfg.data.batch_size)
    t0 = time.perf_counter()
    try:
        _fit(det, prep, net)
    except Exception as exc:
        log.warning("%s: fit failed: %s", det_id, _error_text(exc))
        log.debug("%s", traceback.format_exc())
        return rows_failed(_error_text(exc), time.perf_counter() - t0)
    fit_s = time.perf_counter() - t0
    try:
        t1 = time.perf_counter()
        id_scores = _score(det, id_reps, net)
        id_s = time.perf_counter() - t1
    except Exception as exc:
        log.warning("%s: scoring ID failed: %s", det_id, _error_text(exc))
        return rows_failed(_error_text(exc), fit_s)
    saved = {"id_test": id_scores}
    rows = []
    for name, key in oods:
        row = {**base, "ood_dataset": name, "ood_group": cfg.pair.ood[name].group,
               "id_accuracy": id_acc, "fit_seconds": fit_s, "id_score_seconds": id_s,
               "n_id": len(id_reps), "n_ood": len(prep.reps[key]), "consumes": det.consumes.value}
        try:
            t2 = time.perf_counter()
            ood_scores = _score(det, prep.reps[key], net)
            row["score_seconds"] = time.perf_counter() - t2
            row.update(compute_metrics(id_scores, ood_scores))
            row.update(status="ok", error="")
            saved[key] = ood_scores
        except Exception as exc:
            log.warning("%s on %s failed: %s", det_id, name, _error_text(exc))
            row.update(status="failed", error=_error_text(exc))
        rows.append(row)
    np.savez_compressed(scores_dir / f"{det_id}.npz", **{k.replace("/", "__"): v
                                                         for k, v in saved.items()})
    return rows


def run(cfg: DictConfig, out_dir: Path) -> pd.DataFrame:
    """Run every detector in ``cfg.detectors``; write tables, scores and manifest to out_dir."""
    t_start = time.perf_counter()
    torch.manual_seed(cfg.seed)
    specs = cfg.detectors
    if not specs:
        raise data_mod.DataError("no detectors selected; pick some with detector=<option>")
    need_maps = _needs_feature_maps(specs)
    prep = prepare(cfg, need_maps)
    id_acc = accuracy(prep.reps["id_test"].predictions, prep.reps["id_test"].labels)
    log.info("backbone %s: ID test accuracy %.4f (checkpoint %s)", cfg.backbone.name, id_acc,
             prep.backbone.checkpoint)
    scores_dir = out_dir / "scores"
    scores_dir.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    t_det = time.perf_counter()
    for det_id, spec in tqdm(list(specs.items()), desc="detectors", mininterval=1):
        rows.extend(run_detector(det_id, spec, prep, cfg, scores_dir))
    prep.timings["detectors_seconds"] = time.perf_counter() - t_det
    prep.timings["total_seconds"] = time.perf_counter() - t_start
    frame = write_metric_tables(rows, out_dir, title=f"{cfg.pair.name} / {cfg.backbone.name}")
    write_manifest(cfg, prep, id_acc, out_dir)
    return frame


def _needs_feature_maps(specs: DictConfig) -> bool:
    """Whether any selected detector consumes feature maps (then they are extracted and cached)."""
    for spec in specs.values():
        try:
            det = build_detector(spec.library, spec.name, OmegaConf.to_container(spec.params))
        except Exception:
            continue  # reported as a failed row later
        if det.consumes == Consumes.FEATURE_MAPS:
            return True
    return False

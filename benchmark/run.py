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
from benchmark import score_cache, shifts
from benchmark.backbones import Backbone, Recipe, get_backbone
from benchmark.features import extract
from benchmark.manifest import write_manifest
from benchmark.metrics import accuracy, compute_metrics
from benchmark.profiling import PeakMemory
from benchmark.representations import Network, Representations
from benchmark.tables import write_metric_tables
from benchmark.time_limit import TimeLimitExceeded, time_limit

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

    @property
    def ood_keys(self) -> list[str]:
        return [k for k in self.reps if k.startswith("ood/")]

    @property
    def scored_keys(self) -> list[str]:
        """The splits every detector scores: ID test, then each OOD set."""
        return ["id_test", *self.ood_keys]


def cache_root(cfg: DictConfig) -> Path:
    return Path(cfg.cache_dir).expanduser()


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def load_sets(
    cfg: DictConfig,
) -> tuple[dict[str, data_mod.ImageSet], data_mod.IDSplits, dict[str, str]]:
    """ID train/fit/calibration/test and every OOD set, seeded subsets recorded.

    OOD sets marked ``optional`` that cannot be had (no local copy, no download) are skipped;
    the third value maps their names to the reason.
    """
    d, pair = cfg.data, cfg.pair
    kw = {"root": Path(d.root).expanduser(), "download": d.download,
          "download_dir": Path(d.download_dir).expanduser()}
    id_train = data_mod.load(pair.id.dataset, pair.id.train_split, **kw)
    id_test = data_mod.load(pair.id.dataset, pair.id.test_split, **kw)
    splits = data_mod.plan_id_splits(len(id_train), d.split_seed, d.calibration_size,
                                     d.fit_size, d.get("train_size"))
    sets = {
        "train": id_train.take(splits.train, split="train"),
        "fit": id_train.take(splits.fit, split="fit"),
        "calibration": id_train.take(splits.calibration, split="calibration"),
        "id_test": data_mod.subsample(id_test, d.max_id_test, d.split_seed),
    }
    skipped: dict[str, str] = {}
    for ood_name, spec in pair.ood.items():
        try:
            ood = data_mod.load(spec.dataset, spec.split, **kw)
        except data_mod.DataError as exc:
            if not spec.get("optional", False):
                raise
            skipped[ood_name] = str(exc)
            log.warning("skipping optional OOD set %s: %s", ood_name, exc)
            continue
        ood = data_mod.subsample(ood, d.max_ood, d.split_seed)
        if spec.get("shift"):
            ood = shifts.shifted(ood, spec.shift.kind, spec.shift.get("severity", 3), d.split_seed)
        sets[f"ood/{ood_name}"] = ood
    return sets, splits, skipped


def prepare(cfg: DictConfig, need_maps: bool) -> Prepared:
    t0 = time.perf_counter()
    device = resolve_device(cfg.device)
    sets, splits, skipped = load_sets(cfg)
    bb = cfg.backbone
    transform = data_mod.InputTransform(bb.input.size, bb.input.channels,
                                        tuple(bb.input.mean), tuple(bb.input.std))
    t_data = time.perf_counter() - t0
    backbone = get_backbone(
        bb.arch, OmegaConf.to_container(bb.params), Recipe(**bb.recipe), sets["train"],
        transform, cache_root(cfg), device, bb.checkpoint,
    )
    t_backbone = time.perf_counter() - t0 - t_data
    reps: dict[str, Representations] = {}
    hits: dict[str, bool] = {}
    t1 = time.perf_counter()
    for name in ["fit", "calibration", "id_test"] + [k for k in sets if k.startswith("ood/")]:
        reps[name], hits[name] = extract(
            backbone.model, sets[name], transform, backbone.sha256, cache_root(cfg), device,
            cfg.data.batch_size, with_maps=need_maps,
        )
        reps[name].inputs = _input_factory(sets[name], transform, cfg.data.batch_size)
    timings = {"data_seconds": t_data, "backbone_seconds": t_backbone,
               "extraction_seconds": time.perf_counter() - t1}
    return Prepared(backbone, transform, splits, sets, reps, device, timings, hits, skipped)


def private_network(prep: Prepared, batch_size: int) -> Network:
    """A deep copy of the backbone, in eval mode, for one detector alone to use (or mutate)."""
    return Network(copy.deepcopy(prep.backbone.model).eval(), prep.device,
                   num_classes=prep.reps["fit"].num_classes, batch_size=batch_size,
                   input_mean=prep.transform.mean, input_std=prep.transform.std)


def _input_factory(s: data_mod.ImageSet, transform: data_mod.InputTransform, bs: int):
    return lambda: data_mod.batches(s, transform, bs)


def _error_text(exc: BaseException) -> str:
    msg = f"{type(exc).__name__}: {exc}".strip().replace("\n", " ")
    return msg[:500]


def fit_detector(det: Detector, fit: Representations, calibration: Representations,
                 net: Network) -> None:
    """``det.fit``, handing the held-out calibration split to detectors whose fit takes one."""
    kwargs: dict[str, Any] = {}
    if "calibration" in inspect.signature(det.fit).parameters:
        kwargs["calibration"] = calibration
    det.fit(fit, net, **kwargs)


class InvalidScores(ValueError):
    """A detector returned the wrong number of scores, or NaN."""


def checked_scores(det: Detector, reps: Representations, net: Network) -> np.ndarray:
    """``det.score`` as float64, checked: one finite-or-inf score per row, no NaN."""
    scores = np.asarray(det.score(reps, net), dtype=np.float64).ravel()
    if len(scores) != len(reps):
        raise InvalidScores(f"returned {len(scores)} scores for {len(reps)} samples")
    n_nan = int(np.isnan(scores).sum())
    if n_nan:
        raise InvalidScores(f"returned {n_nan} NaN scores of {len(scores)}")
    return scores


@dataclass
class DetectorOutcome:
    """Scores per split (``id_test``, ``ood/<name>``) with timings, or the error that stopped it."""

    scores: dict[str, np.ndarray] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    fit_seconds: float = float("nan")
    score_seconds: dict[str, float] = field(default_factory=dict)
    consumes: str = ""
    from_cache: bool = False
    peak_memory_mb: float = float("nan")

    def meta(self) -> dict[str, Any]:
        return {"fit_seconds": self.fit_seconds, "score_seconds": self.score_seconds,
                "consumes": self.consumes, "peak_memory_mb": self.peak_memory_mb}


def evaluate_detector(spec: dict[str, Any], prep: Prepared, batch_size: int,
                      time_limit_s: float | None = None) -> DetectorOutcome:
    """Build, fit and score one detector on every split; failures are captured, not raised.

    With ``time_limit_s``, a detector still busy after that many seconds (fit + scoring) is
    stopped and recorded as failed with a TimeLimitExceeded error.
    """
    with PeakMemory() as memory:
        try:
            with time_limit(time_limit_s, f"{spec['library']}/{spec['name']}"):
                out = _evaluate(spec, prep, batch_size)
        except TimeLimitExceeded as exc:
            log.warning("%s/%s: %s", spec["library"], spec["name"], exc)
            out = DetectorOutcome()
            out.errors = dict.fromkeys(prep.scored_keys, f"TimeLimitExceeded: {exc}")
    out.peak_memory_mb = memory.peak_mb
    return out


def _evaluate(spec: dict[str, Any], prep: Prepared, batch_size: int) -> DetectorOutcome:
    out = DetectorOutcome()
    split_keys = prep.scored_keys
    try:
        det = build_detector(spec["library"], spec["name"], spec.get("params") or {})
        out.consumes = det.consumes.value
        net = private_network(prep, batch_size)
        t0 = time.perf_counter()
        try:
            fit_detector(det, prep.reps["fit"], prep.reps["calibration"], net)
        finally:
            out.fit_seconds = time.perf_counter() - t0
    except Exception as exc:
        log.warning("%s/%s: %s", spec["library"], spec["name"], _error_text(exc))
        log.debug("%s", traceback.format_exc())
        out.errors = dict.fromkeys(split_keys, _error_text(exc))
        return out
    for key in split_keys:
        t1 = time.perf_counter()
        try:
            out.scores[key] = checked_scores(det, prep.reps[key], net)
        except Exception as exc:
            log.warning("%s/%s on %s: %s", spec["library"], spec["name"], key, _error_text(exc))
            out.errors[key] = _error_text(exc)
        out.score_seconds[key] = time.perf_counter() - t1
        if key == "id_test" and key in out.errors:  # nothing to compare against
            out.errors = dict.fromkeys(split_keys, out.errors[key])
            break
    return out


def outcome_with_cache(spec: dict[str, Any], prep: Prepared, cfg: DictConfig) -> DetectorOutcome:
    """Reuse cached scores of an identical earlier computation, else compute (and cache)."""
    use_cache = bool(cfg.get("cache_scores", True))
    rep_keys = {name: reps.key for name, reps in prep.reps.items()}
    key = score_cache.score_key(spec, rep_keys, prep.device.type)
    if use_cache and (hit := score_cache.load(cache_root(cfg), key)) is not None:
        scores, meta = hit
        scores = {k.replace("__", "/"): v for k, v in scores.items()}
        return DetectorOutcome(scores=scores, fit_seconds=meta["fit_seconds"],
                               score_seconds=meta["score_seconds"], consumes=meta["consumes"],
                               from_cache=True,
                               peak_memory_mb=meta.get("peak_memory_mb", float("nan")))
    out = evaluate_detector(spec, prep, cfg.data.batch_size,
                            cfg.get("detector_time_limit_s"))
    if use_cache and not out.errors:
        score_cache.save(cache_root(cfg), key,
                         {k.replace("/", "__"): v for k, v in out.scores.items()}, out.meta())
    return out


def run_detector(det_id: str, spec: DictConfig, prep: Prepared, cfg: DictConfig,
                 scores_dir: Path) -> list[dict[str, Any]]:
    """Metric rows of one detector over every OOD set (``failed`` rows carry the error)."""
    spec_dict = OmegaConf.to_container(spec, resolve=True)
    out = outcome_with_cache(spec_dict, prep, cfg)
    id_reps = prep.reps["id_test"]
    id_scores = out.scores.get("id_test")
    rows = []
    for key in prep.ood_keys:
        name = key.removeprefix("ood/")
        row: dict[str, Any] = {
            "library": spec.library, "detector": det_id, "backbone": cfg.backbone.name,
            "id_dataset": cfg.pair.id.dataset, "ood_dataset": name,
            "ood_group": cfg.pair.ood[name].group,
            "id_accuracy": accuracy(id_reps.predictions, id_reps.labels),
            "fit_seconds": out.fit_seconds, "score_seconds": out.score_seconds.get(key),
            "id_score_seconds": out.score_seconds.get("id_test"), "n_id": len(id_reps),
            "n_ood": len(prep.reps[key]), "consumes": out.consumes, "from_cache": out.from_cache,
            "peak_memory_mb": out.peak_memory_mb, "device": prep.device.type,
            "method": spec.name,
        }
        if key in out.errors:
            row.update(status="failed", error=out.errors[key])
        else:
            try:
                row.update(compute_metrics(id_scores, out.scores[key]))
                row.update(status="ok", error="")
            except Exception as exc:
                row.update(status="failed", error=_error_text(exc))
        rows.append(row)
    if out.scores:
        np.savez_compressed(scores_dir / f"{det_id}.npz",
                            **{k.replace("/", "__"): v for k, v in out.scores.items()})
    return rows


def run(cfg: DictConfig, out_dir: Path) -> pd.DataFrame:
    """Run every detector in ``cfg.detectors``; write tables, scores and manifest to out_dir."""
    t_start = time.perf_counter()
    torch.manual_seed(cfg.seed)
    specs = cfg.detectors
    if not specs:
        raise data_mod.DataError("no detectors selected; pick some with detector=<option>")
    need_maps = needs_feature_maps(specs)
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
    analysis = cfg.get("analysis") or {}
    if analysis.get("inhouse", True) and any(s.library == "inhouse" for s in specs.values()):
        from benchmark.analysis_inhouse import write_analyses

        t_an = time.perf_counter()
        net = private_network(prep, cfg.data.batch_size)
        spec_dicts = OmegaConf.to_container(specs, resolve=True)
        rep_keys = {name: reps.key for name, reps in prep.reps.items()}
        keys = {d: score_cache.score_key(s, rep_keys, prep.device.type)
                for d, s in spec_dicts.items()}
        write_analyses(spec_dicts, prep.reps, net, out_dir, analysis.get("resplits", 20),
                       cfg.seed, keys, cache_root(cfg) if cfg.get("cache_scores", True) else None)
        prep.timings["analysis_seconds"] = time.perf_counter() - t_an
    prep.timings["total_seconds"] = time.perf_counter() - t_start
    frame = write_metric_tables(rows, out_dir, title=f"{cfg.pair.name} / {cfg.backbone.name}",
                                skipped=prep.skipped)
    write_manifest(cfg, prep, id_acc, out_dir)
    return frame


def needs_feature_maps(specs: DictConfig | dict[str, dict[str, Any]]) -> bool:
    """Whether any selected detector consumes feature maps (then they are extracted and cached)."""
    if isinstance(specs, DictConfig):
        specs = OmegaConf.to_container(specs, resolve=True)
    for spec in specs.values():
        try:
            det = build_detector(spec["library"], spec["name"], spec.get("params") or {})
        except Exception:
            continue  # reported as a failed row later
        if det.consumes == Consumes.FEATURE_MAPS:
            return True
    return False

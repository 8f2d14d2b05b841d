"""The runner: data -> backbone -> cached representations -> detectors -> metric tables.

One forward pass per split (``prepare``), then every detector in turn (``evaluate``), its
scores reused from the score cache when an identical computation ran before; libraries that
offer analyses get them on the detectors just fitted (``analyses``).
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from omegaconf import DictConfig, OmegaConf
from tqdm.auto import tqdm

from adapters.registry import libraries
from benchmark import compute, store
from benchmark.pipeline.data import DataError
from benchmark.pipeline.metrics import (
    accuracy,
    compute_metrics,
    metrics_at_validation_threshold,
)
from benchmark.results import ID_TEST, OOD_PREFIX, load_scores, read_manifest, save_scores
from benchmark.runner import score_cache, tuning
from benchmark.runner.analyses import Fitted, hook, write_analyses
from benchmark.runner.evaluate import (
    DetectorOutcome,
    cached_outcome,
    error_text,
    level_threshold,
    needs_feature_maps,
)
from benchmark.runner.manifest import write_manifest
from benchmark.runner.prepare import (
    ANOMALY,
    VALIDATION,
    VALIDATION_OOD,
    Prepared,
    cache_root,
    prepare,
    private_network,
)
from benchmark.runner.prepare import tuning as tuning_on
from benchmark.runner.resume import detector_key, job_key, setting_key
from benchmark.runner.tables import write_metric_tables
from benchmark.stats import bootstrap
from benchmark.stats.binomial import clopper_pearson

log = logging.getLogger(__name__)


class Draws:
    """The bootstrap draws of a run's scored splits, made once and shared by every detector
    (``cfg.bootstrap``; ``resamples: 0`` = none)."""

    def __init__(self, cfg: DictConfig, prep: Prepared) -> None:
        block = cfg.get("bootstrap") or {}
        self.resamples = int(block.get("resamples", 0) or 0)
        self.level = float(block.get("level", 0.95))
        self._sizes = {key: len(prep.reps[key]) for key in prep.scored_keys}
        self._draws = bootstrap.SharedDraws(self.resamples, int(cfg.seed))
        self.workers = int((cfg.get("compute") or {}).get("threads") or 1)
        self.seconds = 0.0

    def __call__(self, key: str) -> bootstrap.Resamples:
        return self._draws(key, self._sizes[key])

    def intervals_of(self, id_scores, ood: dict[str, np.ndarray]
                     ) -> dict[str, dict[str, float] | Exception]:
        """The intervals of one detector on each OOD set (or the error of that set): the ID
        side computed once for every set, chunks of resamples run on the run's threads (the
        numbers do not depend on them)."""
        if not self.resamples or not ood:
            return {}
        t0 = time.perf_counter()
        try:
            out = bootstrap.intervals_of(id_scores, ood, self(ID_TEST),
                                         {key: self(key) for key in ood}, self.level,
                                         self.workers)
        except Exception as exc:  # noqa: BLE001 (every set's row says why)
            out = {key: exc for key in ood}
        self.seconds += time.perf_counter() - t0
        return out


def decision_rates(id_scores: np.ndarray, ood_scores: np.ndarray, threshold: float,
                   alpha: float, level: float) -> dict[str, float]:
    """The realised ID false-alarm rate and OOD detection rate of ``score >= threshold``, with
    their exact (Clopper-Pearson) ``level`` intervals."""
    out: dict[str, float] = {"alpha": alpha}
    for name, scores in (("fpr_at_alpha", id_scores), ("tpr_at_alpha", ood_scores)):
        k, n = int(np.sum(scores >= threshold)), len(scores)
        lo, hi = clopper_pearson(k, n, level)
        out.update({name: k / n if n else float("nan"), f"{name}_lo": lo, f"{name}_hi": hi})
    return out


def id_accuracy(prep: Prepared) -> float:
    """The backbone's ID test accuracy; NaN on an anomaly pair (its backbone is a feature
    extractor trained on other classes)."""
    if prep.task == ANOMALY:
        return float("nan")
    return accuracy(prep.reps[ID_TEST].predictions, prep.reps[ID_TEST].labels)


def metric_rows(det_id: str, spec: dict[str, Any], out: DetectorOutcome, prep: Prepared,
                cfg: DictConfig, draws: Draws | None = None) -> list[dict[str, Any]]:
    """Metric rows of one detector over every OOD set (``failed`` rows carry the error),
    with bootstrap intervals when ``draws`` asks for them."""
    id_reps = prep.reps[ID_TEST]
    id_scores = out.scores.get(ID_TEST)
    anomaly = prep.task == ANOMALY
    id_acc = id_accuracy(prep)
    validation = [out.scores.get(k) for k in (VALIDATION, VALIDATION_OOD)]
    alpha = float(cfg.get("decision_alpha") or 0.05)
    threshold = level_threshold(spec, alpha)
    cells: dict[str, dict[str, float] | Exception] = {}
    if draws is not None and id_scores is not None:  # every OOD set's intervals at once
        cells = draws.intervals_of(id_scores, {k: out.scores[k] for k in prep.ood_keys
                                               if k in out.scores and k not in out.errors})
    rows = []
    for key in prep.ood_keys:
        name = key.removeprefix(OOD_PREFIX)
        row: dict[str, Any] = {
            "library": spec["library"], "detector": det_id, "backbone": cfg.backbone.name,
            "id_dataset": cfg.pair.id.dataset, "ood_dataset": name,
            "ood_group": cfg.pair.ood[name].group,
            "id_accuracy": id_acc,
            "fit_seconds": out.fit_seconds, "import_seconds": out.import_seconds,
            "score_seconds": out.score_seconds.get(key),
            "id_score_seconds": out.score_seconds.get(ID_TEST), "n_id": len(id_reps),
            "n_ood": len(prep.reps[key]), "consumes": out.consumes, "from_cache": out.from_cache,
            "peak_memory_mb": out.peak_memory_mb, "device": prep.device.type,
            "method": spec["name"],
        }
        if key in out.errors:
            row.update(status="failed", error=out.errors[key])
        else:
            try:
                row.update(compute_metrics(id_scores, out.scores[key]))
                if anomaly and all(v is not None for v in validation):
                    # the decision threshold of the anomaly track: Youden's on validation
                    row.update(metrics_at_validation_threshold(id_scores, out.scores[key],
                                                               *validation))
                if threshold is not None:  # the detector's own decision rule at level alpha
                    row.update(decision_rates(id_scores, out.scores[key], threshold, alpha,
                                              draws.level if draws is not None else 0.95))
                if draws is not None:
                    cell = cells.get(key, {})
                    if isinstance(cell, Exception):
                        raise cell
                    row.update(cell)
                row.update(status="ok", error="")
            except Exception as exc:
                row.update(status="failed", error=error_text(exc))
        rows.append(row)
    return rows


def _tuned_rows(det_id: str, spec: dict[str, Any], prep: Prepared, cfg: DictConfig,
                rep_keys: dict[str, str], draws: Draws, out_dir: Path,
                record: dict[str, Any]) -> list[dict[str, Any]]:
    """Tune ``spec`` on the validation splits, then its rows at the picked values
    (``<id>_tuned``; failed rows when no trial worked). The trials go to ``record``."""
    tuned_id = det_id + tuning.SUFFIX
    result = tuning.tune(spec, prep, cfg)
    record[det_id] = result.record()
    if result.picked is None:
        out = DetectorOutcome(errors=dict.fromkeys(prep.scored_keys, result.error))
        spec_t = tuning.without_search(spec)
    else:
        spec_t = tuning.tuned_spec(spec, result.picked)
        out = cached_outcome(spec_t, score_cache.score_key(spec_t, rep_keys, prep.device.type),
                             prep, cfg)
        if out.scores:
            save_scores(out_dir, tuned_id, out.scores)
    rows = metric_rows(tuned_id, spec_t, out, prep, cfg, draws)
    for row in rows:
        row.update(tuned_from=det_id, tuned_params=json.dumps(result.picked, sort_keys=True))
    return rows


def run(cfg: DictConfig, out_dir: Path) -> pd.DataFrame:
    """Run every detector in ``cfg.detectors``; write tables, scores and manifest to out_dir.

    Everything runs under the configured compute settings (``cfg.compute``: thread count,
    oneDNN), so the same command on the same machine gives the same bits."""
    with compute.pinned(compute.ComputeSettings.from_config(cfg)):
        return _run(cfg, out_dir)


def _run(cfg: DictConfig, out_dir: Path) -> pd.DataFrame:
    t_start = time.perf_counter()
    torch.manual_seed(cfg.seed)
    specs: dict[str, dict[str, Any]] = OmegaConf.to_container(cfg.detectors, resolve=True)
    if not specs:
        raise DataError("no detectors selected; pick some with detector=<option>")
    prep = prepare(cfg, needs_feature_maps(specs))
    id_acc = id_accuracy(prep)
    log.info("backbone %s: ID test accuracy %.4f (checkpoint %s)", cfg.backbone.name, id_acc,
             prep.backbone.checkpoint)
    settings = OmegaConf.to_container(cfg.get("analysis") or {}, resolve=True)
    analysed = {lib for lib in {s["library"] for s in specs.values()}
                if settings.get(lib, True) and hook(lib) is not None}
    # the splits a detector fits on and is tested on (tuning's validation splits apart, but for
    # an anomaly pair, whose every detector scores them to pick its threshold)
    rep_keys = {name: reps.key for name, reps in prep.reps.items()
                if prep.task == ANOMALY or name not in (VALIDATION, VALIDATION_OOD)}
    rows: list[dict[str, Any]] = []
    tuned: dict[str, Any] = {}
    reports: dict[str, Any] = {}  # what a detector says about its own fit (e.g. split roles)
    draws = Draws(cfg, prep)
    fitted: dict[str, dict[str, Fitted]] = {lib: {} for lib in analysed}
    t_det = time.perf_counter()
    interrupted = False
    try:
        for det_id, spec in tqdm(list(specs.items()), desc="detectors", mininterval=1):
            core = tuning.without_search(spec)
            key = score_cache.score_key(core, rep_keys, prep.device.type)
            out = cached_outcome(core, key, prep, cfg)
            rows.extend(metric_rows(det_id, spec, out, prep, cfg, draws))
            if out.fit_report:
                reports[det_id] = out.fit_report
            if out.scores:
                save_scores(out_dir, det_id, out.scores)
            if spec["library"] in analysed:
                fitted[spec["library"]][det_id] = Fitted(core, out.detector, key)
            if tuning_on(cfg) and spec.get("search"):
                rows.extend(_tuned_rows(det_id, spec, prep, cfg, rep_keys, draws, out_dir,
                                        tuned))
    except KeyboardInterrupt:  # ^C: stop, but keep what finished
        interrupted = True
        log.warning("interrupted: writing the %d detector(s) that finished",
                    len({r["detector"] for r in rows}))
    prep.timings["detectors_seconds"] = time.perf_counter() - t_det
    prep.timings["bootstrap_seconds"] = draws.seconds
    if analysed and not interrupted:
        t_an = time.perf_counter()
        net = private_network(prep, cfg.data.batch_size)
        cache = cache_root(cfg) if cfg.get("cache_scores", True) else None
        toggles = set(libraries()) | {s["library"] for s in specs.values()}
        options = {k: v for k, v in settings.items() if k not in toggles}
        for library in sorted(analysed):
            write_analyses(library, fitted[library], prep.reps, net, out_dir,
                           {**options, "seed": cfg.seed}, cache)
        prep.timings["analysis_seconds"] = time.perf_counter() - t_an
    prep.timings["total_seconds"] = time.perf_counter() - t_start
    frame = write_metric_tables(rows, out_dir, title=f"{cfg.pair.name} / {cfg.backbone.name}",
                                skipped=prep.skipped)
    extra: dict[str, Any] = {"tuning": tuned} if tuned else {}
    if reports:
        extra["detector_fits"] = reports
    if interrupted:
        extra["interrupted"] = True
    write_manifest(cfg, prep, None if prep.task == ANOMALY else id_acc, out_dir, extra or None)
    if interrupted:
        raise KeyboardInterrupt
    if cfg.get("store"):
        to_store(cfg, specs, frame, out_dir)
    return frame


def to_store(cfg: DictConfig, specs: dict[str, dict[str, Any]], frame: pd.DataFrame,
             out_dir: Path) -> None:
    """Append the finished run to the results store (:mod:`benchmark.store`)."""
    import yaml

    det_keys = {det: detector_key(spec) for det, spec in specs.items()}
    det_keys.update({det + tuning.SUFFIX: key + tuning.SUFFIX for det, key in det_keys.items()})
    saved = out_dir / ".hydra" / "overrides.yaml"
    overrides = [str(o) for o in yaml.safe_load(saved.read_text()) or []] if saved.exists() else []
    detectors = dict.fromkeys(frame["detector"].astype(str))
    keys = {"config_key": job_key(cfg), "setting_key": setting_key(cfg),
            "detector_keys": det_keys}
    store.append(Path(str(cfg.store)).expanduser(), out_dir, frame, read_manifest(out_dir),
                 overrides, keys, {det: load_scores(out_dir, det) for det in detectors})


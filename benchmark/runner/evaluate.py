"""Build, fit and score one detector; every failure is captured as a result, never raised.

Each detector gets a deep copy of the network and runs inside its own try block: a crash
(any exception, ``SystemExit`` from a library included), a NaN score or a detector that runs
past its time limit becomes an error for the splits it affects, and the run goes on. Only
``KeyboardInterrupt`` (^C) stops the run; the runner then writes what finished.
"""

from __future__ import annotations

import logging
import time
import traceback
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from omegaconf import DictConfig, OmegaConf

from adapters.base import Consumes, Detector
from adapters.registry import build_detector, import_library
from benchmark.pipeline.wrapper import NetworkContractError
from benchmark.representations import Network, Representations
from benchmark.runner import score_cache
from benchmark.runner.prepare import Prepared, cache_root, private_network
from benchmark.runner.profiling import PeakMemory
from benchmark.runner.time_limit import TimeLimitExceeded, time_limit

log = logging.getLogger(__name__)


def error_text(exc: BaseException) -> str:
    """One line of at most 500 characters: the exception's type and message."""
    msg = f"{type(exc).__name__}: {exc}".strip().replace("\n", " ")
    return msg[:500]


# what a detector may raise and still be a failed row (KeyboardInterrupt stops the run)
DETECTOR_FAILURES = (Exception, SystemExit)


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


def build(spec: dict[str, Any]) -> Detector:
    """The detector of a config entry ``{library, name, params}``."""
    return build_detector(spec["library"], spec["name"], spec.get("params") or {})


@dataclass
class DetectorOutcome:
    """Scores per split (``id_test``, ``ood/<name>``) with timings, or the error that stopped it.

    ``detector`` is the fitted detector when it was computed in this process (None when the
    scores came from the cache or fitting failed); it is never cached.
    """

    scores: dict[str, np.ndarray] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    # the detector's own account of its fit (``fit_report()``: e.g. which split does what),
    # kept with the cached scores so a cache hit still records it
    fit_report: dict[str, Any] = field(default_factory=dict)
    fit_seconds: float = float("nan")
    score_seconds: dict[str, float] = field(default_factory=dict)
    # importing the library's modules in this process (nonzero for the first detector of a
    # library to need them), kept out of fit_seconds
    import_seconds: float = 0.0
    consumes: str = ""
    from_cache: bool = False
    peak_memory_mb: float = float("nan")
    detector: Detector | None = None

    def meta(self) -> dict[str, Any]:
        return {"fit_seconds": self.fit_seconds, "score_seconds": self.score_seconds,
                "consumes": self.consumes, "peak_memory_mb": self.peak_memory_mb,
                "import_seconds": self.import_seconds, "fit_report": self.fit_report}


def evaluate_detector(spec: dict[str, Any], prep: Prepared, batch_size: int,
                      time_limit_s: float | None = None,
                      split_keys: list[str] | None = None) -> DetectorOutcome:
    """Build, fit and score one detector on every split (or on ``split_keys``, the first of
    them ID); failures are captured, not raised.

    With ``time_limit_s``, a detector still busy after that many seconds (fit + scoring) is
    stopped and recorded as failed with a TimeLimitExceeded error.
    """
    split_keys = split_keys or prep.scored_keys
    with PeakMemory() as memory:
        try:
            with time_limit(time_limit_s, f"{spec['library']}/{spec['name']}"):
                out = _evaluate(spec, prep, batch_size, split_keys)
        except TimeLimitExceeded as exc:
            log.warning("%s/%s: %s", spec["library"], spec["name"], exc)
            out = DetectorOutcome()
            out.errors = dict.fromkeys(split_keys, f"TimeLimitExceeded: {exc}")
    out.peak_memory_mb = memory.peak_mb
    return out


def _evaluate(spec: dict[str, Any], prep: Prepared, batch_size: int, split_keys: list[str]
              ) -> DetectorOutcome:
    out = DetectorOutcome()
    try:
        det = build(spec)
        out.import_seconds = import_library(spec["library"])  # not charged to the fit
        out.consumes = det.consumes.value
        check_network(det, prep)
        net = private_network(prep, batch_size)
        t0 = time.perf_counter()
        try:
            det.fit(prep.reps["fit"], net, calibration=prep.reps["calibration"])
        finally:
            out.fit_seconds = time.perf_counter() - t0
    except DETECTOR_FAILURES as exc:
        log.warning("%s/%s: %s", spec["library"], spec["name"], error_text(exc))
        log.debug("%s", traceback.format_exc())
        out.errors = dict.fromkeys(split_keys, error_text(exc))
        return out
    for key in split_keys:
        t1 = time.perf_counter()
        try:
            out.scores[key] = checked_scores(det, prep.reps[key], net)
        except DETECTOR_FAILURES as exc:
            log.warning("%s/%s on %s: %s", spec["library"], spec["name"], key, error_text(exc))
            out.errors[key] = error_text(exc)
        out.score_seconds[key] = time.perf_counter() - t1
        if key == split_keys[0] and key in out.errors:  # the ID split: nothing to compare to
            out.errors = dict.fromkeys(split_keys, out.errors[key])
            break
    out.detector = det
    out.fit_report = fit_report(det)
    return out


def fit_report(detector: Any) -> dict[str, Any]:
    """A fitted detector's own account of its fit (``fit_report()``), or nothing."""
    method = getattr(detector, "fit_report", None)
    return dict(method() or {}) if callable(method) else {}


def check_network(det: Detector, prep: Prepared) -> None:
    """Refuse, before any work, a detector whose input this backbone cannot provide."""
    if det.consumes == Consumes.FEATURE_MAPS and prep.reps["fit"].feature_maps is None:
        why = prep.backbone.model.missing().get("feature_maps", "they were not extracted")
        raise NetworkContractError(f"this detector reads feature maps, which backbone "
                                   f"{prep.backbone.name} does not offer: {why}")


def cached_outcome(spec: dict[str, Any], key: str, prep: Prepared, cfg: DictConfig,
                   split_keys: list[str] | None = None) -> DetectorOutcome:
    """Reuse cached scores of an identical earlier computation (score cache key ``key``), else
    compute them (and cache them when nothing failed)."""
    use_cache = bool(cfg.get("cache_scores", True))
    if use_cache and (hit := score_cache.load(cache_root(cfg), key)) is not None:
        scores, meta = hit
        return DetectorOutcome(scores=scores, fit_seconds=meta["fit_seconds"],
                               score_seconds=meta["score_seconds"], consumes=meta["consumes"],
                               from_cache=True,
                               peak_memory_mb=meta.get("peak_memory_mb", float("nan")),
                               import_seconds=meta.get("import_seconds", 0.0),
                               fit_report=meta.get("fit_report") or {})
    out = evaluate_detector(spec, prep, cfg.data.batch_size, cfg.get("detector_time_limit_s"),
                            split_keys)
    if use_cache and not out.errors:
        score_cache.save(cache_root(cfg), key, out.scores, out.meta())
    return out


def needs_feature_maps(specs: DictConfig | dict[str, dict[str, Any]]) -> bool:
    """Whether any selected detector consumes feature maps (then they are extracted and cached)."""
    if isinstance(specs, DictConfig):
        specs = OmegaConf.to_container(specs, resolve=True)
    for spec in specs.values():
        try:
            det = build(spec)
        except DETECTOR_FAILURES:
            continue  # reported as a failed row later
        if det.consumes == Consumes.FEATURE_MAPS:
            return True
    return False


def level_threshold(spec: dict[str, Any], alpha: float) -> float | None:
    """The score threshold at which the detector itself flags at level ``alpha``, or None
    (it claims no level, or cannot be built: then its rows are failed anyway)."""
    try:
        return build(spec).level_threshold(alpha)
    except DETECTOR_FAILURES:
        return None

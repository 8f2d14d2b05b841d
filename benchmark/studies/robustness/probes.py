"""Robustness study: each detector of a sweep under bad or odd inputs, one guarded probe at a time.

For every detector the runner's own pieces are reused (:mod:`.data`: the run's config with
small sets, ``prepare``, the real extraction for odd inputs; detectors built by the registry
and scored through the runner's score check). Each probe runs in its own ``try``; a failure is
a typed :class:`ProbeResult`, never an exception out of the study. The study writes
``robustness.csv``; ``ood-bench-report`` renders it.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from omegaconf import DictConfig, OmegaConf
from tqdm.auto import tqdm

from adapters.base import Detector
from adapters.registry import adapter_module
from benchmark.paths import REPO
from benchmark.pipeline.metrics import compute_metrics
from benchmark.representations import Network
from benchmark.results import Collection, Run
from benchmark.runner.evaluate import InvalidScores, build, checked_scores
from benchmark.runner.prepare import private_network
from benchmark.studies.ease.measure import fallback_interpreter
from benchmark.studies.robustness import CSV_FILE, PROBES, SETTINGS_FILE
from benchmark.studies.robustness.data import (
    ProbeData,
    ProbeSettings,
    build_probe_data,
    run_config,
    tensor_inputs,
)

log = logging.getLogger(__name__)

@dataclass
class ProbeResult:
    """The outcome of one probe of one detector. ``status``: ok / error / changed."""

    label: str
    library: str
    method: str
    probe: str
    status: str
    detail: str
    seconds: float = 0.0
    auroc: float | None = None  # tiny_fit / missing_class: ID test vs the first OOD set
    full_fit_auroc: float | None = None
    flagged_share: float | None = None  # odd inputs above the ID 95th percentile
    n_infinite: int | None = None
    max_delta: float | None = None  # batch_invariance / determinism
    bit_identical: bool | None = None
    raised: bool | None = None  # error cells: an exception (else NaN / wrong count)


class ProbeFailure(RuntimeError):
    """A probe's outcome that is an ``error`` cell; ``raised``: it came from an exception
    (else from the score check: NaN scores, wrong count)."""

    def __init__(self, message: str, raised: bool = False) -> None:
        super().__init__(message)
        self.raised = raised


def _error_text(exc: BaseException) -> tuple[str, bool]:
    """(the message, whether it was an exception rather than the score check)."""
    if isinstance(exc, ProbeFailure):
        return str(exc), exc.raised
    if isinstance(exc, InvalidScores):
        return str(exc), False
    return f"raised {type(exc).__name__}: {exc}".replace("\n", " ")[:400], True


def _auroc(scores: np.ndarray, n_id: int) -> float | None:
    try:
        return float(compute_metrics(scores[:n_id], scores[n_id:])["auroc"])
    except ValueError:
        return None


def _compare(a: np.ndarray, b: np.ndarray, rtol: float) -> tuple[str, float, float, bool]:
    """(status, max |delta|, max |score|, bit-identical) of two score vectors."""
    delta = float(np.max(np.abs(a - b))) if len(a) else 0.0
    scale = float(np.max(np.abs(a[np.isfinite(a)]))) if np.isfinite(a).any() else 1.0
    if np.array_equal(a, b):
        return "ok", 0.0, scale, True
    changed = not np.isfinite(delta) or delta > rtol * max(scale, 1e-12)
    return ("changed" if changed else "ok"), delta, scale, False


class Prober:
    """All probes of one detector; the base fit is shared by the probes that only score."""

    def __init__(self, spec: dict[str, Any], data: ProbeData, settings: ProbeSettings) -> None:
        self.spec, self.data, self.settings = spec, data, settings
        self._base: tuple[Detector, Network, np.ndarray] | None = None
        self._base_error: BaseException | None = None

    def _fit(self, fit: Any, batch_size: int) -> tuple[Detector, Network]:
        det = build(self.spec)
        net = private_network(self.data.prep, batch_size)
        det.fit(fit, net, calibration=self.data.prep.reps["calibration"])
        return det, net

    def base(self) -> tuple[Detector, Network, np.ndarray]:
        if self._base_error is not None:
            text, raised = _error_text(self._base_error)
            raise ProbeFailure(f"base fit/score failed: {text}", raised)
        if self._base is None:
            bs = self.settings.batch_sizes[0]
            try:
                det, net = self._fit(self.data.fit, bs)
                scores = checked_scores(det, self.data.mixed_split(bs), net)
            except BaseException as exc:
                self._base_error = exc
                raise
            self._base = (det, net, scores)
        return self._base

    def _threshold(self) -> float | None:
        try:
            return float(np.quantile(self.base()[2][:self.data.n_id], 0.95))
        except Exception:
            return None

    def _odd_inputs(self, result: ProbeResult, split: Any) -> None:
        det, net, _ = self.base()
        scores = checked_scores(det, split, net)
        result.n_infinite = int(np.isinf(scores).sum())
        threshold = self._threshold()
        if threshold is not None:
            result.flagged_share = float((scores >= threshold).mean())
        result.detail = "finite scores" + (f"; {result.n_infinite} infinite"
                                           if result.n_infinite else "")

    def nan_inf_pixels(self, result: ProbeResult) -> None:
        self._odd_inputs(result, self.data.nan)

    def constant_images(self, result: ProbeResult) -> None:
        self._odd_inputs(result, self.data.constant)

    def _refit(self, result: ProbeResult, keep: np.ndarray, what: str) -> None:
        bs = self.settings.batch_sizes[0]
        fit = self.data.fit.subset(keep)
        x = torch.cat([x for x, _ in self.data.fit.inputs()])[keep]
        fit.inputs = tensor_inputs(x, torch.from_numpy(self.data.fit.labels[keep]), bs)
        det, net = self._fit(fit, bs)
        scores = checked_scores(det, self.data.mixed_split(bs), net)
        result.auroc = _auroc(scores, self.data.n_id)
        try:
            result.full_fit_auroc = _auroc(self.base()[2], self.data.n_id)
        except Exception:
            result.full_fit_auroc = None
        result.n_infinite = int(np.isinf(scores).sum())
        result.detail = f"{what}; AUROC vs {self.data.ood_name}"

    def tiny_fit(self, result: ProbeResult) -> None:
        labels = self.data.fit.labels
        rng = np.random.default_rng(self.settings.seed + 1)
        per_class = self.settings.tiny_per_class
        keep = np.sort(np.concatenate([
            rng.choice(np.flatnonzero(labels == c), size=min(per_class, int((labels == c).sum())),
                       replace=False) for c in np.unique(labels)]))
        self._refit(result, keep, f"{len(keep)} fit rows")

    def missing_class(self, result: ProbeResult) -> None:
        c = self.settings.missing_class
        self._refit(result, np.flatnonzero(self.data.fit.labels != c), f"class {c} removed")

    def _record(self, result: ProbeResult, a: np.ndarray, b: np.ndarray, what: str) -> None:
        result.status, result.max_delta, scale, result.bit_identical = _compare(
            a, b, self.settings.rtol)
        result.detail = (f"{what}bit-identical" if result.bit_identical else
                         f"{what}max |Δ| {result.max_delta:.3g} (max |score| {scale:.3g})")

    def batch_invariance(self, result: ProbeResult) -> None:
        det, _, a = self.base()
        bs = self.settings.batch_sizes[1]
        perm = np.random.default_rng(self.settings.seed + 2).permutation(len(self.data.mixed))
        b = checked_scores(det, self.data.mixed_split(bs, perm), private_network(self.data.prep,
                                                                                 bs))
        self._record(result, a[perm], b, f"batch {self.settings.batch_sizes[0]} vs {bs}, "
                     "shuffled: ")

    def determinism(self, result: ProbeResult) -> None:
        _, _, a = self.base()
        bs = self.settings.batch_sizes[0]
        det, net = self._fit(self.data.fit, bs)
        self._record(result, a, checked_scores(det, self.data.mixed_split(bs), net), "")


def probe_detector(label: str, spec: dict[str, Any], data: ProbeData, settings: ProbeSettings,
                   probes: tuple[str, ...] = tuple(PROBES), bar: Any = None
                   ) -> list[ProbeResult]:
    """Every probe of one detector; never raises."""
    prober = Prober(spec, data, settings)
    out = []
    for probe in probes:
        if bar is not None:
            bar.set_postfix_str(f"{label}: {probe}", refresh=False)
        result = ProbeResult(label, str(spec.get("library")), str(spec.get("name")), probe,
                             "ok", "")
        t0 = time.perf_counter()
        try:
            getattr(prober, probe)(result)
        except BaseException as exc:  # noqa: BLE001 - every failure is a result
            if isinstance(exc, KeyboardInterrupt):
                raise
            result.status = "error"
            result.detail, result.raised = _error_text(exc)
        result.seconds = time.perf_counter() - t0
        out.append(result)
        if bar is not None:
            bar.update(1)
    return out


def _all_error(specs: dict[str, dict[str, Any]], why: str) -> list[ProbeResult]:
    return [ProbeResult(label, str(spec.get("library")), str(spec.get("name")), p, "error",
                        why) for label, spec in specs.items() for p in PROBES]


def probe_detectors(cfg: DictConfig, specs: dict[str, dict[str, Any]],
                    settings: ProbeSettings | None = None) -> list[ProbeResult]:
    """Prepare once for ``cfg`` and run every probe of every ``{label: spec}``."""
    settings = settings or ProbeSettings()
    results: list[ProbeResult] = []
    with tempfile.TemporaryDirectory(prefix="ood-bench-probe-") as tmp:
        try:
            data = build_probe_data(cfg, specs, settings, Path(tmp))
        except Exception as exc:
            return _all_error(specs, "preparing the probe data failed: "
                              f"{_error_text(exc)[0]}")
        with tqdm(total=len(specs) * len(PROBES), desc="robustness probes",
                  mininterval=1) as bar:
            for label, spec in specs.items():
                results += probe_detector(label, spec, data, settings, bar=bar)
    return results


def interpreter(library: str, pythons: dict[str, str]) -> str | None:
    """Where to probe ``library``: here if its adapter builds detectors here, else
    ``--python library=...``, else the project's ``.venv-<library>`` if there is one (None:
    nowhere, report errors)."""
    if library in pythons:
        return pythons[library]
    try:
        module = adapter_module(library)
        module.build(module.available()[0], {})
    except Exception:
        return fallback_interpreter(library)
    return sys.executable


def probe_elsewhere(python: str, cfg: DictConfig, specs: dict[str, dict[str, Any]],
                    settings: ProbeSettings) -> list[ProbeResult]:
    """:func:`probe_detectors` in another interpreter (one that has the library installed)."""
    with tempfile.TemporaryDirectory(prefix="ood-bench-probe-") as tmp:
        job, answer = Path(tmp) / "job.json", Path(tmp) / "results.json"
        job.write_text(json.dumps({"cfg": OmegaConf.to_container(cfg, resolve=True),
                                   "specs": specs, "settings": asdict(settings)}, default=str))
        proc = subprocess.run([python, "-m", "benchmark.studies.robustness.probes", str(job),
                               str(answer)], cwd=REPO, stdout=subprocess.PIPE,
                              stderr=None, text=True)
        if proc.returncode == 0 and answer.exists():
            return [ProbeResult(**r) for r in json.loads(answer.read_text())]
        why = f"probing in {python} failed (exit {proc.returncode}): {proc.stdout[-300:]}"
    return _all_error(specs, why)


def probe_collection(coll: Collection, settings: ProbeSettings | None = None,
                     pythons: dict[str, str] | None = None) -> list[ProbeResult]:
    """Probe every detector of every run, preparing once per distinct setting and interpreter.

    A library whose adapter cannot build detectors here is probed by the interpreter that has
    it (``pythons[library]`` or ``<repo>/.venv-<library>``); with none, its probes are errors
    that say so.
    """
    settings = settings or ProbeSettings()
    pythons = pythons or {}
    groups: dict[str, tuple[Run, dict[str, dict[str, Any]]]] = {}
    labels = coll.rows.groupby(["run", "detector"], sort=False)["label"].first()
    for run in coll.runs:
        conf = run.config
        rest = {k: v for k, v in conf.items() if k not in ("detectors", "cache_scores")}
        entry = groups.setdefault(json.dumps(rest, sort_keys=True, default=str), (run, {}))
        for det_id, spec in (conf.get("detectors") or {}).items():
            entry[1][labels.get((run.rel, det_id), det_id)] = dict(spec)
    results: list[ProbeResult] = []
    where: dict[str, str | None] = {}
    for run, specs in groups.values():
        cfg = run_config(run, settings)
        by_python: dict[str | None, dict[str, dict[str, Any]]] = {}
        for label, spec in specs.items():
            lib = str(spec.get("library"))
            if lib not in where:
                where[lib] = interpreter(lib, pythons)
            by_python.setdefault(where[lib], {})[label] = spec
        for python, group in by_python.items():
            if python is None or python == sys.executable:
                results += probe_detectors(cfg, group, settings)
            else:
                results += probe_elsewhere(python, cfg, group, settings)
    order = {label: i for i, label in enumerate(
        label for _, specs in groups.values() for label in specs)}
    probe_rank = list(PROBES)
    return sorted(results, key=lambda r: (order.get(r.label, 0), probe_rank.index(r.probe)))


def results_frame(results: list[ProbeResult]) -> pd.DataFrame:
    return pd.DataFrame([asdict(r) for r in results],
                        columns=[f.name for f in fields(ProbeResult)])


def write_robustness(coll: Collection, out: Path, settings: ProbeSettings | None = None,
                     pythons: dict[str, str] | None = None) -> pd.DataFrame:
    """Probe every detector of ``coll`` and write ``<out>/robustness.csv`` (and the settings
    it ran with, ``robustness_settings.json``)."""
    settings = settings or ProbeSettings()
    frame = results_frame(probe_collection(coll, settings, pythons))
    out.mkdir(parents=True, exist_ok=True)
    frame.to_csv(out / CSV_FILE, index=False)
    (out / SETTINGS_FILE).write_text(json.dumps(asdict(settings)))
    return frame


def main(argv: list[str] | None = None) -> None:
    """``python -m benchmark.studies.robustness.probes job.json results.json`` (used by
    :func:`probe_elsewhere`): probe the job's detectors in this interpreter."""
    job_path, answer = (argv if argv is not None else sys.argv[1:])[:2]
    job = json.loads(Path(job_path).read_text())
    s = job["settings"]
    s["batch_sizes"] = tuple(s["batch_sizes"])
    results = probe_detectors(OmegaConf.create(job["cfg"]), job["specs"], ProbeSettings(**s))
    Path(answer).write_text(json.dumps([asdict(r) for r in results]))


if __name__ == "__main__":
    main()

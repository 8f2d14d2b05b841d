"""Robustness report: each detector under bad or odd inputs, one guarded probe at a time.

For every detector of the sweep the runner's own pieces are reused: the run's resolved config
(``manifest.json``, else ``.hydra/config.yaml``) with small evaluation sets, ``prepare`` (same
data, same cached backbone), ``extract`` for the perturbed image sets (into a temporary cache),
and detectors built by ``adapters.registry.build_detector``. Each probe runs in its own
``try``; a failure becomes a cell of the matrix, never an exception out of the report.

Probes (the detector is fitted on a seeded subset of the run's fit split, ``fit_cap`` rows):

* ``nan_inf_pixels``: ID test images with 10 % of their pixels set to NaN, +inf or -inf
  (after normalisation). ok = a finite score for every image.
* ``constant_images``: all-black, mid-grey and all-white images. ok = finite scores.
* ``tiny_fit``: fit on 10 images per class. ok = fits and gives finite scores (AUROC shown).
* ``missing_class``: fit with every image of one class removed. ok = fits and gives finite
  scores (AUROC shown).
* ``batch_invariance``: ID + OOD scored in order with one batch size, then shuffled with
  another; ``changed`` when any sample's score moved by more than ``rtol`` x max |score|.
* ``determinism``: build, fit and score twice from scratch; ``changed`` on the same tolerance
  (the detail says whether the runs were bit-identical).

``error`` = the probe raised (message shown) or returned NaN scores / the wrong number of them.
"""

from __future__ import annotations

import copy
import json
import logging
import subprocess
import sys
import tempfile
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from omegaconf import DictConfig, OmegaConf
from tqdm.auto import tqdm

from adapters.base import Detector
from adapters.registry import build_detector
from benchmark import data as data_mod
from benchmark.features import extract
from benchmark.metrics import compute_metrics
from benchmark.report_sweep import Collection, Run
from benchmark.representations import Network, Representations
from benchmark.run import (
    InvalidScores,
    Prepared,
    checked_scores,
    fit_detector,
    needs_feature_maps,
    prepare,
    private_network,
)

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[1]
PROBES = ("nan_inf_pixels", "constant_images", "tiny_fit", "missing_class", "batch_invariance",
          "determinism")
PROBE_TITLES = {
    "nan_inf_pixels": "NaN/inf pixels", "constant_images": "constant images",
    "tiny_fit": "tiny fit (10/class)", "missing_class": "class missing from fit",
    "batch_invariance": "same sample, other batch", "determinism": "two identical runs",
}


@dataclass(frozen=True)
class ProbeSettings:
    """Sizes and tolerances of the probes (small, so the report stays cheap)."""

    n_id: int = 500
    n_ood: int = 500
    fit_cap: int = 2000
    tiny_per_class: int = 10
    missing_class: int = 0
    n_perturbed: int = 60
    n_constant_each: int = 10
    batch_sizes: tuple[int, int] = (128, 37)
    rtol: float = 1e-5
    seed: int = 0


@dataclass
class ProbeResult:
    label: str
    library: str
    method: str
    probe: str
    status: str
    detail: str
    seconds: float


class ProbeFailure(RuntimeError):
    """A probe's outcome that is an ``error`` cell (NaN scores, wrong count)."""


def _error_text(exc: BaseException) -> str:
    if isinstance(exc, ProbeFailure | InvalidScores):  # the runner's score check: an error cell
        return str(exc)
    return f"raised {type(exc).__name__}: {exc}".replace("\n", " ")[:400]


# --------------------------------------------------------------------------- inputs


def _tensor_inputs(x: torch.Tensor, y: torch.Tensor, batch_size: int
                   ) -> Callable[[], Iterator[tuple[torch.Tensor, torch.Tensor]]]:
    def gen() -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for start in range(0, len(x), batch_size):
            yield x[start:start + batch_size], y[start:start + batch_size]

    return gen


def _with_inputs(reps: Representations, images: data_mod.ImageSet,
                 transform: Any, batch_size: int) -> Representations:
    reps.inputs = lambda: data_mod.batches(images, transform, batch_size)
    return reps


class PerturbedTransform:
    """The backbone's transform, then 10 % of each image's pixels set to NaN, +inf or -inf.

    Which value and which pixels depend only on the image's bytes, so every batching of the
    same images gets the same inputs.
    """

    VALUES = (float("nan"), float("inf"), float("-inf"))

    def __init__(self, base: data_mod.InputTransform, fraction: float = 0.1) -> None:
        self.base = base
        self.fraction = fraction

    def describe(self) -> dict:
        return {**self.base.describe(), "perturb": f"nan/inf {self.fraction}"}

    def __call__(self, images: np.ndarray) -> torch.Tensor:
        x = self.base(images).clone()
        for i, img in enumerate(images):
            code = zlib.crc32(np.ascontiguousarray(img).tobytes())
            rng = np.random.default_rng(code)
            mask = torch.from_numpy(rng.random(tuple(x[i].shape)) < self.fraction)
            x[i][mask] = self.VALUES[code % 3]
        return x


# --------------------------------------------------------------------------- config + data


def run_config(run: Run, settings: ProbeSettings) -> DictConfig:
    """The run's resolved config with small evaluation sets and no score cache."""
    cfg = OmegaConf.create(copy.deepcopy(run.config))
    OmegaConf.set_struct(cfg, False)
    cfg.data.max_id_test = settings.n_id
    cfg.data.max_ood = settings.n_ood
    cfg.cache_scores = False
    root = Path(str(cfg.data.root)).expanduser()
    if not root.is_absolute() and not root.exists() and (REPO / root).exists():
        cfg.data.root = str(REPO / root)  # the run was started from the repository root
    return cfg


def _setting_key(cfg: dict[str, Any]) -> str:
    rest = {k: v for k, v in cfg.items() if k not in ("detectors", "cache_scores")}
    return json.dumps(rest, sort_keys=True, default=str)


@dataclass
class ProbeData:
    """Every split the probes score, with model-ready inputs attached."""

    fit: Representations
    mixed: Representations  # ID test subset then OOD subset
    mixed_x: torch.Tensor
    mixed_y: torch.Tensor
    n_id: int
    ood_name: str
    nan: Representations
    constant: Representations
    prep: Prepared  # backbone, device, transform: what the runner hands detectors


def _stratified(labels: np.ndarray, per_class: int, rng: np.random.Generator) -> np.ndarray:
    idx = [rng.choice(np.flatnonzero(labels == c), size=min(per_class, int((labels == c).sum())),
                      replace=False) for c in np.unique(labels)]
    return np.sort(np.concatenate(idx))


def build_probe_data(cfg: DictConfig, specs: dict[str, dict[str, Any]], settings: ProbeSettings,
                     tmp_cache: Path) -> ProbeData:
    need_maps = needs_feature_maps(specs)
    prep = prepare(cfg, need_maps)
    bs = settings.batch_sizes[0]
    rng = np.random.default_rng(settings.seed)
    fit_all = prep.reps["fit"]
    n_fit = min(settings.fit_cap, len(fit_all))
    fit_idx = np.sort(rng.choice(len(fit_all), size=n_fit, replace=False))
    fit_set = prep.sets["fit"].take(fit_idx, split="fit")
    fit = _with_inputs(fit_all.subset(fit_idx), fit_set, prep.transform, bs)
    id_reps, id_set = prep.reps["id_test"], prep.sets["id_test"]
    ood_key = prep.ood_keys[0]
    ood_reps, ood_set = prep.reps[ood_key], prep.sets[ood_key]
    mixed = id_reps.concat(ood_reps)
    mixed_x = torch.cat([prep.transform(id_set.images), prep.transform(ood_set.images)])
    mixed_y = torch.from_numpy(np.concatenate([id_set.labels, ood_set.labels]))
    # perturbed sets: through the real extraction, into a throwaway cache
    n_bad = min(settings.n_perturbed, len(id_set))
    bad_set = id_set.take(np.arange(n_bad), split="probe-nan")
    bad_tf = PerturbedTransform(prep.transform)
    nan_reps, _ = extract(prep.backbone.model, bad_set, bad_tf, prep.backbone.sha256, tmp_cache,
                          prep.device, bs, with_maps=need_maps)
    nan_reps = _with_inputs(nan_reps, bad_set, bad_tf, bs)
    shape = id_set.images.shape[1:]
    k = settings.n_constant_each
    const_images = np.concatenate([np.full((k, *shape), v, np.uint8) for v in (0, 128, 255)])
    const_set = data_mod.ImageSet("constant", "probe", const_images,
                                  np.zeros(len(const_images), np.int64), "generated")
    const_reps, _ = extract(prep.backbone.model, const_set, prep.transform,
                            prep.backbone.sha256, tmp_cache, prep.device, bs,
                            with_maps=need_maps)
    const_reps = _with_inputs(const_reps, const_set, prep.transform, bs)
    return ProbeData(fit=fit, mixed=mixed,
                     mixed_x=mixed_x, mixed_y=mixed_y, n_id=len(id_reps),
                     ood_name=ood_key.removeprefix("ood/"), nan=nan_reps, constant=const_reps,
                     prep=prep)


# --------------------------------------------------------------------------- probes


def _fit(spec: dict[str, Any], fit: Representations, d: ProbeData, batch_size: int
         ) -> tuple[Detector, Network]:
    det = build_detector(spec["library"], spec["name"], spec.get("params") or {})
    net = private_network(d.prep, batch_size)
    fit_detector(det, fit, d.prep.reps["calibration"], net)
    return det, net


def _mixed(d: ProbeData, batch_size: int, perm: np.ndarray | None = None) -> Representations:
    reps = d.mixed if perm is None else d.mixed.subset(perm)
    x, y = (d.mixed_x, d.mixed_y) if perm is None else (d.mixed_x[perm], d.mixed_y[perm])
    reps.inputs = _tensor_inputs(x, y, batch_size)
    return reps


def _auroc(scores: np.ndarray, n_id: int) -> str:
    try:
        return f"{compute_metrics(scores[:n_id], scores[n_id:])['auroc']:.3f}"
    except ValueError:
        return "n/a"


def _infs(scores: np.ndarray) -> str:
    n = int(np.isinf(scores).sum())
    return f"; {n} infinite" if n else ""


def _flagged(scores: np.ndarray, threshold: float | None) -> str:
    if threshold is None:
        return ""
    return f"; {int((scores >= threshold).sum())}/{len(scores)} flagged OOD at the ID 95 % cut"


def _compare(a: np.ndarray, b: np.ndarray, rtol: float) -> tuple[str, str]:
    delta = float(np.max(np.abs(a - b))) if len(a) else 0.0
    scale = float(np.max(np.abs(a[np.isfinite(a)]))) if np.isfinite(a).any() else 1.0
    if np.array_equal(a, b):
        return "ok", "bit-identical"
    changed = not np.isfinite(delta) or delta > rtol * max(scale, 1e-12)
    return ("changed" if changed else "ok"), f"max |Δ| {delta:.3g} (max |score| {scale:.3g})"


class _Prober:
    """All probes of one detector; the base fit is shared by the probes that only score."""

    def __init__(self, spec: dict[str, Any], d: ProbeData, s: ProbeSettings) -> None:
        self.spec, self.d, self.s = spec, d, s
        self._base: tuple[Detector, Network, np.ndarray] | None = None
        self._base_error: BaseException | None = None

    def base(self) -> tuple[Detector, Network, np.ndarray]:
        if self._base_error is not None:
            raise ProbeFailure(f"base fit/score failed: {_error_text(self._base_error)}")
        if self._base is None:
            try:
                det, net = _fit(self.spec, self.d.fit, self.d, self.s.batch_sizes[0])
                scores = checked_scores(det, _mixed(self.d, self.s.batch_sizes[0]), net)
            except BaseException as exc:
                self._base_error = exc
                raise
            self._base = (det, net, scores)
        return self._base

    def threshold(self) -> float | None:
        try:
            return float(np.quantile(self.base()[2][:self.d.n_id], 0.95))
        except Exception:
            return None

    def nan_inf_pixels(self) -> tuple[str, str]:
        det, net, _ = self.base()
        scores = checked_scores(det, self.d.nan, net)
        return "ok", f"finite scores{_infs(scores)}{_flagged(scores, self.threshold())}"

    def constant_images(self) -> tuple[str, str]:
        det, net, _ = self.base()
        scores = checked_scores(det, self.d.constant, net)
        return "ok", f"finite scores{_infs(scores)}{_flagged(scores, self.threshold())}"

    def _refit(self, keep: np.ndarray, what: str) -> tuple[str, str]:
        fit = self.d.fit.subset(keep)
        x = torch.cat([x for x, _ in self.d.fit.inputs()])[keep]
        fit.inputs = _tensor_inputs(x, torch.from_numpy(self.d.fit.labels[keep]),
                                    self.s.batch_sizes[0])
        det, net = _fit(self.spec, fit, self.d, self.s.batch_sizes[0])
        scores = checked_scores(det, _mixed(self.d, self.s.batch_sizes[0]), net)
        try:
            full = _auroc(self.base()[2], self.d.n_id)
        except Exception:
            full = "n/a"
        return "ok", (f"{what}: AUROC vs {self.d.ood_name} {_auroc(scores, self.d.n_id)} "
                      f"(full fit {full}){_infs(scores)}")

    def tiny_fit(self) -> tuple[str, str]:
        rng = np.random.default_rng(self.s.seed + 1)
        keep = _stratified(self.d.fit.labels, self.s.tiny_per_class, rng)
        return self._refit(keep, f"{len(keep)} fit rows")

    def missing_class(self) -> tuple[str, str]:
        c = self.s.missing_class
        keep = np.flatnonzero(self.d.fit.labels != c)
        return self._refit(keep, f"class {c} removed")

    def batch_invariance(self) -> tuple[str, str]:
        _, _, a = self.base()
        bs = self.s.batch_sizes[1]
        perm = np.random.default_rng(self.s.seed + 2).permutation(len(self.d.mixed))
        det = self.base()[0]
        net = private_network(self.d.prep, bs)
        b = checked_scores(det, _mixed(self.d, bs, perm), net)
        status, detail = _compare(a[perm], b, self.s.rtol)
        return status, f"batch {self.s.batch_sizes[0]} vs {bs}, shuffled: {detail}"

    def determinism(self) -> tuple[str, str]:
        _, _, a = self.base()
        det, net = _fit(self.spec, self.d.fit, self.d, self.s.batch_sizes[0])
        b = checked_scores(det, _mixed(self.d, self.s.batch_sizes[0]), net)
        return _compare(a, b, self.s.rtol)


def probe_detector(label: str, spec: dict[str, Any], d: ProbeData, s: ProbeSettings,
                   probes: tuple[str, ...] = PROBES, bar: Any = None) -> list[ProbeResult]:
    """Every probe of one detector; never raises."""
    prober = _Prober(spec, d, s)
    out = []
    for probe in probes:
        if bar is not None:
            bar.set_postfix_str(f"{label}: {probe}", refresh=False)
        t0 = time.perf_counter()
        try:
            status, detail = getattr(prober, probe)()
        except BaseException as exc:  # noqa: BLE001 - every failure is a result
            if isinstance(exc, KeyboardInterrupt):
                raise
            status, detail = "error", _error_text(exc)
        out.append(ProbeResult(label, str(spec.get("library")), str(spec.get("name")), probe,
                               status, detail, time.perf_counter() - t0))
        if bar is not None:
            bar.update(1)
    return out


def probe_detectors(cfg: DictConfig, specs: dict[str, dict[str, Any]],
                    settings: ProbeSettings | None = None) -> list[ProbeResult]:
    """Prepare once for ``cfg`` and run every probe of every ``{label: spec}``."""
    settings = settings or ProbeSettings()
    results: list[ProbeResult] = []
    with tempfile.TemporaryDirectory(prefix="ood-bench-probe-") as tmp:
        try:
            d = build_probe_data(cfg, specs, settings, Path(tmp))
        except Exception as exc:
            return [ProbeResult(label, str(spec.get("library")), str(spec.get("name")), p,
                                "error", f"preparing the probe data failed: {_error_text(exc)}",
                                0.0) for label, spec in specs.items() for p in PROBES]
        with tqdm(total=len(specs) * len(PROBES), desc="robustness probes",
                  mininterval=1) as bar:
            for label, spec in specs.items():
                results += probe_detector(label, spec, d, settings, bar=bar)
    return results


def _importable(library: str) -> bool:
    import importlib

    from adapters.registry import ADAPTER_MODULES

    try:
        importlib.import_module(ADAPTER_MODULES[library])
    except Exception:
        return False
    return True


def interpreter(library: str, pythons: dict[str, str]) -> str | None:
    """Where to probe ``library``: here if its adapter imports, else ``--python library=...``,
    else the project's ``.venv-<library>`` if there is one (None: nowhere, report errors)."""
    from benchmark.report_ease import fallback_interpreter

    if library in pythons:
        return pythons[library]
    if library not in _IMPORTABLE:
        _IMPORTABLE[library] = _importable(library)
    return sys.executable if _IMPORTABLE[library] else fallback_interpreter(library)


_IMPORTABLE: dict[str, bool] = {}


def probe_elsewhere(python: str, cfg: DictConfig, specs: dict[str, dict[str, Any]],
                    settings: ProbeSettings) -> list[ProbeResult]:
    """:func:`probe_detectors` in another interpreter (one that has the library installed)."""
    with tempfile.TemporaryDirectory(prefix="ood-bench-probe-") as tmp:
        job, answer = Path(tmp) / "job.json", Path(tmp) / "results.json"
        job.write_text(json.dumps({"cfg": OmegaConf.to_container(cfg, resolve=True),
                                   "specs": specs, "settings": asdict(settings)}, default=str))
        proc = subprocess.run([python, "-m", "benchmark.report_robustness", str(job),
                               str(answer)], cwd=REPO, stdout=subprocess.PIPE,
                              stderr=None, text=True)
        if proc.returncode == 0 and answer.exists():
            return [ProbeResult(**r) for r in json.loads(answer.read_text())]
        why = f"probing in {python} failed (exit {proc.returncode}): {proc.stdout[-300:]}"
    return [ProbeResult(label, str(spec.get("library")), str(spec.get("name")), p, "error",
                        why, 0.0) for label, spec in specs.items() for p in PROBES]


def probe_collection(coll: Collection, settings: ProbeSettings | None = None,
                     pythons: dict[str, str] | None = None) -> list[ProbeResult]:
    """Probe every detector of every run, preparing once per distinct setting and interpreter.

    A library whose adapter cannot be imported here is probed by the interpreter that has it
    (``pythons[library]`` or ``<repo>/.venv-<library>``); with none, its probes are errors that
    say so.
    """
    settings = settings or ProbeSettings()
    pythons = pythons or {}
    groups: dict[str, tuple[Run, dict[str, dict[str, Any]]]] = {}
    labels = coll.rows.groupby(["run", "detector"], sort=False)["label"].first()
    for run in coll.runs:
        conf = run.config
        key = _setting_key(conf)
        entry = groups.setdefault(key, (run, {}))
        for det_id, spec in (conf.get("detectors") or {}).items():
            label = labels.get((run.rel, det_id), det_id)
            entry[1][label] = dict(spec)
    results: list[ProbeResult] = []
    for run, specs in groups.values():
        cfg = run_config(run, settings)
        by_python: dict[str | None, dict[str, dict[str, Any]]] = {}
        for label, spec in specs.items():
            python = interpreter(str(spec.get("library")), pythons)
            by_python.setdefault(python, {})[label] = spec
        for python, group in by_python.items():
            if python is None or python == sys.executable:
                results += probe_detectors(cfg, group, settings)
            else:
                results += probe_elsewhere(python, cfg, group, settings)
    order = {label: i for i, label in enumerate(
        label for _, specs in groups.values() for label in specs)}
    return sorted(results, key=lambda r: (order.get(r.label, 0), PROBES.index(r.probe)))


# --------------------------------------------------------------------------- tables


def results_frame(results: list[ProbeResult]) -> pd.DataFrame:
    return pd.DataFrame([asdict(r) for r in results],
                        columns=["label", "library", "method", "probe", "status", "detail",
                                 "seconds"])


def markdown(frame: pd.DataFrame) -> str:
    """The matrix (ok / error [n] / changed [n]) and the numbered notes with every message."""
    probes = [p for p in PROBES if p in set(frame["probe"])]
    head = ["detector", "library"] + [PROBE_TITLES[p] for p in probes]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    notes: list[str] = []
    for label, grp in frame.groupby("label", sort=False):
        by = grp.set_index("probe")
        cells = [str(label), str(grp["library"].iloc[0])]
        for p in probes:
            if p not in by.index:
                cells.append("—")
                continue
            status, detail = by.loc[p, "status"], str(by.loc[p, "detail"])
            if status == "ok" and p in ("tiny_fit", "missing_class") and "AUROC" in detail:
                auroc = detail.split("AUROC vs ")[1].split()[1]
                cells.append(f"ok ({auroc})")
            elif status == "ok" and "flagged OOD" in detail:
                k, n = detail.split(" flagged OOD")[0].rsplit("; ", 1)[-1].split("/")
                cells.append(f"ok ({int(k) / int(n):.0%} flagged)")
            elif status == "ok":
                cells.append("ok")
            else:
                short = detail if len(detail) <= 300 else detail[:297] + "..."
                notes.append(f"{len(notes) + 1}. **{label}**, {PROBE_TITLES[p]}: {short}")
                how = ("raised" if detail.startswith("raised") else
                       "NaN out" if "NaN scores" in detail else "")
                cells.append(f"**{status}**{' (' + how + ')' if how else ''} [{len(notes)}]")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines + ([""] + notes if notes else []))


def summary(frame: pd.DataFrame) -> pd.DataFrame:
    """Per library: probes run, ok, error, changed."""
    if frame.empty:
        return pd.DataFrame()
    t = frame.groupby("library")["status"].value_counts().unstack(fill_value=0)
    for c in ("ok", "error", "changed"):
        if c not in t:
            t[c] = 0
    t["probes"] = t[["ok", "error", "changed"]].sum(axis=1)
    t["ok_share"] = t["ok"] / t["probes"]
    return t[["probes", "ok", "error", "changed", "ok_share"]]


def write_robustness(coll: Collection, out: Path, settings: ProbeSettings | None = None,
                     pythons: dict[str, str] | None = None) -> pd.DataFrame:
    settings = settings or ProbeSettings()
    frame = results_frame(probe_collection(coll, settings, pythons))
    frame.to_csv(out / "robustness.csv", index=False)
    doc = (__doc__ or "").split("Probes (", 1)[-1]
    text = ["# Robustness under bad or odd inputs", "",
            f"Settings: {asdict(settings)}. Cells: ok / **error** / **changed**, with the "
            "message in the numbered notes; tiny-fit and missing-class cells show the AUROC "
            "(ID test vs the first OOD set) after that fit; NaN-pixel and constant-image cells "
            "the share of those images scored above the 95th percentile of the ID scores "
            "(flagged as OOD).", "",
            "Probes (" + doc.strip(), "", markdown(frame), ""]
    (out / "robustness.md").write_text("\n".join(text))
    return frame


def main(argv: list[str] | None = None) -> None:
    """``python -m benchmark.report_robustness job.json results.json`` (used by
    :func:`probe_elsewhere`): probe the job's detectors in this interpreter."""
    job_path, answer = (argv if argv is not None else sys.argv[1:])[:2]
    job = json.loads(Path(job_path).read_text())
    s = job["settings"]
    s["batch_sizes"] = tuple(s["batch_sizes"])
    results = probe_detectors(OmegaConf.create(job["cfg"]), job["specs"], ProbeSettings(**s))
    Path(answer).write_text(json.dumps([asdict(r) for r in results]))


if __name__ == "__main__":
    main()

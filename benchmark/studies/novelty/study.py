"""``ood-bench-novelty novelty=<name>``: the batch and stream protocols on one backbone.

One run: the harness prepares the pair (backbone trained or loaded, one cached forward pass
per split), the config's detector is fitted on the ID fit split and calibrated on the
calibration split, and its conformal p-values feed the pipeline. Thresholds: the cluster
space's yardsticks come from ID validation images; the smallest cluster size ``m`` that raises
no alarm on the novelty-free *validation* streams (ID validation images, junk from the pair's
validation set) is the alarm's size. The test pools (ID test, the held-out classes' test
images, the junk test sets) are touched only after that.
"""

from __future__ import annotations

import json
import logging
import shlex
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

from benchmark import compute
from benchmark.atomic import atomic_path
from benchmark.config_groups import CONFIG_DIR, ConfigError, read_option
from benchmark.inhouse.ranks import upper_tail_pvalues
from benchmark.paths import REPO, display_path
from benchmark.pipeline.errors import DataError
from benchmark.results import ID_TEST, ood_key
from benchmark.runner.evaluate import build
from benchmark.runner.manifest import git_commit
from benchmark.runner.prepare import VALIDATION, VALIDATION_OOD, Prepared, prepare, private_network
from benchmark.studies.novelty import BATCH_CSV, REPORT_MD, STREAM_CSV, THRESHOLDS_JSON
from benchmark.studies.novelty.discovery import AlarmRule, Background, discover
from benchmark.studies.novelty.protocols import ID, JUNK, NOVEL, Pool, batch, stream
from benchmark.studies.novelty.report import write_projection, write_report
from benchmark.studies.novelty.scoring import agreement
from benchmark.studies.novelty.space import ClusterSpace
from benchmark.studies.novelty.stream import Monitor, delay

log = logging.getLogger(__name__)


class NoveltyError(DataError):
    """A novelty protocol that cannot run as configured (message names the file)."""


def load_protocol(name: str) -> dict[str, Any]:
    try:
        return read_option("novelty", name)
    except ConfigError as exc:
        raise NoveltyError(str(exc)) from exc


def run_config(spec: dict[str, Any], extra: list[str]) -> DictConfig:
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        return compose("config", overrides=[*spec.get("run", []), *extra])


def fitted_pvalues(cfg: DictConfig, prep: Prepared, keys: list[str]) -> tuple[str, dict]:
    """The config's one detector fitted as the runner fits it, and its p-values per split
    (conformal p-values from its scores on the calibration split when it has none)."""
    if len(cfg.detectors) != 1:
        raise NoveltyError(f"a novelty run takes one detector; the config has "
                           f"{len(cfg.detectors)} ({', '.join(cfg.detectors)}): pick one "
                           "with detector=<option>")
    det_id = next(iter(cfg.detectors))
    spec = OmegaConf.to_container(cfg.detectors[det_id], resolve=True)
    det = build(spec)
    net = private_network(prep, int(cfg.data.batch_size))
    det.fit(prep.reps["fit"], net, calibration=prep.reps["calibration"])
    if hasattr(det, "pvalues"):
        return det_id, {k: np.asarray(det.pvalues(prep.reps[k])) for k in keys}
    cal = np.sort(np.asarray(det.score(prep.reps["calibration"], net), dtype=np.float64))
    return det_id, {k: upper_tail_pvalues(cal, np.asarray(det.score(prep.reps[k], net),
                                                          dtype=np.float64)) for k in keys}


def pools(spec: dict[str, Any], prep: Prepared, p: dict[str, np.ndarray]) -> tuple[Pool, Pool]:
    """(test pool, validation pool) from the prepared splits: ID test + the novel and junk test
    sets; ID validation + the held-out classes' validation images + the validation junk."""
    def part(key: str, kind: int) -> Pool:
        n = len(prep.reps[key])
        truth = prep.sets[key].labels if kind == NOVEL else np.full(n, -1)
        return Pool(p[key], prep.reps[key].features, np.full(n, kind, dtype=np.int64),
                    np.asarray(truth, dtype=np.int64))

    test = [part(ID_TEST, ID), *[part(ood_key(s), NOVEL) for s in spec["novel_sets"]],
            *[part(ood_key(s), JUNK) for s in spec["junk_sets"]]]
    val = [part(VALIDATION, ID), *[part(ood_key(s), NOVEL)
                                   for s in spec["validation_novel_sets"]],
           part(VALIDATION_OOD, JUNK)]
    return Pool.joined(test), Pool.joined(val)


def fit_space(prep: Prepared, **settings: Any) -> ClusterSpace:
    """A cluster space on the ID fit features, its yardsticks from the ID validation split."""
    return ClusterSpace(**settings).fit(prep.reps["fit"].features,
                                        prep.reps[VALIDATION].features,
                                        prep.reps[VALIDATION].labels)


def pick_space(spec: dict[str, Any], prep: Prepared, val: Pool, rule: AlarmRule
               ) -> tuple[ClusterSpace, float, list[dict[str, Any]]]:
    """The cluster space (variance share, domain-gate quantile) and the batch's BH level with
    the best mean NMI over the clusterings on validation buffers."""
    c, b = spec["choices"], spec["batch"]
    base = spec.get("space", {})
    trials = []
    best: tuple[float, ClusterSpace, float] | None = None
    buffers = [(seed, batch(val, c["n_id"], b["n_novel"], b["n_junk"], 20_000 + seed))
               for seed in range(c["buffers"])]
    for variance in c["variance"]:
        for quantile in c.get("norm_quantile", [base.get("norm_quantile", 0.05)]):
            space = fit_space(prep, **{**base, "variance": float(variance),
                                       "norm_quantile": float(quantile)})
            for q in c.get("batch_q", [spec["q"]]):
                scores = []
                for seed, buf in buffers:
                    for method in b["methods"]:
                        d = discover(buf.pvalues, buf.features, space, rule, float(q), method,
                                     seed)
                        novel = buf.kind[d.selected] == NOVEL
                        scores.append(agreement(buf.truth[d.selected][novel],
                                                d.labels[novel])["nmi"])
                value = float(np.nanmean(scores))
                trials.append({"variance": float(variance), "dims": space.dims,
                               "norm_quantile": float(quantile), "q": float(q),
                               "validation_nmi": value})
                log.info("space variance %g (%d dims), gate quantile %g, q %g: validation "
                         "NMI %.3f", variance, space.dims, quantile, q, value)
                if best is None or value > best[0]:
                    best = (value, space, float(q))
    assert best is not None
    return best[1], best[2], trials


def stream_spaces(spec: dict[str, Any], prep: Prepared, space: ClusterSpace
                  ) -> list[ClusterSpace]:
    """The stream monitor's candidate spaces: the batch's with ``stream.space``'s settings
    over it (a window holds a handful of selected inputs, so junk let in by a loose gate is
    enough for a cluster), then each ``choices.stream_space`` entry's over those (the
    validation streams pick one)."""
    extra = spec["stream"].get("space") or {}
    options = spec.get("choices", {}).get("stream_space") or [{}]
    if not extra and options == [{}]:
        return [space]
    return [fit_space(prep, **{**asdict(space), **extra, **option}) for option in options]


def describe_space(space: ClusterSpace) -> dict[str, Any]:
    return {"dims": space.dims, "variance": space.variance, "normalize": space.normalize,
            "whiten": space.whiten, "gate": space.gate, "class_spread": space.class_spread_,
            "min_norm": space.min_norm_, "norm_quantile": space.norm_quantile}


def set_aside(val: Pool, n: int, seed: int = 0) -> tuple[Pool, Pool]:
    """(the validation pool less ``n`` of its ID images, those ``n`` images): the ID
    background fitted on images the validation streams never draw, so the false alarms the
    validation budget counts are out of sample, as they are on test; ``n`` = 0: one pool for
    both (the background then sees the validation streams' own ID images)."""
    if n <= 0:
        return val, val
    ids = val.rows_of(ID)
    if n >= len(ids):
        raise NoveltyError(f"stream.background_images = {n}, but the validation split has "
                           f"{len(ids)} ID images: lower it or enlarge the pair's "
                           "data.validation_size")
    apart = np.zeros(len(val), dtype=bool)
    apart[np.random.default_rng([seed, 433]).choice(ids, size=n, replace=False)] = True
    return val.take(np.flatnonzero(~apart)), val.take(np.flatnonzero(apart))


def id_background(space: ClusterSpace, val: Pool) -> Background:
    """The rule's ID-background yardstick: the ID validation images in ``space``."""
    rows = val.rows_of(ID)
    return Background().fit(val.pvalues[rows], val.features[rows], space)


def space_label(space: ClusterSpace) -> str:
    """A stream space in a few words: its axes, whitening and domain gate."""
    return (f"{space.dims} axes{' whitened' if space.whiten else ''}, gate "
            f"{space.norm_quantile:g}")


def pick_min_size(space: ClusterSpace, rule: AlarmRule, s: dict[str, Any], q: float,
                  window: int, val: Pool, background: Background | None = None
                  ) -> tuple[int | None, list[dict[str, Any]]]:
    """The smallest ``m`` of the grid whose alarm rate on the novelty-free validation streams
    (ID only and ID + junk, every alarm counted) is within the validation budget per 10,000
    inputs (``stream.validation_false_alarms_per_10k``)."""
    budget = float(s.get("validation_false_alarms_per_10k", 0.0))
    streams = [(seed, junk_rate) for seed in range(s["validation_streams"])
               for junk_rate in (0.0, s["junk_rate"])]
    allowed = budget * len(streams) * s["validation_length"] / 1e4
    trials = []
    for m in sorted(s["min_size_grid"]):
        r = AlarmRule(**{**asdict(rule), "min_size": int(m)})
        mon = Monitor(space, r, q, window, s["check_every"], background=background)
        alarms = inputs = 0
        for seed, junk_rate in streams:
            st = stream(val, s["validation_length"], junk_rate, seed=10_000 + seed)
            alarms += len(mon.alarms(st))
            inputs += len(st.inputs)
            if alarms > allowed:
                break
        trials.append({"space": space_label(space), "q": q, "window": window,
                       "spread_factor": rule.spread_factor,
                       "background_alpha": rule.background_alpha, "min_size": int(m),
                       "validation_alarms": alarms,
                       "validation_inputs": inputs, "quiet": alarms <= allowed})
        if alarms <= allowed:
            return int(m), trials
    return None, trials


@dataclass
class StreamChoice:
    """The stream monitor's settings and how they did on the validation novelty streams."""

    q: float
    window: int
    rule: AlarmRule
    space: ClusterSpace
    background: Background
    within: float  # share of validation streams alarmed within done.delay_within
    median: float  # median validation delay
    trials: list[dict[str, Any]]


def pick_stream(spec: dict[str, Any], spaces: list[ClusterSpace], rule: AlarmRule,
                val: Pool, apart: Pool) -> StreamChoice:
    """The stream monitor's (space, q, window, rule): per (space, q, window, spread factor,
    background level) of the grid the smallest ``m`` within the validation false-alarm
    budget, then the setting whose validation novelty streams (the held-out classes'
    validation images at the target rate) alarm within ``done.delay_within`` inputs most
    often (ties: the shorter median delay, then the first in grid order). Each space's ID
    background comes from ``apart`` (the ID validation images the validation streams never
    draw; the test monitor uses the same)."""
    s, c = spec["stream"], spec["choices"]
    rate = float(spec.get("done", {}).get("rate", 0.05))
    within = float(spec.get("done", {}).get("delay_within", 200))
    backgrounds = [id_background(space, apart) for space in spaces]
    grid = [(k, float(q), int(window), float(factor), alpha)
            for k in range(len(spaces)) for q in c["stream_q"]
            for window in sorted(c["stream_window"], reverse=True)
            for factor in c.get("spread_factor", [rule.spread_factor])
            for alpha in c.get("background_alpha", [rule.background_alpha])]
    trials, best = [], None
    for k, q, window, factor, alpha in grid:
        space, background = spaces[k], backgrounds[k]
        base = AlarmRule(**{**asdict(rule), "spread_factor": factor,
                            "background_alpha": None if alpha is None
                            else float(alpha)})
        m, quiet = pick_min_size(space, base, s, q, window, val, background)
        trials += quiet
        if m is None:
            continue
        picked = AlarmRule(**{**asdict(base), "min_size": m})
        mon = Monitor(space, picked, q, window, s["check_every"],
                      background=background)
        delays = []
        for seed in range(int(s.get("validation_novelty_streams", s["validation_streams"]))):
            st = stream(val, s["validation_length"], s["junk_rate"], 30_000 + seed,
                        rate, tuple(s["validation_onset"]))
            delays.append(delay(st, mon.alarms(st, stop_at=st.onset))[0])
        median = float(np.median(delays))
        share = float(np.mean(np.asarray(delays) <= within))
        trials[-1].update(validation_median_delay=median, validation_within=share)
        log.info("%s, q %g, window %d, spread factor %g, background level %s, min_size "
                 "%d: validation streams alarmed within %g: %.2f, median delay %.0f",
                 space_label(space), q, window, factor, alpha, m, within, share, median)
        if best is None or (-share, median) < (-best.within, best.median):
            best = StreamChoice(q, window, picked, space, background, share, median, trials)
    if best is None:
        raise NoveltyError(f"every min_size in {s['min_size_grid']} raised more alarms than "
                           "the validation budget on the novelty-free validation streams at "
                           "every space, q, window and spread factor: widen min_size_grid in "
                           "the novelty config")
    return best


def batch_rows(spec: dict[str, Any], pool: Pool, space: ClusterSpace, rule: AlarmRule,
               q: float) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    b = spec["batch"]
    rows, shown = [], {}
    for seed in tqdm(range(b["seeds"]), desc="batch buffers"):
        buf = batch(pool, b["n_id"], b["n_novel"], b["n_junk"], seed)
        for method in b["methods"]:
            d = discover(buf.pvalues, buf.features, space, rule, q, method, seed)
            kind, truth = buf.kind[d.selected], buf.truth[d.selected]
            novel = kind == NOVEL
            n_novel = max(1, int((buf.kind == NOVEL).sum()))
            in_new = np.zeros(len(kind), dtype=bool)
            for c in d.new_classes:
                in_new[c.members] = True
            row = {"seed": seed, "method": method, "selected": int(d.selected.sum()),
                   "selected_id": int((kind == ID).sum()), "selected_novel": int(novel.sum()),
                   "selected_junk": int((kind == JUNK).sum()),
                   "novel_in_buffer": int((buf.kind == NOVEL).sum()),
                   "clusters": len(d.clusters), "new_classes": len(d.new_classes),
                   "true_classes": len(pool.novel_classes),
                   "fdr": float((kind == ID).mean()) if len(kind) else 0.0,
                   **agreement(truth[novel], d.labels[novel]),
                   "novel_discovered": float(in_new[novel].sum() / n_novel),
                   "junk_share_in_new": float((kind[in_new] == JUNK).mean()) if in_new.any()
                   else float("nan"),
                   "id_share_in_new": float((kind[in_new] == ID).mean()) if in_new.any()
                   else float("nan"),
                   "verdicts": "; ".join(f"{len(c.members)}:{c.reason or 'new'}"
                                         for c in d.clusters)}
            rows.append(row)
            if seed == 0 and method == "hdbscan":
                shown = {"buffer": buf, "discovery": d}
    return rows, shown


def stream_rows(spec: dict[str, Any], pool: Pool, monitor: Monitor) -> list[dict[str, Any]]:
    s = spec["stream"]
    rows = []
    jobs = [(rate, seed) for rate in s["rates"] for seed in range(s["streams"])]
    jobs += [(0.0, seed) for seed in range(s["streams"])]
    for rate, seed in tqdm(jobs, desc="streams"):
        for junk_rate in ((s["junk_rate"],) if rate > 0 else (0.0, s["junk_rate"])):
            st = stream(pool, s["length"], junk_rate, seed, rate, tuple(s["onset"]))
            alarms = monitor.alarms(st, stop_at=st.onset if st.onset is not None else None)
            lag, before = delay(st, alarms)
            rows.append({"novel_rate": rate, "junk_rate": junk_rate, "seed": seed,
                         "length": s["length"], "onset": st.onset,
                         "novel_class": st.novel_class,
                         "delay": lag, "false_alarms": before if rate > 0 else len(alarms),
                         "inputs_watched": (st.onset if rate > 0 and st.onset is not None
                                            else s["length"]),
                         "first_alarm": alarms[0] if alarms else None})
    return rows


def detector_options(spec: dict[str, Any], extra: list[str]) -> list[str | None]:
    """The detector options a run picks from on validation: the protocol's ``detectors``
    unless the command line names one (None: the run config's own detector)."""
    named = any(o.lstrip("+~").split("=", 1)[0] == "detector" for o in extra)
    if named or not spec.get("detectors"):
        return [None]
    return [str(d) for d in spec["detectors"]]


def run(name: str, extra: list[str], out_root: Path = REPO / "results" / "novelty",
        argv: list[str] | None = None) -> Path:
    """Everything for ``novelty=<name>``; returns the report written."""
    return run_protocol(name, load_protocol(name), extra, out_root, argv)


def run_protocol(name: str, spec: dict[str, Any], extra: list[str], out_root: Path,
                 argv: list[str] | None = None) -> Path:
    """Everything for the protocol ``spec`` (a novelty config's content)."""
    cfgs = [run_config(spec, ([f"detector={o}"] if o else []) + extra)
            for o in detector_options(spec, extra)]
    # the run's compute settings (threads, oneDNN) as the runner pins them: checkpoints and
    # representations are keyed by them, so the protocol reuses what `ood-bench` cached
    with compute.pinned(compute.ComputeSettings.from_config(cfgs[0])):
        return _run(name, spec, cfgs, out_root, argv)


@dataclass
class Candidate:
    """One detector fitted, its pools scored and every choice made for it on validation."""

    det_id: str
    cfg: DictConfig
    test: Pool
    val: Pool
    space: ClusterSpace
    q: float
    space_trials: list[dict[str, Any]]
    stream: StreamChoice

    @property
    def validation_nmi(self) -> float:
        return max(t["validation_nmi"] for t in self.space_trials)

    def summary(self) -> dict[str, Any]:
        return {"detector": self.det_id, "validation_within": self.stream.within,
                "validation_median_delay": self.stream.median,
                "validation_nmi": self.validation_nmi}


def fit_candidate(spec: dict[str, Any], cfg: DictConfig, prep: Prepared, keys: list[str]
                  ) -> Candidate:
    """The config's detector fitted and scored, then the batch and stream choices made on
    the validation pool."""
    det_id, p = fitted_pvalues(cfg, prep, keys)
    test, val = pools(spec, prep, p)
    val, apart = set_aside(val, int(spec["stream"].get("background_images", 0)))
    rule = AlarmRule(**spec.get("rule", {}))
    space, q, space_trials = pick_space(spec, prep, val, rule)
    choice = pick_stream(spec, stream_spaces(spec, prep, space), rule, val, apart)
    return Candidate(det_id, cfg, test, val, space, q, space_trials, choice)


def pick_detector(candidates: list[Candidate]) -> Candidate:
    """The candidate whose validation novelty streams alarm within the target most often
    (ties: the shorter median delay, then the higher validation NMI, then config order)."""
    return min(candidates, key=lambda c: (-c.stream.within, c.stream.median,
                                          -c.validation_nmi))


def _run(name: str, spec: dict[str, Any], cfgs: list[DictConfig], out_root: Path,
         argv: list[str] | None) -> Path:
    t0 = time.perf_counter()
    # read before this run writes its files: the record names the code that made them
    commit = git_commit()
    cfg = cfgs[0]
    prep = prepare(cfg, need_maps=False)  # the detector does not change the splits
    named = [*spec["novel_sets"], *spec["validation_novel_sets"], *spec["junk_sets"]]
    missing = [s for s in named if ood_key(s) not in prep.reps]
    if missing or VALIDATION not in prep.reps or VALIDATION_OOD not in prep.reps:
        raise NoveltyError(
            f"configs/novelty/{name}.yaml: pair {cfg.pair.name} lacks "
            + (f"the OOD set(s) {', '.join(missing)}" if missing else
               "validation splits (set data: {with_validation: true} in its pair config and "
               "give it a `validation:` set)"))
    keys = [VALIDATION, VALIDATION_OOD, ID_TEST, *[ood_key(s) for s in named]]
    candidates = []
    for c in cfgs:
        cand = fit_candidate(spec, c, prep, keys)
        candidates.append(cand)
        log.info("detector %s: validation streams alarmed within target %.2f, median delay "
                 "%.0f, validation NMI %.3f", cand.det_id, cand.stream.within,
                 cand.stream.median, cand.validation_nmi)
    best = pick_detector(candidates)
    det_id, cfg, test, val = best.det_id, best.cfg, best.test, best.val
    rule, choice = AlarmRule(**spec.get("rule", {})), best.stream
    monitor = Monitor(choice.space, choice.rule, choice.q, choice.window,
                      spec["stream"]["check_every"], background=choice.background)
    b_rows, shown = batch_rows(spec, test, best.space, rule, best.q)
    s_rows = stream_rows(spec, test, monitor)
    out = out_root / (spec.get("name") or name) / det_id
    out.mkdir(parents=True, exist_ok=True)
    batch_frame, stream_frame = pd.DataFrame(b_rows), pd.DataFrame(s_rows)
    with atomic_path(out / BATCH_CSV) as tmp:
        batch_frame.to_csv(tmp, index=False)
    with atomic_path(out / STREAM_CSV) as tmp:
        stream_frame.to_csv(tmp, index=False)
    record = {
        "command": "ood-bench-novelty " + shlex.join(argv if argv is not None else sys.argv[1:]),
        "git_commit": commit, "detector": det_id,
        "detector_spec": OmegaConf.to_container(cfg.detectors[det_id], resolve=True),
        "detector_trials": [c.summary() for c in candidates],
        "pair": str(cfg.pair.name), "backbone": str(cfg.backbone.name),
        "checkpoint": display_path(prep.backbone.checkpoint),
        "checkpoint_sha256": prep.backbone.sha256,
        "backbone_recipe": OmegaConf.to_container(cfg.backbone.recipe, resolve=True),
        "id_accuracy": float((prep.reps[ID_TEST].predictions
                              == prep.reps[ID_TEST].labels).mean()),
        "q": best.q, "stream_q": choice.q, "stream_window": choice.window,
        "rule": asdict(rule), "stream_rule": asdict(choice.rule),
        "stream_space": describe_space(choice.space),
        "space_trials": best.space_trials,
        "stream_trials": choice.trials,
        "space": describe_space(best.space),
        "pools": {"test": {k: int((test.kind == v).sum()) for k, v in
                           (("id", ID), ("novel", NOVEL), ("junk", JUNK))},
                  "validation": {k: int((val.kind == v).sum()) for k, v in
                                 (("id", ID), ("novel", NOVEL), ("junk", JUNK))},
                  "background_id": choice.background.n_},
        "protocol": {k: spec[k] for k in ("batch", "stream", "choices")},
        "seconds": time.perf_counter() - t0,
    }
    with atomic_path(out / THRESHOLDS_JSON) as tmp:
        tmp.write_text(json.dumps(record, indent=2, default=str) + "\n")
    if shown:
        write_projection(out, shown["buffer"], shown["discovery"], best.space)
    write_report(out, spec, record, batch_frame, stream_frame)
    return out / REPORT_MD

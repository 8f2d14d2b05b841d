"""``ood-bench-tables table=<name>``: regenerate a paper table from ood-bench runs.

A table config (``configs/table/<name>.yaml``) lists the runs (Hydra overrides), the rows
(label -> detector option) and the columns (run, OOD set), plus published reference values.
An agreement table (``kind: agreement``) lists methods by their canonical id (``msp``,
``energy``, ... as in each adapter's ``LIBRARY_INFO.methods``) and the libraries to compare
(every pair of them); each method's option in each library is found from the detector configs.
Each run goes through the normal runner, so every cache is reused; the table puts our number
beside the published one with the difference, and says "missing" (with the reason) where a
source or dataset is not available, never inventing a value.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf, open_dict

from adapters.registry import library_info
from benchmark.config_groups import (
    CONFIG_DIR,
    ConfigError,
    detector_entries,
    group_options,
    is_suite,
    read_option,
)
from benchmark.paths import REPO, in_repo, scrub_paths
from benchmark.pipeline.errors import DataUnavailable
from benchmark.render import CONVENTION, frame_markdown, latex_tabular, tex_escape
from benchmark.results import GROUP_ORDER, ID_TEST, load_scores, ood_key, read_manifest
from benchmark.runner.tuning import SUFFIX as TUNED_SUFFIX
from benchmark.stats import bootstrap

# what "agree" means in an agreement table, unless the table says otherwise
AGREE_IF = {"spearman": 0.99, "auroc_difference": 0.005}


class TableError(ValueError):
    """A table config that names what does not exist; the message says what does."""


def load_table(name: str) -> dict[str, Any]:
    try:
        return read_option("table", name)
    except ConfigError as exc:
        raise TableError(str(exc)) from exc


def method_option(library: str, method: str) -> str:
    """The detector option of ``library`` that runs canonical method ``method``."""
    info = library_info(library)
    found = []
    for option in group_options("detector"):
        if not option.startswith(f"{library}/") or is_suite("detector", option):
            continue
        for entry in detector_entries(option).values():
            if entry.get("library") == library and info.method(entry.get("name")) == method:
                found.append(option)
    if not found:
        raise TableError(f"{library} has no detector option for method {method!r}")
    exact = [o for o in found if o == f"{library}/{method}"]
    if len(found) > 1 and not exact:
        raise TableError(f"{library}: several options run method {method!r}: {found}")
    return (exact or found)[0]


def agreement_pairs(spec: dict[str, Any]) -> dict[str, tuple[str, ...]]:
    """``{label: (option of each library, in the table's order)}``. A method is a canonical id
    resolved in every library, a list of options (one per library), or a mapping
    ``{method: <id>, <library>: <option>}`` that overrides the option of some libraries (a
    variant aligned with the others' defaults)."""
    libs = list(spec["libraries"])
    out = {}
    for label, method in spec["methods"].items():
        if isinstance(method, str):
            out[label] = tuple(method_option(lib, method) for lib in libs)
        elif isinstance(method, dict):
            out[label] = tuple(str(method[lib]) if lib in method
                               else method_option(lib, str(method["method"])) for lib in libs)
        else:
            if len(method) != len(libs):
                raise TableError(f"method {label!r}: {len(method)} options for {len(libs)} "
                                 f"libraries {libs}")
            out[label] = tuple(str(o) for o in method)
    return out


def library_pairs(spec: dict[str, Any]) -> list[tuple[int, int]]:
    """Every pair of the table's libraries (by index), each compared once."""
    n = len(spec["libraries"])
    return [(i, j) for i in range(n) for j in range(i + 1, n)]


def run_config(overrides: list[str], detector_options: list[str], extra: list[str]):
    """The run's config with every requested detector (each composed from its own option)."""
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        composed = [compose("config", overrides=[*overrides, f"detector={option}", *extra])
                    for option in detector_options]
    merged: dict[str, Any] = {}
    for one in composed:
        merged.update(OmegaConf.to_container(one.detectors))
    cfg = composed[0]
    with open_dict(cfg):
        cfg.detectors = merged
        if cfg.backbone.get("checkpoint"):  # committed checkpoints work from any directory
            cfg.backbone.checkpoint = in_repo(cfg.backbone.checkpoint)
    return cfg


def detector_id(option: str) -> str:
    return next(iter(detector_entries(option)))


def row_detector(row: str | dict[str, Any]) -> tuple[str, str]:
    """(detector option, detector id in the run) of a table row: an option, or ``{option:
    ..., tuned: true}`` for the option's tuned rows (its run needs ``tune=true``)."""
    if isinstance(row, dict):
        option = str(row["option"])
        det = detector_id(option)
        return option, det + TUNED_SUFFIX if row.get("tuned") else det
    return str(row), detector_id(str(row))


@dataclass
class RunResult:
    """One table run (one seed of it): metric rows, manifest, output folder, OOD-set groups."""

    frame: pd.DataFrame
    manifest: dict[str, Any]
    out: Path
    groups: dict[str, str]  # every OOD set of the pair (skipped ones too) -> near/far/...
    seed: int | None = None
    _resampled: dict[tuple[str, str], dict[str, np.ndarray]] = field(default_factory=dict)
    _draws: bootstrap.SharedDraws | None = None
    # a run assembled from the results store: its scores come from there
    score_loader: Callable[[str], dict[str, np.ndarray]] | None = None

    def scores(self, det: str) -> dict[str, np.ndarray]:
        if self.score_loader is not None:
            return self.score_loader(det)
        return load_scores(self.out, det)

    def resampled(self, det: str, ood: str) -> dict[str, np.ndarray] | None:
        """Bootstrap metrics of ``det`` on one OOD set, with the run's own draws (the ones
        behind its metrics.csv intervals); None when the run made none or saved no scores."""
        if (det, ood) not in self._resampled:
            cfg = self.manifest.get("config") or {}
            boot = cfg.get("bootstrap") or {}
            n, seed = int(boot.get("resamples") or 0), int(cfg.get("seed", 0))
            scores = self.scores(det)
            if not n or ID_TEST not in scores or ood_key(ood) not in scores:
                return None
            id_s, ood_s = scores[ID_TEST], scores[ood_key(ood)]
            if self._draws is None:  # the run's draws, made once for all its detectors
                self._draws = bootstrap.SharedDraws(n, seed)
            self._resampled[(det, ood)] = bootstrap.resampled_metrics(
                id_s, ood_s, self._draws(ID_TEST, len(id_s)),
                self._draws(ood_key(ood), len(ood_s)))
        return self._resampled[(det, ood)]

    @property
    def level(self) -> float:
        cfg = self.manifest.get("config") or {}
        return float((cfg.get("bootstrap") or {}).get("level", 0.95))


def run_seeds(run_spec: dict[str, Any], spec: dict[str, Any]) -> dict[int | None, list[str]]:
    """``{seed: extra overrides}`` of one table run. ``seeds: [0, 1, 2]`` (the run's, else the
    table's) trains one backbone per seed (``backbone.recipe.seed``); a mapping ``{seed:
    [overrides]}`` adds that seed's own overrides (e.g. its committed checkpoint); no seeds:
    the run once, as configured."""
    seeds = run_spec.get("seeds", spec.get("seeds"))
    if not seeds:
        return {None: []}
    if isinstance(seeds, dict):
        return {int(k): [f"backbone.recipe.seed={k}", *v] for k, v in seeds.items()}
    return {int(k): [f"backbone.recipe.seed={k}"] for k in seeds}


def from_store(store_dir: Path, cfg: Any, where: str) -> tuple[pd.DataFrame, dict[str, Any],
                                                             Callable[[str], dict]]:
    """The rows of every detector of ``cfg`` from the results store, whichever runs (sweeps,
    machines) made them: matched on the setting and on each detector's own key. Returns the
    rows, a manifest of one of those runs and a score loader."""
    from benchmark import store
    from benchmark.runner.resume import detector_key, setting_key

    specs = OmegaConf.to_container(cfg.detectors, resolve=True)
    wanted = {det: detector_key(spec) for det, spec in specs.items()}
    wanted.update({det + TUNED_SUFFIX: key + TUNED_SUFFIX for det, key in wanted.items()})
    rows = store.find_rows(store_dir, setting_key(cfg), wanted)
    missing = [det for det, key in wanted.items()
               if not det.endswith(TUNED_SUFFIX) and key not in set(rows["detector_key"])]
    if missing:
        raise TableError(f"{where}: the store at {store_dir} has no run of "
                         f"{', '.join(missing)} in this setting (same data, backbone and "
                         "settings; same library versions); run them, e.g. `ood-bench -m "
                         "detector=...` with the table's overrides, or build the table "
                         "without --store")
    by_key = {key: det for det, key in wanted.items()}
    rows = rows.assign(detector=rows["detector_key"].map(by_key))  # this table's ids
    run_of = dict(zip(rows["detector"], rows["run_id"], strict=False))
    manifest = json.loads(rows["manifest"].iloc[0])

    def loader(det: str) -> dict[str, np.ndarray]:
        return store.scores(store_dir, run_of[det], det) if det in run_of else {}

    return store.metric_columns(rows).reset_index(drop=True), manifest, loader


def _run_all(name: str, spec: dict[str, Any], options: list[str], extra: list[str],
             out_root: Path, runs_root: Path, left_out: dict[str, dict[int, str]],
             store_dir: Path | None = None) -> dict[str, list[RunResult]]:
    """Every run of the table (each of its seeds) through the normal runner (caches reused),
    or read from the results store (``store_dir``); manifests kept under
    ``<name>_runs/<run>[/seed_<s>]``. A seed whose checkpoint file does not exist yet is left
    out, with the reason in ``left_out[run][seed]``."""
    from benchmark.runner.run import run

    results: dict[str, list[RunResult]] = {}
    for run_name, run_spec in spec["runs"].items():
        for seed, seed_overrides in run_seeds(run_spec, spec).items():
            overrides = [*run_spec["overrides"], *seed_overrides]
            missing = missing_checkpoint([*overrides, *extra])
            if missing and seed is not None:  # a seed whose checkpoint is not trained yet
                print(f"[{name}] run {run_name}: seed {seed} left out: {missing}")
                left_out.setdefault(run_name, {})[seed] = missing
                continue
            cfg = run_config(overrides, options, extra)
            sub = run_name if seed is None else f"{run_name}/seed_{seed}"
            out = runs_root / name / sub
            groups = {k: str(v.get("group", "")) for k, v in cfg.pair.ood.items()}
            keep = out_root / f"{name}_runs" / sub
            if store_dir is not None:
                keep.mkdir(parents=True, exist_ok=True)
                print(f"[{name}] run {sub} from the store: {' '.join(overrides + extra)}")
                frame, manifest, loader = from_store(store_dir, cfg, f"table {name}, run {sub}")
                frame.to_csv(keep / "metrics.csv", index=False)
                (keep / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
                results.setdefault(run_name, []).append(
                    RunResult(frame, manifest, keep, groups, seed, score_loader=loader))
                continue
            print(f"[{name}] run {sub}: {' '.join(overrides + extra)}")
            try:
                frame = run(cfg, out)
            except DataUnavailable as exc:  # an optional run whose data is not here
                if not run_spec.get("optional"):
                    raise
                print(f"[{name}] run {sub} left out: {exc}")
                left_out.setdefault(run_name, {})[seed] = str(exc)
                continue
            keep.mkdir(parents=True, exist_ok=True)
            for f in ("manifest.json", "metrics.csv", "metrics.md"):
                (keep / f).write_bytes((out / f).read_bytes())
            results.setdefault(run_name, []).append(
                RunResult(frame, read_manifest(out), out, groups, seed))
        if run_name not in results and not run_spec.get("optional"):
            raise TableError(f"table {name}, run {run_name}: no seed has its checkpoint "
                             f"({left_out[run_name]})")
    return results


def missing_checkpoint(overrides: list[str]) -> str | None:
    """Why the run cannot be made: its ``backbone.checkpoint`` file does not exist (None: it
    exists, or the backbone is trained by the harness)."""
    path = None
    for o in overrides:  # the last override wins, as in Hydra
        if o.startswith("backbone.checkpoint="):
            path = o.split("=", 1)[1]
    if not path or path == "null" or Path(in_repo(path)).exists():
        return None
    return (f"checkpoint {path} not found (train it with scripts/train_backbone.py, see "
            "scripts/reproduce_cifar10.sh seeds)")


def build(name: str, extra: list[str], out_root: Path = REPO / "results" / "tables",
          spec: dict[str, Any] | None = None, runs_root: Path = REPO / "outputs" / "tables",
          store_dir: Path | None = None) -> Path:
    """Write the table ``name`` (Markdown, CSV, LaTeX) under ``out_root``, its runs made now
    or, with ``store_dir``, read from the results store."""
    spec = spec or load_table(name)
    left_out: dict[str, dict[int, str]] = {}
    shutil.rmtree(out_root / f"{name}_runs", ignore_errors=True)  # no stale run copies
    if spec.get("kind", "cells") == "anomaly":
        from benchmark.studies import anomaly_table

        spec = anomaly_table.expand_runs(spec)
        rows = {label: row_detector(r) for label, r in spec["detectors"].items()}
        options = list(dict.fromkeys(option for option, _ in rows.values()))
        runs = _run_all(name, spec, options, extra, out_root, runs_root, left_out, store_dir)
        long = anomaly_table.records(spec, runs, rows)
        markdown = anomaly_table.markdown(spec, long, runs, rows, extra, out_root, left_out)
        wide = anomaly_table.wide(long, list(rows))
    elif spec.get("kind", "cells") == "agreement":
        options = list(dict.fromkeys(o for pair in agreement_pairs(spec).values() for o in pair))
        runs = _run_all(name, spec, options, extra, out_root, runs_root, left_out, store_dir)
        long = agreement_records(spec, runs)
        markdown = _agreement_markdown(spec, long, runs, extra, left_out)
        wide = _agreement_wide(long)
    else:
        options = list(dict.fromkeys(row_detector(r)[0] for r in spec["detectors"].values()))
        runs = _run_all(name, spec, options, extra, out_root, runs_root, left_out, store_dir)
        long = cell_records(spec, runs)
        markdown = _markdown(spec, long, runs, extra, left_out)
        wide = _wide(long, [c["label"] for c in spec["columns"]])
    out_root.mkdir(parents=True, exist_ok=True)
    long.to_csv(out_root / f"{name}.csv", index=False)
    (out_root / f"{name}.md").write_text(markdown)
    (out_root / f"{name}.tex").write_text(_latex(wide))
    scrub_paths(out_root)  # committed: skip reasons and manifests name no machine path
    return out_root / f"{name}.md"


def _one_set(frame: pd.DataFrame, det: str, ood: str, metric: str, skipped: dict[str, str]
             ) -> tuple[float | None, str]:
    hit = frame[(frame.detector == det) & (frame.ood_dataset == ood)]
    if len(hit) and hit.status.iloc[0] == "ok":
        value = hit[metric].iloc[0] if metric in hit else None
        if value is None or pd.isna(value):  # e.g. fpr_at_alpha of a detector with no level
            return None, f"missing: {det} has no {metric}"
        return float(value), "ok"
    if ood in skipped:
        return None, "missing: dataset not available here (needs a download)"
    if len(hit):
        return None, f"failed: {hit.error.iloc[0]}"
    return None, "missing: not in the run"


def _members(col: dict[str, Any], res: RunResult) -> list[str]:
    """The OOD sets a column averages (one set, or a group's sets available in the run)."""
    if "ood" in col:
        return [col["ood"]]
    skipped = res.manifest.get("skipped_ood_sets", {})
    return [o for o, g in res.groups.items() if g == col["group"] and o not in skipped]


def _column_value(col: dict[str, Any], det: str, metric: str, res: RunResult
                  ) -> tuple[float | None, str]:
    """One OOD set's metric, or the mean over the available sets of an OOD group."""
    skipped = res.manifest.get("skipped_ood_sets", {})
    if "ood" in col:
        return _one_set(res.frame, det, col["ood"], metric, skipped)
    members = _members(col, res)
    if not members:
        return None, f"missing: no {col['group']} OOD set available here"
    values = [_one_set(res.frame, det, o, metric, skipped) for o in members]
    bad = [status for _, status in values if status != "ok"]
    if bad:
        return None, bad[0]
    return float(np.mean([v for v, _ in values])), "ok"


def _column_interval(col: dict[str, Any], det: str, metric: str, res: RunResult
                     ) -> tuple[float | None, float | None]:
    """The bootstrap interval of a column's value in one run: per resample, the mean over
    the column's sets (the ID rows drawn once for all of them), then its percentiles."""
    if metric not in bootstrap.METRICS:  # a rate with its own interval in the rows, if any
        if "ood" not in col:
            return None, None
        hit = res.frame[(res.frame.detector == det) & (res.frame.ood_dataset == col["ood"])]
        lo, hi = f"{metric}_lo", f"{metric}_hi"
        if len(hit) and lo in hit and hi in hit and not hit[[lo, hi]].iloc[0].isna().any():
            return float(hit[lo].iloc[0]), float(hit[hi].iloc[0])
        return None, None
    parts = [res.resampled(det, o) for o in _members(col, res)]
    if not parts or any(p is None for p in parts):
        return None, None
    return bootstrap.percentile_interval(np.mean([p[metric] for p in parts], axis=0),
                                         res.level)


def cell_records(spec: dict[str, Any], runs: dict[str, list[RunResult]]) -> pd.DataFrame:
    """Long table: one record per (row, column) with ours (the mean over the run's seeds),
    its sd over seeds (several seeds) or its 95 % bootstrap interval (one seed), published,
    difference, status."""
    published = spec.get("published", {})
    records = []
    for label, row in spec["detectors"].items():
        det = row_detector(row)[1]
        for j, col in enumerate(spec["columns"]):
            metric = col.get("metric", spec.get("metric", "auroc"))
            reps = runs[col["run"]]
            found = [_column_value(col, det, metric, res) for res in reps]
            bad = [status for v, status in found if v is None]
            ours = None if bad else float(np.mean([v for v, _ in found]))
            sd = (float(np.std([v for v, _ in found], ddof=1))
                  if ours is not None and len(found) > 1 else None)
            lo = hi = None
            if ours is not None and len(reps) == 1:
                lo, hi = _column_interval(col, det, metric, reps[0])
            pub = (published.get(label) or [None] * len(spec["columns"]))[j]
            records.append({"row": label, "column": col["label"], "metric": metric,
                            "ours": ours, "sd": sd, "seeds": len(reps), "lo": lo, "hi": hi,
                            "published": pub,
                            "difference": None if ours is None or pub is None else ours - pub,
                            "status": bad[0] if bad else "ok"})
    return pd.DataFrame(records)


def agreement_records(spec: dict[str, Any], runs: dict[str, list[RunResult]]) -> pd.DataFrame:
    """Same method from two libraries on the same run (every pair of the table's libraries):
    AUROC of each and score agreement.

    Spearman's rho is computed on the scores of every sample both scored (ID test and all OOD
    sets together), and per OOD set on that set plus the ID test set.
    """
    from scipy.stats import spearmanr

    libs = spec["libraries"]
    limits = spec.get("agree_if", AGREE_IF)
    options = agreement_pairs(spec)
    records = []
    for run_name, res in ((n, r) for n, reps in runs.items() for r in reps):
        for method, opts in options.items():
            for i, j in library_pairs(spec):
                (lib_a, lib_b), (det_a, det_b) = ((libs[i], libs[j]),
                                                  (detector_id(opts[i]), detector_id(opts[j])))
                rec: dict[str, Any] = {"run": run_name, "seed": res.seed, "method": method,
                                       "library A": lib_a, "library B": lib_b,
                                       "detector A": det_a, "detector B": det_b}
                rec.update(_agreement(res, lib_a, det_a, lib_b, det_b, limits, spearmanr))
                records.append(rec)
    return pd.DataFrame(records)


def _agreement(res: RunResult, lib_a: str, det_a: str, lib_b: str, det_b: str,
               limits: dict[str, float], spearmanr: Any) -> dict[str, Any]:
    frame = res.frame
    ok, rec = {}, {}
    for key, lib, det in (("A", lib_a, det_a), ("B", lib_b, det_b)):
        rows = frame[frame.detector == det]
        ok[key] = rows[rows.status == "ok"].set_index("ood_dataset").auroc
        if not len(ok[key]):
            errors = rows.error.dropna()
            rec["status"] = (f"failed: {lib}: {errors.iloc[0]}" if len(errors)
                             else f"missing: {lib} not in the run")
    sets = sorted(set(ok["A"].index) & set(ok["B"].index))
    sa, sb = res.scores(det_a), res.scores(det_b)
    if "status" in rec or not sets or ID_TEST not in sa or ID_TEST not in sb:
        rec.setdefault("status", "missing: no OOD set scored by both")
        return rec
    diff = (ok["A"][sets] - ok["B"][sets]).abs()
    keys = [ID_TEST] + [ood_key(s) for s in sets]
    rho_all = spearmanr(np.concatenate([sa[k] for k in keys]),
                        np.concatenate([sb[k] for k in keys])).statistic
    rho_sets = [spearmanr(np.concatenate([sa[ID_TEST], sa[ood_key(s)]]),
                          np.concatenate([sb[ID_TEST], sb[ood_key(s)]])).statistic
                for s in sets]
    agree = rho_all >= limits["spearman"] and diff.max() <= limits["auroc_difference"]
    return {"AUROC A": float(ok["A"][sets].mean()), "AUROC B": float(ok["B"][sets].mean()),
            "AUROC difference": float((ok["A"][sets] - ok["B"][sets]).mean()),
            "max abs AUROC difference over sets": float(diff.max()),
            "Spearman rho (all samples)": float(rho_all),
            "min Spearman rho over sets": float(np.min(rho_sets)),
            "OOD sets": len(sets), "verdict": "agree" if agree else "DISAGREE",
            "status": "ok"}


def _cell(r: pd.Series) -> str:
    if r.ours is None or pd.isna(r.ours):
        return "missing" if r.status.startswith("missing") else "failed"
    text = f"{r.ours:.4f}"
    if r.get("sd") is not None and not pd.isna(r.get("sd")):
        text += f" ± {r.sd:.4f}"
    elif r.get("lo") is not None and not pd.isna(r.get("lo")):
        text += f" [{r.lo:.3f}, {r.hi:.3f}]"
    if r.published is not None and not pd.isna(r.published):
        text += f" ({r.published:.4f}, {r.difference:+.4f})"
    return text


def _wide(long: pd.DataFrame, cols: list[str]) -> pd.DataFrame:
    wide = long.assign(cell=long.apply(_cell, axis=1)).pivot(index="row", columns="column",
                                                             values="cell")
    return wide.loc[list(dict.fromkeys(long.row)), cols]


def _runs_section(spec: dict, runs: dict[str, list[RunResult]],
                  left_out: dict[str, dict[int, str]]) -> list[str]:
    lines = ["## Runs", ""]
    for run_name, reps in runs.items():
        for res in reps:
            sub = run_name if res.seed is None else f"{run_name}/seed_{res.seed}"
            m = res.manifest
            lines.append(f"- **{sub}**: backbone {m['backbone']['name']}, ID test accuracy "
                         f"{m['backbone']['id_test_accuracy']:.4f}, checkpoint sha256 "
                         f"`{m['backbone']['sha256'][:16]}…`; manifest: "
                         f"[{spec['name']}_runs/{sub}/manifest.json]"
                         f"({spec['name']}_runs/{sub}/manifest.json)")
        for seed, why in left_out.get(run_name, {}).items():
            lines.append(f"- **{run_name}/seed_{seed}**: left out: {why}")
        res = reps[0]
        m = res.manifest
        skipped = m.get("skipped_ood_sets", {})
        rank = {g: i for i, g in enumerate(GROUP_ORDER)}
        present = {g for g in res.groups.values() if g}
        for group in sorted(present, key=lambda g: (rank.get(g, 99), g)):
            used = [o for o, g in res.groups.items() if g == group and o not in skipped]
            lines.append(f"  - {group} OOD sets: {', '.join(used) or 'none'}")
        for ood, reason in skipped.items():
            lines.append(f"  - {ood} skipped: {reason}")
    return lines


def _header(spec: dict, extra: list[str]) -> list[str]:
    return [f"# {spec.get('title', spec['name'])}", "",
            f"Command: `ood-bench-tables table={spec['name']}{' ' if extra else ''}"
            f"{' '.join(extra)}`", "", f"> {CONVENTION}", ""]


def _markdown(spec: dict, long: pd.DataFrame, runs: dict[str, list[RunResult]],
              extra: list[str], left_out: dict[str, dict[int, str]]) -> str:
    cols = [c["label"] for c in spec["columns"]]
    lines = _header(spec, extra) + [
        "Cells: ours (published, ours - published). Ours is the mean ± sd over the run's "
        "backbone seeds where it has several (listed under Runs), else the one run's value "
        "[95 % stratified-bootstrap interval]. 'missing' = the dataset or source is not "
        "available on this machine (see below), never filled in by hand. A group column "
        "(near / far) is the mean over the group's OOD sets available here (listed below); "
        "its interval resamples the ID rows once for all of them.",
        "", frame_markdown(_wide(long, cols)), ""]
    if spec.get("notes"):
        lines += [spec["notes"].strip(), ""]
    lines += _runs_section(spec, runs, left_out)
    notes = sorted(set(long.status) - {"ok"})
    if notes:
        lines += ["", "## Not ok", ""] + [f"- {n}" for n in notes]
    return "\n".join(lines) + "\n"


AGREEMENT_COLUMNS = ["AUROC A", "AUROC B", "AUROC difference",
                     "max abs AUROC difference over sets", "Spearman rho (all samples)",
                     "min Spearman rho over sets", "verdict"]
PAIR = ["run", "method", "library A", "library B"]


def _agreement_wide(long: pd.DataFrame) -> pd.DataFrame:
    cols = AGREEMENT_COLUMNS
    wide = long.copy()
    for c in cols:
        if c not in wide:
            wide[c] = None
    wide["verdict"] = [v if s == "ok" else s for v, s in zip(wide.verdict, wide.status,
                                                               strict=True)]
    wide = _over_seeds(wide, cols)
    index = PAIR if wide.run.nunique() > 1 else PAIR[1:]
    return wide.set_index(index)[[*cols, "seeds"]]


def _over_seeds(wide: pd.DataFrame, cols: list[str]) -> pd.DataFrame:
    """One row per (run, method, library pair) over the run's seeds: AUROCs and their
    difference as means, the largest per-set difference, the smallest rho; 'agree' only if
    every seed agrees (a seed's failure is the verdict)."""
    out = []
    for key, grp in wide.groupby(PAIR, sort=False):
        rec: dict[str, Any] = {**dict(zip(PAIR, key, strict=True)), "seeds": len(grp)}
        for c in cols:
            values = pd.to_numeric(grp[c], errors="coerce") if c != "verdict" else None
            if c == "verdict":
                bad = [v for v in grp[c] if v != "agree"]
                rec[c] = bad[0] if bad else "agree"
            elif values.isna().any():
                rec[c] = None
            elif c.startswith("max"):
                rec[c] = float(values.max())
            elif "rho" in c:
                rec[c] = float(values.min())
            else:
                rec[c] = float(values.mean())
        out.append(rec)
    return pd.DataFrame(out)


def _agreement_markdown(spec: dict, long: pd.DataFrame, runs: dict[str, list[RunResult]],
                        extra: list[str], left_out: dict[str, dict[int, str]]) -> str:
    limits = spec.get("agree_if", AGREE_IF)
    lines = _header(spec, extra) + [
        "Same method, same cached representations, every pair of libraries (A, B). AUROC is "
        "the mean over the OOD sets both scored; Spearman's rho compares the two score vectors "
        "sample by sample (all samples; and per OOD set with the ID test set, the minimum "
        "shown). Verdict "
        f"'agree' needs rho >= {limits['spearman']} and every per-set |AUROC difference| <= "
        f"{limits['auroc_difference']}.", "", frame_markdown(_agreement_wide(long)), ""]
    if spec.get("notes"):
        lines += [spec["notes"].strip(), ""]
    lines += _runs_section(spec, runs, left_out)
    return "\n".join(lines) + "\n"


def _latex(wide: pd.DataFrame) -> str:
    def esc(v: Any) -> str:
        if isinstance(v, float):
            v = "" if pd.isna(v) else f"{v:.4f}"
        return tex_escape(v)

    flat = wide.reset_index()
    return latex_tabular([esc(c) for c in flat.columns],
                         ([esc(v) for v in values] for values in flat.itertuples(index=False)),
                         "l" * wide.index.nlevels + "r" * len(wide.columns))



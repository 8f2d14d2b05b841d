"""What a sweep costs beside the limit, in one run per pair (``results/perf/<pair>.{json,md}``).

    OOD_BENCH_DATA_ROOT=../shared/data python scripts/bench_sweep.py [cifar10] [mnist]

For every cache-capable detector of every library (those that do not run the model again):

* (a) ``forward_pass_s``: one forward pass over every image involved (fit, calibration, ID
  test, each OOD set; feature maps too, since a selected detector reads them), nothing cached;
  the mean of a pass just before (b) and one just after, since this machine's speed drifts
  within minutes (both are kept);
* (d) ``detector_compute_s``: the sum of the detectors' own fit + scoring time in (b);
* (b) ``sweep_s``: the whole sweep in one process (``ood-bench`` with every one of those
  detectors: data, backbone, extraction, detectors, intervals, tables), in a fresh cache;
* (c) ``naive_s``: each detector as a user without the harness calls it: its library's
  ``fit(loader)`` / ``predict(x)`` run the model over the images on every call, so each
  detector gets its own forward passes (fit split and every scored split; the calibration
  split too when the detector reads it), then the same library computation.

Library imports are made first, timed apart (``import_seconds``), and charged to none of
(a)-(d). Optional analyses are off (``analysis.inhouse=false``), as are the score cache and the
results store, so every number is computed here.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from omegaconf import OmegaConf, open_dict

from adapters.base import Consumes
from adapters.registry import import_library
from benchmark import compute
from benchmark.config_groups import expand_patterns
from benchmark.paths import REPO, scrub_paths
from benchmark.pipeline.features import forward_pass
from benchmark.render import CONVENTION, markdown_table
from benchmark.representations import Representations
from benchmark.runner.evaluate import build, evaluate_detector
from benchmark.runner.prepare import data_and_backbone, prepare
from benchmark.runner.run import run
from benchmark.studies.paper_tables import run_config

PAIRS = {
    "cifar10": ["pair=cifar10_openood", "backbone=resnet20",
                "backbone.checkpoint=results/checkpoints/resnet20_cifar10.pt",
                "data.fit_size=5000", "data.max_id_test=2000", "data.max_ood=2000"],
    "mnist": ["pair=mnist", "backbone=lenet"],
}
LIBRARIES = "detector=pytorch_ood/*,openood/*,oodeel/*,inhouse/*"
FIXED = ["detector_time_limit_s=300", "cache_scores=false", "analysis.inhouse=false",
         "store=null", "resume=false"]
ARRAYS = ("logits", "features", "labels", "layer_stats", "feature_maps")
# what makes the most expensive detectors expensive, read from the libraries' sources, and the
# cheapest correct way to get their scores
HOW_TO_CALL = {
    "openood_klm": "OpenOOD's postprocess calls sklearn's pairwise_distances_argmin_min with "
    "a Python metric (scipy.stats.entropy), one call per (sample, class) pair: no batch size "
    "or thread count helps. The same scores come from the KL matrix in one numpy expression "
    "(sum p log(p / m_c), min over classes); pytorch-ood's KLMatching is vectorised but scores "
    "differently (another template), so it is no substitute",
    "openood_rankfeat": "batched SVDs of the feature maps inside OpenOOD's postprocess (plus "
    "power iterations when `accelerate` is set); pytorch-ood's RankFeat gave the same AUROCs "
    "on every OOD set (results/cifar10_libraries/sweep_rows.csv) at less than half the time "
    "here: use it",
    "pytorch_ood_openmax": "pytorch-ood's numpy OpenMax loops over rows and their top-alpha "
    "classes, one scipy exponweib.cdf call per (row, class); vectorising w_score per class "
    "over rows gives the same scores. OpenOOD's OpenMax is faster but scores differently",
    "pytorch_ood_rankfeat": "a batched SVD (torch.linalg) of each feature map: cost grows with "
    "the map size; more threads help, batch size hardly",
    "inhouse_neuralfp": "fit: per-layer sorted reference values (and its bands) over the fit "
    "split; scoring is cheap",
}


class TrackedReps(Representations):
    """Representations that note whether a detector read their arrays (the calibration
    split: only detectors that calibrate read it, and only they pay its forward pass)."""

    read = False

    def __getattribute__(self, name: str) -> Any:
        if name in ARRAYS:
            object.__setattr__(self, "read", True)
        return super().__getattribute__(name)


def cache_capable(specs: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The detectors that do not run the model again (those a cached forward pass serves)."""
    out = {}
    for det, spec in specs.items():
        try:
            if build(spec).consumes != Consumes.MODEL:
                out[det] = spec
        except Exception:  # noqa: BLE001 (cannot be built here: not part of the sweep)
            continue
    return out


def compute_seconds(frame: pd.DataFrame) -> pd.DataFrame:
    """Per detector of a run: its fit + scoring seconds (every split) and its status."""
    rows = []
    for det, grp in frame.groupby("detector", sort=False):
        first = grp.iloc[0]
        score = float(grp["score_seconds"].fillna(0).sum()) + float(
            first.get("id_score_seconds") or 0)
        rows.append({"detector": det, "library": first["library"],
                     "fit_s": float(first["fit_seconds"] or 0), "score_s": score,
                     "ok": bool((grp["status"] == "ok").all()),
                     "import_s": float(first.get("import_seconds") or 0)})
    out = pd.DataFrame(rows)
    out["compute_s"] = out["fit_s"] + out["score_s"]
    return out


def own_ratio(r: dict[str, Any]) -> float:
    """The sweep against its own forward pass (extraction, cache writes included) and the
    detectors' compute, all timed in the same minutes."""
    return r["sweep_s"] / (r["sweep_parts_s"]["extraction_seconds"] + r["detector_compute_s"])


def forward_all(model: Any, sets: dict[str, Any], transform: Any, device: torch.device,
                maps: bool, batch_size: int) -> float:
    """(a): seconds of one forward pass over every image involved (the training set aside)."""
    t0 = time.perf_counter()
    for name, images in sets.items():
        if name != "train":
            forward_pass(model, images, transform, device, batch_size, with_maps=maps)
    return time.perf_counter() - t0


def forward_before(cfg: Any, maps: bool) -> float:
    """(a) on the run's images and loaded model, before the sweep has cached anything."""
    sets, _, _, transform, backbone, device, _, _ = data_and_backbone(cfg)
    return forward_all(backbone.model, sets, transform, device, maps, int(cfg.data.batch_size))


def bench(pair: str, workdir: Path, extra: list[str], detectors: str = LIBRARIES,
          naive_too: bool = True) -> dict[str, Any]:
    overrides = [*PAIRS[pair], *extra]
    options = expand_patterns([detectors])[0].split("=", 1)[1].split(",")
    t0 = time.perf_counter()
    imports = {lib: import_library(lib) for lib in ("pytorch_ood", "openood", "oodeel",
                                                    "inhouse")}
    print(f"[{pair}] imports: {imports} ({time.perf_counter() - t0:.1f} s)")
    if "backbone.checkpoint" not in " ".join(overrides):  # train (or find) it once, outside
        cfg0 = run_config(overrides, ["pytorch_ood/msp"], FIXED)
        prep0 = prepare(cfg0, False)
        overrides.append(f"backbone.checkpoint={prep0.backbone.checkpoint}")
    # (b) the whole sweep, one process, fresh cache: every cache-capable detector
    cfg_b = run_config(overrides, options, [*FIXED, f"cache_dir={workdir / 'cache-b'}"])
    specs = cache_capable(OmegaConf.to_container(cfg_b.detectors, resolve=True))
    with open_dict(cfg_b):
        cfg_b.detectors = specs
    maps = any(build(s).consumes == Consumes.FEATURE_MAPS for s in specs.values())
    print(f"[{pair}] {len(specs)} cache-capable detectors; feature maps: {maps}")
    # (a) before (b) too: this machine's speed drifts by up to a quarter within minutes, so
    # (a) is the mean of a pass just before and one just after the sweep (both kept)
    cfg_a = cfg_b.copy()
    with open_dict(cfg_a):
        cfg_a.cache_dir = str(workdir / "cache-a")  # (b)'s cache stays fresh
    with compute.pinned(compute.ComputeSettings.from_config(cfg_a)):
        before = forward_before(cfg_a, maps)
    t0 = time.perf_counter()
    frame = run(cfg_b, workdir / "sweep")
    sweep_s = time.perf_counter() - t0
    manifest = json.loads((workdir / "sweep" / "manifest.json").read_text())
    timings = manifest["timings"]
    per_det = compute_seconds(frame)

    with compute.pinned(compute.ComputeSettings.from_config(cfg_b)):
        prep = prepare(cfg_b, maps)  # from cache-b: the sets and the model, nothing computed
        model, device, bs = prep.backbone.model, prep.device, int(cfg_b.data.batch_size)
        after = forward_all(model, prep.sets, prep.transform, device, maps, bs)  # (a) again
        forward_s = (before + after) / 2
        # (c) naive: each detector its own forward passes
        naive = {}
        for det, spec in (specs if naive_too else {}).items():
            needs_maps = build(spec).consumes == Consumes.FEATURE_MAPS
            t0 = time.perf_counter()
            fresh = {name: forward_pass(model, prep.sets[name], prep.transform, device, bs,
                                        with_maps=needs_maps)
                     for name in ("fit", *prep.scored_keys)}
            forward = time.perf_counter() - t0
            calibration = TrackedReps(**{f.name: getattr(prep.reps["calibration"], f.name)
                                         for f in dataclasses.fields(Representations)})
            calibration.read = False
            fresh["calibration"] = calibration
            out = evaluate_detector(spec, dataclasses.replace(prep, reps=fresh), bs,
                                    cfg_b.detector_time_limit_s)
            if calibration.read:
                t0 = time.perf_counter()
                forward_pass(model, prep.sets["calibration"], prep.transform, device, bs)
                forward += time.perf_counter() - t0
            own = out.fit_seconds + sum(out.score_seconds.values())
            naive[det] = {"forward_s": forward, "compute_s": own, "total_s": forward + own,
                          "ok": not out.errors}
            print(f"[{pair}] naive {det}: {forward + own:.1f} s")
    detector_s = float(per_det["compute_s"].sum())
    naive_s = (float(pd.DataFrame.from_dict(naive, orient="index")["total_s"].sum())
               if naive else float("nan"))
    result = {
        "pair": pair, "command": "OOD_BENCH_DATA_ROOT=../shared/data python "
        f"scripts/bench_sweep.py {pair}" + (f" --extra {' '.join(extra)}" if extra else "")
        + (f" --detectors '{detectors}'" if detectors != LIBRARIES else "")
        + ("" if naive_too else " --no-naive"),
        "overrides": [*overrides, *FIXED],
        "detectors": len(specs), "detectors_ok": int(per_det["ok"].sum()),
        "images_forward": int(sum(len(s) for n, s in prep.sets.items() if n != "train")),
        "feature_maps": maps, "device": str(device), "threads": torch.get_num_threads(),
        "cpu": platform.processor() or platform.machine(),
        "import_seconds": imports,
        "forward_pass_s": forward_s, "forward_pass_before_after_s": [before, after],
        "detector_compute_s": detector_s, "sweep_s": sweep_s,
        "naive_s": naive_s,
        "sweep_parts_s": {k: timings.get(k) for k in ("data_seconds", "backbone_seconds",
                                                     "extraction_seconds", "detectors_seconds",
                                                     "bootstrap_seconds", "total_seconds")},
        "overhead_ratio": sweep_s / (forward_s + detector_s),
        "overhead_ratio_without_intervals": (sweep_s - float(timings["bootstrap_seconds"]))
        / (forward_s + detector_s),
        "naive_over_sweep": naive_s / sweep_s, "sweep_over_forward": sweep_s / forward_s,
        "per_detector": [{**r, "naive_s": naive.get(r["detector"], {}).get("total_s")}
                         for r in per_det.to_dict("records")],
    }
    return result


def _seconds(v: float, unit: str = "") -> str:
    return "not measured (--no-naive)" if v != v else f"{v:.1f}{unit}"


def markdown(r: dict[str, Any]) -> str:
    per = pd.DataFrame(r["per_detector"]).sort_values("compute_s", ascending=False)
    total = r["detector_compute_s"]
    top = per.head(8)
    parts = r["sweep_parts_s"]
    lines = [
        f"# Sweep cost, {r['pair']}: {r['detectors']} cache-capable detectors", "",
        "Command:", "", "```bash", r["command"], "```", "",
        f"Overrides: `{' '.join(r['overrides'])}`; device {r['device']}, {r['threads']} "
        f"threads, {r['cpu']}; {r['images_forward']} images per forward pass (feature maps: "
        f"{r['feature_maps']}).", "", f"> {CONVENTION}", "",
        markdown_table(["measure", "seconds", "note"], [
            ["(a) one forward pass over every image", f"{r['forward_pass_s']:.1f}",
             "nothing cached" + ("; mean of {:.1f} just before and {:.1f} just after (b)"
                                 .format(*r["forward_pass_before_after_s"])
                                 if "forward_pass_before_after_s" in r else "")],
            ["(d) detectors' own fit + scoring, summed", f"{total:.1f}",
             f"{r['detectors_ok']}/{r['detectors']} ok"],
            ["(b) the whole sweep in one process", f"{r['sweep_s']:.1f}",
             f"extraction {parts['extraction_seconds']:.1f}, detectors "
             f"{parts['detectors_seconds']:.1f}, intervals {parts['bootstrap_seconds']:.1f}, "
             f"data {parts['data_seconds']:.1f}, backbone {parts['backbone_seconds']:.1f}"],
            ["(c) naive: each detector through its library on the images",
             _seconds(r["naive_s"]), "a forward pass per detector and split"],
            ["library imports (apart)", f"{sum(r['import_seconds'].values()):.1f}",
             ", ".join(f"{k} {v:.2f}" for k, v in r["import_seconds"].items())],
        ], right=(1,)), "",
        markdown_table(["ratio", "value", "target"], [
            ["harness overhead (b) / ((a) + (d))", f"{r['overhead_ratio']:.2f}", "<= 1.1"],
            ["the same, (b) less its bootstrap intervals (which neither (a) nor (d) does)",
             f"{r['overhead_ratio_without_intervals']:.2f}", "—"],
            ["(b) / (its own extraction + (d)): every part timed within (b), so the drift "
             "between (a) and (b) drops out", f"{own_ratio(r):.2f}", "—"],
            ["naive / harness (c) / (b)", _seconds(r["naive_over_sweep"], "x"), ">= 10x"],
            ["sweep / forward pass (b) / (a)", f"{r['sweep_over_forward']:.1f}x", "—"],
        ], right=(1,)), "",
        "Detectors whose own compute dominates (share of (d)):", "",
        markdown_table(["detector", "library", "fit s", "score s", "share of (d)", "naive s"], [
            [d.detector, d.library, f"{d.fit_s:.2f}", f"{d.score_s:.2f}",
             f"{d.compute_s / total:.1%}",
             "—" if d.naive_s is None or d.naive_s != d.naive_s else f"{d.naive_s:.1f}"]
            for d in top.itertuples()],
            right=(2, 3, 4, 5)), "",
        "Why they cost what they cost, and the cheapest correct way to get their scores:", "",
        *[f"- `{d}`: {HOW_TO_CALL[d]}." for d in top.detector if d in HOW_TO_CALL], "",
        f"Every detector's numbers: [{r['pair']}.json]({r['pair']}.json) (`per_detector`).", "",
    ]
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("pairs", nargs="*", default=list(PAIRS), choices=list(PAIRS))
    p.add_argument("--out", type=Path, default=REPO / "results" / "perf")
    p.add_argument("--detectors", default=LIBRARIES, help="detector=<options> (a smaller set)")
    p.add_argument("--extra", nargs="*", default=[], help="more overrides (smaller sizes)")
    p.add_argument("--no-naive", action="store_true",
                   help="skip (c) (most of the time): (a), (b), (d) only, written as "
                   "<pair>.overhead.{json,md}")
    p.add_argument("--render", action="store_true",
                   help="only rewrite the Markdown from the JSON already there")
    args = p.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    if args.render:
        for pair in args.pairs:  # <pair>.json and its other runs (<pair>.overhead*.json)
            for path in sorted(args.out.glob(f"{pair}.*json")):
                r = json.loads(path.read_text())
                r.setdefault("overhead_ratio_without_intervals", (
                    r["sweep_s"] - r["sweep_parts_s"]["bootstrap_seconds"])
                    / (r["forward_pass_s"] + r["detector_compute_s"]))
                path.write_text(json.dumps(r, indent=2) + "\n")
                path.with_suffix(".md").write_text(markdown(r))
        return
    for pair in args.pairs:
        with tempfile.TemporaryDirectory(prefix=f"bench-{pair}-") as tmp:
            r = bench(pair, Path(tmp), args.extra, args.detectors, not args.no_naive)
        stem = f"{pair}.overhead" if args.no_naive else pair
        (args.out / f"{stem}.json").write_text(json.dumps(r, indent=2) + "\n")
        (args.out / f"{stem}.md").write_text(markdown(r))
        scrub_paths(args.out)
        print(f"{args.out / stem}.md: overhead {r['overhead_ratio']:.2f}, naive/sweep "
              f"{r['naive_over_sweep']:.1f}x, sweep/forward {r['sweep_over_forward']:.1f}x")


if __name__ == "__main__":
    main()

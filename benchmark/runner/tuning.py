"""Hyper-parameter tuning on the validation split (OpenOOD's protocol, ``tune=true``).

A detector config may carry a ``search`` space (``{param: [values, ...]}``, e.g. ReAct's
percentile, ODIN's temperature and noise). With tuning on, every point of its grid is fitted on
the usual fit split and scored on the validation splits only (ID rows held out of the
calibration block, OOD rows disjoint from every test set); the point with the highest
validation AUROC (the first one on ties, in grid order) is then run on the test splits as
``<detector id>_tuned``, beside the default row. Nothing of the test splits is seen before.
Scores of every trial go through the score cache like any other.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from typing import Any

from omegaconf import DictConfig

from benchmark.pipeline.metrics import compute_metrics
from benchmark.runner import score_cache
from benchmark.runner.evaluate import cached_outcome, error_text
from benchmark.runner.prepare import VALIDATION, VALIDATION_OOD, Prepared

SUFFIX = "_tuned"


def without_search(spec: dict[str, Any]) -> dict[str, Any]:
    """The spec a detector is built (and its scores cached) from: no search space."""
    return {k: v for k, v in spec.items() if k != "search"}


def grid(search: dict[str, list[Any]]) -> list[dict[str, Any]]:
    """Every combination of the search space, the first parameter varying slowest."""
    names = list(search)
    for name in names:
        if not isinstance(search[name], list) or not search[name]:
            raise ValueError(f"search space of {name!r} must be a non-empty list, got "
                             f"{search[name]!r}")
    return [dict(zip(names, values, strict=True))
            for values in itertools.product(*(search[n] for n in names))]


@dataclass
class Tuned:
    """The trials of one detector and the parameters picked (None: every trial failed)."""

    search: dict[str, list[Any]]
    trials: list[dict[str, Any]] = field(default_factory=list)
    picked: dict[str, Any] | None = None

    def record(self) -> dict[str, Any]:
        """What the manifest keeps: the space, each trial's validation AUROC, the pick."""
        return {"search": self.search, "trials": self.trials, "picked": self.picked,
                "metric": "validation AUROC"}

    @property
    def error(self) -> str:
        errors = [t["error"] for t in self.trials if t.get("error")]
        return f"every tuning trial failed; first: {errors[0] if errors else 'none ran'}"


def tune(spec: dict[str, Any], prep: Prepared, cfg: DictConfig) -> Tuned:
    """Fit and score every point of ``spec['search']`` on the validation splits."""
    core = without_search(spec)
    result = Tuned(spec["search"])
    keys = [VALIDATION, VALIDATION_OOD]
    rep_keys = {k: prep.reps[k].key for k in ("fit", "calibration", *keys)}
    best = -math.inf
    for point in grid(spec["search"]):
        trial = {**core, "params": {**(core.get("params") or {}), **point}}
        key = score_cache.score_key(trial, rep_keys, prep.device.type)
        out = cached_outcome(trial, key, prep, cfg, split_keys=keys)
        record: dict[str, Any] = {"params": point}
        if out.errors:
            record["error"] = next(iter(out.errors.values()))
        else:
            try:
                auroc = compute_metrics(out.scores[VALIDATION], out.scores[VALIDATION_OOD])[
                    "auroc"]
            except Exception as exc:
                record["error"] = error_text(exc)
            else:
                record["validation_auroc"] = auroc
                if auroc > best:
                    best, result.picked = auroc, point
        result.trials.append(record)
    return result


def tuned_spec(spec: dict[str, Any], picked: dict[str, Any]) -> dict[str, Any]:
    core = without_search(spec)
    return {**core, "params": {**(core.get("params") or {}), **picked}}

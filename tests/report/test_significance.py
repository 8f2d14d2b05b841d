"""The report's significance rules on fabricated runs with known answers: "better" only when
the paired test says so, "best detectors" = every detector not significantly below the top."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from benchmark.pipeline.metrics import compute_metrics
from benchmark.report import significance
from benchmark.report.summary import decide_performance, performance_rows
from benchmark.report.sweep import wide_table
from benchmark.results import collect, save_scores

N = 400
SETS = {"near1": "near", "far1": "far"}


def _scores(rng, shift: float, latent: dict[str, np.ndarray], noise: float = 1.0):
    """A detector: shared latent per sample + its own noise; OOD rows shifted by ``shift``."""
    out = {"id_test": latent["id_test"] + rng.normal(0, noise, N)}
    for name in SETS:
        out[f"ood/{name}"] = latent[name] + shift + rng.normal(0, noise, N)
    return out


def _write_run(path: Path, detectors: dict[str, tuple[str, dict]], seed: int) -> None:
    rows = []
    for det, (library, scores) in detectors.items():
        save_scores(path, det, scores)
        for name, group in SETS.items():
            m = compute_metrics(scores["id_test"], scores[f"ood/{name}"])
            rows.append({"library": library, "detector": det, "backbone": "b",
                         "id_dataset": "d", "ood_dataset": name, "ood_group": group,
                         "status": "ok", "error": "", "method": det, "n_id": N, **m})
    pd.DataFrame(rows).to_csv(path / "metrics.csv", index=False)
    (path / "manifest.json").write_text(json.dumps(
        {"seeds": {"backbone": seed, "split": 0}, "backbone": {"sha256": f"sha{seed}"}}))
    (path / ".hydra").mkdir()
    (path / ".hydra" / "overrides.yaml").write_text(f"- backbone.recipe.seed={seed}\n")


@pytest.fixture(scope="module")
def sweep(tmp_path_factory) -> Path:
    """Two seeds; library A: 'strong' (shift 1.2) and 'twin' (strong plus a little noise of
    its own: same AUROC); library B: 'weak' (shift 0.6) and 'close' (shift 1.18)."""
    root = tmp_path_factory.mktemp("sig")
    for seed in (0, 1):
        rng = np.random.default_rng(seed)
        latent = {k: rng.normal(0, 1, N) for k in ("id_test", *SETS)}
        strong = _scores(rng, 1.2, latent, 0.3)
        twin = {k: v + rng.normal(0, 0.05, N) for k, v in strong.items()}
        dets = {"strong": ("A", strong), "twin": ("A", twin),
                "weak": ("B", _scores(rng, 0.6, latent)),
                "close": ("B", _scores(rng, 1.18, latent, 0.3))}
        (root / str(seed)).mkdir()
        _write_run(root / str(seed), dets, seed)
    return root


def test_seeds_are_replicates_of_one_label(sweep) -> None:
    coll = collect(sweep)
    assert sorted(coll.rows.label.unique()) == ["close", "strong", "twin", "weak"]
    table = wide_table(coll.rows)
    assert (table["replicates"] == 2).all()
    per_seed = coll.rows[coll.rows.detector == "weak"].groupby("run").auroc.mean()
    assert table.loc["weak", "all"] == pytest.approx(per_seed.mean())
    assert table.loc["weak", "all_sd"] == pytest.approx(per_seed.std(ddof=1))


def test_best_detectors_keep_the_ties_and_drop_the_clearly_worse(sweep) -> None:
    coll = collect(sweep)
    best = significance.best_detectors(significance.Tester(coll), wide_table(coll.rows),
                                       coll.rows)
    verdict = dict(zip(best.label, best.tied_with_top, strict=True))
    assert not verdict["weak"]
    assert verdict["twin"] and verdict["close"]  # not distinguishable from the top
    assert best.iloc[0].difference == 0


def test_better_names_a_library_only_when_significant(sweep) -> None:
    coll = collect(sweep)
    tables = {"auroc": {("d", "b"): wide_table(coll.rows)}}
    rows = performance_rows(coll, tables)
    decide_performance(rows, coll)
    best = rows[0]
    assert best["compare"]["labels"]["A"] in ("strong", "twin")
    assert best["better"] == "tie"  # B's best ('close') is within noise of A's
    assert rows[1]["better"] == "not tested"  # the median row has no paired test
    # without 'close', B's best is 'weak': A is better, significantly
    weak_only = coll.rows[coll.rows.label != "close"]
    coll.rows = weak_only
    tables = {"auroc": {("d", "b"): wide_table(weak_only)}}
    rows = performance_rows(coll, tables)
    decide_performance(rows, coll)
    assert rows[0]["better"] == "A"


def test_a_test_needs_shared_samples(sweep) -> None:
    coll = collect(sweep)
    tester = significance.Tester(coll)
    assert tester.test("strong", "weak", ["near1", "far1"]).replicates == 2
    assert tester.test("strong", "weak", ["missing_set"]) is None

"""Measure what tests/adapters/test_oodeel.py asserts: the Oodeel adapter's scores (replayed
from the cache, or on the live model) against Oodeel called by hand on the images, and
Oodeel's metric helper against the harness's metrics. Writes results/oodeel/equivalence.md.

    python scripts/oodeel_equivalence.py [--out results/oodeel/equivalence.md]

The data are the test world (tests/world.py: a LeNet trained 2 epochs on 6,000 MNIST images,
fit on 2,000 training images, scored on 500 MNIST + 500 Fashion-MNIST test images).
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

import numpy as np
import torch

from benchmark.atomic import atomic_path
from benchmark.pipeline.metrics import compute_metrics
from benchmark.render import CONVENTION, frame_markdown
from tests.adapters.test_oodeel import CASES, adapter_scores, raw_oodeel_scores
from tests.world import build_world

REPO = Path(__file__).resolve().parents[1]
COMMAND = "python scripts/oodeel_equivalence.py"


def main() -> None:
    import pandas as pd
    from oodeel.eval.metrics import bench_metrics

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "results/oodeel/equivalence.md")
    args = parser.parse_args()
    root = Path(os.environ.get("OOD_BENCH_DATA_ROOT", REPO.parent / "shared" / "data"))
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as cache:
        world = build_world(root, Path(cache))
        n = world.n_id
        rows = []
        for case in CASES:
            ours, consumes = adapter_scores(world, case)
            theirs = raw_oodeel_scores(world, case)
            diff = np.abs(ours - theirs)
            a_ours = compute_metrics(ours[:n], ours[n:])["auroc"]
            a_theirs = compute_metrics(theirs[:n], theirs[n:])["auroc"]
            rows.append({"detector": case.id, "adapter reads": consumes.value,
                         "max abs diff": f"{diff.max():.2e}",
                         "max abs diff / max abs score":
                             f"{diff.max() / max(1.0, np.abs(theirs).max()):.2e}",
                         "rows differing > 1e-6": int((diff > 1e-6).sum()),
                         "AUROC adapter": f"{a_ours:.4f}",
                         "AUROC Oodeel by hand": f"{a_theirs:.4f}"})
        energy, _ = adapter_scores(world, CASES[2])
        ours = compute_metrics(energy[:n], energy[n:])
        metric_rows = []
        for step in (1, 4):
            theirs = bench_metrics((energy[:n], energy[n:]), metrics=["auroc", "fpr95tpr"],
                                   step=step)
            metric_rows.append({"Oodeel bench_metrics step": step,
                                "AUROC Oodeel": f"{theirs['auroc']:.4f}",
                                "AUROC harness": f"{ours['auroc']:.4f}",
                                "FPR@95TPR Oodeel": f"{theirs['fpr95tpr']:.4f}",
                                "FPR@95TPR harness": f"{ours['fpr95tpr']:.4f}"})
    text = "\n".join([
        "# Oodeel adapter vs Oodeel by hand", "", f"Command: `{COMMAND}`", "",
        f"> {CONVENTION}", "",
        "Each detector through the adapter (cached representations where it reads them, else "
        "a private copy of the live model) against Oodeel's own `fit(model, loader, "
        "feature_layers_id=..., head_layer_id='fc')` / `score(loader)` on the images. Data: "
        "the test world (tests/world.py; 2,000 MNIST fit images, 500 MNIST + 500 "
        "Fashion-MNIST test images, one thread).", "",
        frame_markdown(pd.DataFrame(rows).set_index("detector")), "",
        "## Metrics: Oodeel's `bench_metrics` vs the harness (Energy scores above)", "",
        "Oodeel integrates the ROC at thresholds every `step`-th percentile of the scores "
        "(default 4); the harness uses every distinct score.", "",
        frame_markdown(pd.DataFrame(metric_rows).set_index("Oodeel bench_metrics step")), ""])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(args.out) as tmp:
        tmp.write_text(text)
    print(text)


if __name__ == "__main__":
    main()

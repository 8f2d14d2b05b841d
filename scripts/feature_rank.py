"""Why Mahalanobis implementations can disagree: dead features and the covariance's rank.

    python scripts/feature_rank.py pair=mnist backbone=lenet

Prints, for the fit split's penultimate features of that run, how many dimensions are 0 on
every fit image (dead ReLUs) and the rank of the class-shared covariance that Mahalanobis
detectors invert (a singular one is inverted differently by pytorch-ood and OpenOOD).
"""

from __future__ import annotations

import sys

import numpy as np
from hydra import compose, initialize_config_dir

from benchmark.config_groups import CONFIG_DIR, check_overrides
from benchmark.runner.prepare import prepare


def main(overrides: list[str]) -> None:
    problem = check_overrides(overrides)
    if problem:
        sys.exit(problem)
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("config", overrides=[*overrides, "detector=pytorch_ood/msp"])
    fit = prepare(cfg, need_maps=False).reps["fit"]
    f, y = fit.features.astype(np.float64), fit.labels
    centred = np.concatenate([f[y == c] - f[y == c].mean(0) for c in np.unique(y)])
    cov = centred.T @ centred / len(f)
    print(f"{' '.join(overrides)}: {f.shape[0]} fit images, {f.shape[1]} features, "
          f"{int((f.max(0) == 0).sum())} dead (0 on every fit image); class-shared covariance "
          f"rank {np.linalg.matrix_rank(cov)} of {f.shape[1]}")


if __name__ == "__main__":
    main(sys.argv[1:])

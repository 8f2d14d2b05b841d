"""Seconds the bootstrap intervals add to a sweep, measured on the sweep's own shape.

    python scripts/bench_bootstrap.py --detectors 74 --sets 9 --n-id 2000 --n-ood 2000

Times ``benchmark.stats.bootstrap.intervals_of`` for every detector of a sweep of that shape
(all its OOD sets at once, as the runner calls it; scores drawn at random: the cost depends on
the sizes, the resample count and whether scores tie, not on the values), with the draws made
once per split as the runner does, on continuous scores and on scores rounded to 0.1 (many
ties, as p-values and saturated scores have). Prints the totals and the cost per cell.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from benchmark.stats import bootstrap


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--detectors", type=int, default=74)
    p.add_argument("--sets", type=int, default=9)
    p.add_argument("--n-id", type=int, default=2000)
    p.add_argument("--n-ood", type=int, default=2000)
    p.add_argument("--resamples", type=int, default=1000)
    args = p.parse_args()
    rng = np.random.default_rng(0)
    t0 = time.perf_counter()
    id_draws = bootstrap.draw(args.n_id, args.resamples, 0, "id_test")
    ood_draws = {f"ood/{k}": bootstrap.draw(args.n_ood, args.resamples, 0, f"ood/{k}")
                 for k in range(args.sets)}
    t_draw = time.perf_counter() - t0
    cells = args.detectors * args.sets
    print(f"{args.detectors} detectors x {args.sets} OOD sets ({args.n_id} ID, {args.n_ood} OOD "
          f"rows, {args.resamples} resamples): draws {t_draw:.1f} s")
    for label, digits in (("continuous scores", None), ("scores with ties", 1)):
        t1 = time.perf_counter()
        for _ in range(args.detectors):
            id_s = rng.normal(0, 1, args.n_id)
            ood = {k: rng.normal(1, 1, args.n_ood) for k in ood_draws}
            if digits is not None:
                id_s, ood = np.round(id_s, digits), {k: np.round(v, digits) for k, v in ood.items()}
            bootstrap.intervals_of(id_s, ood, id_draws, ood_draws)
        t_cells = time.perf_counter() - t1
        print(f"  {label}: intervals {t_cells:.1f} s ({1000 * t_cells / cells:.0f} ms per cell)")


if __name__ == "__main__":
    main()

#!/usr/bin/env bash
# Regenerates the committed MNIST results:
#   results/mnist/               the default run, timed from an empty cache, and a second run
#   multirun/mnist_pytorch_ood/  a sweep over every pytorch-ood detector (one job each)
#   multirun/mnist_openood/      a sweep over every OpenOOD postprocessor (needs OpenOOD)
#   multirun/mnist_oodeel/       a sweep over every Oodeel detector (needs Oodeel), report in
#                                results/mnist_oodeel/
#   results/mnist_seeds/         the default detectors and OpenOOD's counterparts over backbone
#                                seeds 0, 1, 2: the three sources compared (mean ± sd, paired tests)
#   results/reproducibility/     fresh-cache rerun and 1- vs 2-thread comparisons
#   results/mnist_inhouse/       the in-house detectors against every pytorch-ood and OpenOOD
#                                detector in the same runs, backbone seeds 0, 1, 2 (paired tests)
# Usage: bash scripts/reproduce_mnist.sh [default|seeds|reproducibility|pytorch_ood|openood|oodeel|inhouse|all]
set -euo pipefail
cd "$(dirname "$0")/.."
what=${1:-all}
EXTRA=("${@:2}")  # further overrides for the runs, e.g. compute.threads=1
export OOD_BENCH_CACHE=${OOD_BENCH_CACHE:-$HOME/.cache/ood-bench}
keep() {  # copy the human-facing outputs of one run (no scores, no .hydra, no logs)
  mkdir -p "$2"
  cp "$1"/metrics.csv "$1"/metrics.md "$1"/manifest.json "$2"/
  if [ -f "$1/analysis_inhouse.md" ]; then cp -r "$1/analysis_inhouse.md" "$1/inhouse" "$2"/; fi
}

if [[ $what == default || $what == all ]]; then
  mkdir -p "$HOME/.cache"  # an empty cache: the first run trains and extracts everything
  empty=$(mktemp -d "$HOME/.cache/ood-bench-fresh.XXXX")
  rm -f outputs/mnist_default_timing.txt
  for n in 1 2; do
    start=$(date +%s.%N)
    OOD_BENCH_CACHE=$empty ood-bench hydra.run.dir="outputs/mnist_default_run$n"
    echo "run $n: $(echo "$(date +%s.%N) - $start" | bc) s (cache: empty before run 1)" \
      >> outputs/mnist_default_timing.txt
  done
  keep outputs/mnist_default_run1 results/mnist
  cp outputs/mnist_default_timing.txt results/mnist/timing.txt
  rm -rf "$empty"
fi
if [[ $what == seeds || $what == all ]]; then
  openood=openood/msp,openood/mls,openood/ebo,openood/mds,openood/knn,openood/vim,openood/react,openood/odin
  rm -rf multirun/mnist_seeds  # job numbers change with the detector list: no stale jobs
  ood-bench -m backbone.recipe.seed=0,1,2 "detector=default,$openood,oodeel/default" \
    hydra.sweep.dir=multirun/mnist_seeds
  # --all measures ease of use and robustness again (without it the CSVs already in
  # results/mnist_seeds are kept: they do not depend on the seed)
  ood-bench-report multirun/mnist_seeds --out results/mnist_seeds --all
fi
if [[ $what == reproducibility || $what == all ]]; then
  # the same command in two fresh caches (bit-identical), and with 1 instead of 2 threads
  for name in fresh_a fresh_b threads1; do
    fresh=$(mktemp -d "$HOME/.cache/ood-bench-fresh.XXXX")
    extra=(); [[ $name == threads1 ]] && extra=(compute.threads=1)
    OOD_BENCH_CACHE=$fresh ood-bench hydra.run.dir="outputs/mnist_$name" "${extra[@]}"
    rm -rf "$fresh"
  done
  python scripts/compare_runs.py outputs/mnist_fresh_a outputs/mnist_fresh_b \
    --out results/reproducibility/mnist_fresh_rerun.md
  python scripts/compare_runs.py outputs/mnist_fresh_a outputs/mnist_threads1 \
    --out results/reproducibility/mnist_threads_1_vs_2.md
  python scripts/compare_runs.py results/mnist outputs/mnist_fresh_a \
    --out results/reproducibility/mnist_committed_vs_fresh.md
fi
if [[ $what == pytorch_ood || $what == all ]]; then
  ood-bench -m 'detector=pytorch_ood/*' hydra.sweep.dir=multirun/mnist_pytorch_ood
fi
if [[ $what == openood || $what == all ]]; then
  # capped sizes: some OpenOOD postprocessors (CFOOD's self-kNN, KLM) loop in Python per sample
  ood-bench -m 'detector=openood/*' hydra.sweep.dir=multirun/mnist_openood \
    data.fit_size=5000 data.max_id_test=2000 data.max_ood=2000
fi
if [[ $what == oodeel || $what == all ]]; then
  rm -rf multirun/mnist_oodeel
  ood-bench -m 'detector=oodeel/*' hydra.sweep.dir=multirun/mnist_oodeel
  ood-bench-report multirun/mnist_oodeel --out results/mnist_oodeel
fi
if [[ $what == inhouse || $what == all ]]; then
  # capped sizes as in the OpenOOD sweep (CFOOD, KLM loop in Python per sample); one run per
  # seed holds every detector, so every pair is tested on the same samples
  rm -rf multirun/mnist_inhouse
  ood-bench -m backbone.recipe.seed=0,1,2 detector=full_sweeps hydra.sweep.dir=multirun/mnist_inhouse \
    data.fit_size=5000 data.max_id_test=2000 data.max_ood=2000 detector_time_limit_s=600 \
    "${EXTRA[@]}"
  ood-bench-report multirun/mnist_inhouse --out results/mnist_inhouse \
    --command "bash scripts/reproduce_mnist.sh inhouse"
  keep multirun/mnist_inhouse/0_* results/mnist_inhouse/runs/seed_0  # with the analyses
  for s in 1 2; do
    mkdir -p results/mnist_inhouse/runs/seed_$s
    cp multirun/mnist_inhouse/${s}_*/{metrics.csv,metrics.md,manifest.json} \
      results/mnist_inhouse/runs/seed_$s/
  done
  python scripts/inhouse_vs_best.py multirun/mnist_inhouse \
    --out results/mnist_inhouse/inhouse_vs_best.md
fi

#!/usr/bin/env bash
# Regenerates the committed CIFAR-10 results (ResNet-20 trained by the harness):
#   results/checkpoints/resnet20_cifar10.{pt,json}  the checkpoint (sha256, accuracy, command)
#   results/cifar10/              default detectors on every CIFAR-10 OOD set, covariate shifts
#                                 and noise included, with the in-house analyses and a report
#   results/tables/openood_cifar10.*, library_agreement.*, inhouse_ablation.*   the paper tables
#                                 (need OpenOOD and Oodeel)
#   results/cifar10_libraries/    every detector of the four sources (capped sizes), report
#   results/checkpoints/resnet20_cifar10_s{1,2}.*  two more seeds (the tables' mean ± sd)
#   results/inhouse_cifar10/      the in-house detectors' analyses on the three seeds (validity,
#                                 per-class FPR, calibration size, galleries, screening)
# Usage: bash scripts/reproduce_cifar10.sh [train|seeds|benchmark|tables|libraries|inhouse|all]
# On 2 CPU cores: training ~75 min (resumable: rerun after an interruption), the rest ~1 h.
set -euo pipefail
cd "$(dirname "$0")/.."
what=${1:-all}
export OOD_BENCH_CACHE=${OOD_BENCH_CACHE:-$HOME/.cache/ood-bench}
ckpt=results/checkpoints/resnet20_cifar10.pt

if [[ $what == train || $what == all ]]; then
  python scripts/train_backbone.py pair=cifar10 backbone=resnet20 --export "$ckpt"
fi
if [[ $what == seeds || $what == all ]]; then
  # ~75 min each on 2 CPU cores (resumable), minutes on a GPU
  for s in 1 2; do
    python scripts/train_backbone.py pair=cifar10 backbone=resnet20 backbone.recipe.seed=$s \
      --export "results/checkpoints/resnet20_cifar10_s$s.pt"
  done
fi
if [[ $what == benchmark || $what == all ]]; then
  bench="ood-bench pair=cifar10 backbone=resnet20 backbone.checkpoint=$ckpt \
hydra.run.dir=outputs/cifar10_default"
  $bench
  mkdir -p results/cifar10
  cp outputs/cifar10_default/{metrics.csv,metrics.md,manifest.json,analysis_inhouse.md} \
    results/cifar10/
  cp -r outputs/cifar10_default/inhouse results/cifar10/
  ood-bench-report outputs/cifar10_default --out results/cifar10/report --robustness \
    --command "$bench"
fi
if [[ $what == tables || $what == all ]]; then
  ood-bench-tables table=openood_cifar10 detector_time_limit_s=1200
  ood-bench-tables table=library_agreement detector_time_limit_s=1200
  ood-bench-tables table=inhouse_ablation
  for o in "pair=mnist backbone=lenet" \
           "pair=cifar10_openood backbone=resnet20 backbone.checkpoint=$ckpt"; do
    python scripts/feature_rank.py $o
  done > results/tables/library_agreement_feature_rank.txt
fi
if [[ $what == libraries || $what == all ]]; then
  # capped sizes (fit 5,000, 2,000 per test set) and a 5-minute limit per detector
  rm -rf multirun/cifar10_all  # job numbers change with the detector list: no stale jobs
  ood-bench -m 'detector=pytorch_ood/*,openood/*,oodeel/*,inhouse/*' pair=cifar10_openood backbone=resnet20 \
    backbone.checkpoint="$ckpt" data.fit_size=5000 data.max_id_test=2000 data.max_ood=2000 \
    detector_time_limit_s=300 hydra.sweep.dir=multirun/cifar10_all
  ood-bench-report multirun/cifar10_all --out results/cifar10_libraries --robustness
fi
if [[ $what == inhouse || $what == all ]]; then
  rm -rf multirun/inhouse_cifar10
  ood-bench -m pair=cifar10_openood backbone=resnet20 \
    backbone.checkpoint=$ckpt,results/checkpoints/resnet20_cifar10_s1.pt,results/checkpoints/resnet20_cifar10_s2.pt \
    detector=inhouse_with_references compute.threads=1 hydra.sweep.dir=multirun/inhouse_cifar10
  for run in multirun/inhouse_cifar10/[0-9]_*; do
    seed=${run##*/}; seed=seed_${seed%%_*}
    mkdir -p "results/inhouse_cifar10/$seed"
    cp "$run"/metrics.csv "$run"/metrics.md "$run"/manifest.json "$run"/analysis_inhouse.md \
      "results/inhouse_cifar10/$seed/"
    cp -r "$run"/inhouse "results/inhouse_cifar10/$seed/"
  done
  # shift vs failure on the covariate shifts (pair cifar10), seed 0
  ood-bench pair=cifar10 backbone=resnet20 backbone.checkpoint=$ckpt detector=inhouse/grouped \
    compute.threads=1 hydra.run.dir=outputs/inhouse_cifar10_shifts
  mkdir -p results/inhouse_cifar10/shifts_seed_0
  cp outputs/inhouse_cifar10_shifts/{metrics.csv,metrics.md,manifest.json,analysis_inhouse.md} \
    results/inhouse_cifar10/shifts_seed_0/
  cp -r outputs/inhouse_cifar10_shifts/inhouse results/inhouse_cifar10/shifts_seed_0/
fi

#!/usr/bin/env bash
# The larger variant of benchmarks/eil.py (issue 16), for a GPU machine with many cores: 200 demos per
# store instead of 50, 5000 TCC steps instead of 800, the BC / diffusion heads (benchmarks/success.py CPU sizes) at 3000 / 6000 policy
# steps instead of 1000, three training seeds per cell, and ACT beside BC and diffusion.
#
#   bash benchmarks/eil_gpu.sh [SCRATCH [RESULTS]]     # defaults: /tmp/eil_gpu, benchmarks/results
#
# Stages: stores + detection (EIL, plain TCC, random) for lift and pick_place_can -> imitation cells
# (raw / eil / oracle / clean) one after the other (each merges its row into RESULTS/eil.json as it
# finishes, so a run cut short keeps what it finished). Knobs (environment): DEMOS, TCC_STEPS,
# BC_STEPS, DIFFUSION_STEPS, SEEDS, WORKERS, PYTHON.
set -uo pipefail
cd "$(dirname "$0")/.."
SCRATCH=${1:-/tmp/eil_gpu}
RESULTS=${2:-benchmarks/results}
DEMOS=${DEMOS:-200}
TCC_STEPS=${TCC_STEPS:-5000}
BC_STEPS=${BC_STEPS:-3000}
DIFFUSION_STEPS=${DIFFUSION_STEPS:-6000}
SEEDS=${SEEDS:-"0 1 2"}
WORKERS=${WORKERS:-$(nproc)}
PY=${PYTHON:-python3}
mkdir -p "$RESULTS" "$SCRATCH/logs"
B=("$PY" benchmarks/eil.py --scratch "$SCRATCH" --results "$RESULTS" --demos "$DEMOS" --workers "$WORKERS")
stage() { echo "=== $(date -u +%H:%M:%S) $*"; }

for task in lift pick_place_can; do
  stage "stores + detection: $task"
  "${B[@]}" stores --task "$task" > "$SCRATCH/logs/stores_$task.log" 2>&1 || { echo "stores $task failed"; exit 1; }
  "${B[@]}" detect --task "$task" --steps "$TCC_STEPS" > "$SCRATCH/logs/detect_$task.log" 2>&1 || echo "detect $task failed"
done

for task in lift pick_place_can; do for head in bc diffusion act; do
  steps=$BC_STEPS; [ "$head" = diffusion ] && steps=$DIFFUSION_STEPS
  for seed in $SEEDS; do for data in raw eil oracle clean; do
    stage "imitate $task $head $data seed $seed ($steps steps)"
    "${B[@]}" imitate --task "$task" --head "$head" --data "$data" --seed "$seed" --policy-steps "$steps" \
      > "$SCRATCH/logs/imitate_${task}_${head}_${data}_$seed.log" 2>&1 || echo "imitate $task $head $data $seed failed"
  done; done
done; done
"${B[@]}" table

#!/usr/bin/env bash
# The larger variant of benchmarks/codec.py (issue 22), for a machine with a GPU and many cores: the
# codec table on the same 12 Lift episodes (its timings are then on an unloaded machine), and the
# policy check at benchmarks/success.py's image-BC size -- 200 lossless demos, 3000 training steps
# instead of 50 demos / 600 steps -- for the lossless store, the default codec and one lower quality.
#
#   bash benchmarks/codec_gpu.sh [SCRATCH]      # default /tmp/codecs_gpu; results merge into benchmarks/results/codec.*
#
# Knobs (environment): DEMOS, STEPS, ARMS, WORKERS, PYTHON.
set -euo pipefail
cd "$(dirname "$0")/.."
SCRATCH=${1:-/tmp/codecs_gpu}
DEMOS=${DEMOS:-200}
STEPS=${STEPS:-3000}
ARMS=${ARMS:-"blosc webp:90 webp:75"}
WORKERS=${WORKERS:-$(nproc)}
PY=${PYTHON:-python3}
mkdir -p "$SCRATCH/logs"
echo "=== $(date -u +%H:%M:%S) lossless demos ($DEMOS)"
robolearn collect lift --episodes "$DEMOS" --cameras agentview,robot0_eye_in_hand --image-size 84 \
  --image-codec blosc --workers "$WORKERS" --out "$SCRATCH/lift_$DEMOS.zarr" --no-progress
echo "=== $(date -u +%H:%M:%S) codec table"
"$PY" benchmarks/codec.py table --store "$SCRATCH/lift_$DEMOS.zarr" --scratch "$SCRATCH" --episodes 12 \
  --batches 100 > "$SCRATCH/logs/table.log" 2>&1
echo "=== $(date -u +%H:%M:%S) policy check"
# shellcheck disable=SC2086
"$PY" benchmarks/codec.py policy --store "$SCRATCH/lift_$DEMOS.zarr" --scratch "$SCRATCH" --demos "$DEMOS" \
  --steps "$STEPS" --workers "$WORKERS" --arms $ARMS > "$SCRATCH/logs/policy.log" 2>&1
echo "=== $(date -u +%H:%M:%S) done: benchmarks/results/codec.md"

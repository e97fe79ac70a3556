#!/usr/bin/env bash
# OOD-IL, the larger variant of benchmarks/oodil.py (the CPU run uses 64 demos, 300 encoder steps, 2 rounds
# x 6 imitator rollouts, BC 2000 / diffusion 1000 steps): 200 demos per task, 2000 encoder steps, 4 rounds x
# 16 rollouts, BC 5000 and diffusion 6000 steps, both heads on both tasks. The simulator and the imitator's
# rollouts stay on the CPU; the heads train on the GPU when one is present (train.device is "auto").
#   bash benchmarks/oodil_gpu.sh [scratch dir]
set -euo pipefail
cd "$(dirname "$0")/.."
SCRATCH=${1:-/tmp/oodil/bench_gpu}
for task in lift stack; do
  python benchmarks/oodil.py scores --task "$task" --demos 200 --pretrain-steps 2000 --workers 8 --scratch "$SCRATCH" \
    --pretrain-set pretrain.rounds=4 pretrain.rollouts=16
  python benchmarks/oodil.py imitate --task "$task" --head bc --demos 200 --steps 5000 --workers 8 --scratch "$SCRATCH"
  python benchmarks/oodil.py imitate --task "$task" --head diffusion --demos 200 --steps 6000 --workers 8 --scratch "$SCRATCH"
done

#!/usr/bin/env bash
# The larger variant of benchmarks/mdt.py (issue 14) for a GPU machine: the paper-sized transformer
# (latent 384, 4 encoder + 4 decoder layers), 400 demos, 30k steps per cell, every cell of the plan.
#   bash benchmarks/mdt_gpu.sh [SCRATCH]
set -euo pipefail
cd "$(dirname "$0")/.."
SCRATCH=${1:-/tmp/robolearn_mdt_gpu}
STEPS=${STEPS:-30000}
DEMOS=${DEMOS:-400}
export ROBOLEARN_MDT_OVERRIDES="policy.d_model=384 policy.n_heads=8 policy.encoder_layers=4 policy.decoder_layers=4"
python3 benchmarks/mdt.py store --demos "$DEMOS" --workers "$(nproc)" --scratch "$SCRATCH"
python3 benchmarks/mdt.py all --demos "$DEMOS" --steps "$STEPS" --workers 8 --scratch "$SCRATCH"

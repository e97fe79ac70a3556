#!/usr/bin/env bash
# GravMAD, the larger variant of benchmarks/gravmad.py for a GPU machine: the full 240-demo point-cloud
# store, the paper-sized heads (hidden 256, 256 scene points, 10x10x6 GravMap grid), 20k training steps,
# 50 episodes per cell, every cell (the dense diffusion head too). About 1-2 h on one GPU + 8 cores.
#   bash benchmarks/gravmad_gpu.sh [STORE]
set -euo pipefail
cd "$(dirname "$0")/.."
STORE="${1:-datasets/stores/multi_cube_pointcloud.zarr}"
if [ ! -d "$STORE" ]; then
  robolearn collect --recipe datasets/multi_cube_pointcloud.toml --episodes 240 --workers 8 --out "$STORE"
fi
python benchmarks/gravmad.py --store "$STORE" --steps 20000 --episodes 50 --workers 8 \
  --cells gravmad,oracle,no_gravmap,diffusion --size large --scratch runs/gravmad_gpu --results runs/gravmad_gpu/results

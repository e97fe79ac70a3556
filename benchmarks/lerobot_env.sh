#!/usr/bin/env bash
# Build .venv-lerobot/ in the repository root: LeRobot's own dataset code (the `lerobot-dataset` package,
# a standalone LeRobotDataset with relaxed dependencies), in a venv of its own because it needs numpy 2
# while robolearn keeps numpy<2. Used by tests/datasets/test_lerobot.py (LeRobot reads our exports and
# writes datasets we import) and by benchmarks/lerobot_read.py (LeRobotDataset's windows/s).
#
#   bash benchmarks/lerobot_env.sh          # idempotent: a few seconds when the venv is already built
#
# What goes in, and why:
#   torch==2.13.0          the CPU wheel, pinned and installed first (an unpinned torch, asked for by any
#                          package, pulls a multi-GB CUDA build)
#   torchvision==0.28.0    the release built for torch 2.13; LeRobot imports it. Its compiled ops need CUDA
#                          libraries and cannot load beside the CPU torch: benchmarks/lerobot_compat.py says
#                          what that changes (LeRobot decodes video through PyAV, not torchcodec)
#   lerobot-dataset==0.4.4 the newest release for Python 3.11 (0.5.0 needs Python >= 3.12, for which there
#                          is no CPU torch wheel here); it brings av 15, datasets, pyarrow, pandas, numpy 2
# torchcodec is not installed: its PyPI wheel links libtorch_cuda / libc10_cuda / libnvrtc.
# Nothing is downloaded at run time: the scripts run with HF_HUB_OFFLINE=1 on local directories.
#
# The venv is built in place and `.venv-lerobot/.built` (the package list) is written last, so an interrupted
# build is rebuilt from scratch next time. PYTHON=... picks the base interpreter (default python3).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=.venv-lerobot
PYTHON="${PYTHON:-python3}"
PACKAGES="torch==2.13.0 torchvision==0.28.0 lerobot-dataset==0.4.4"
STAMP="$VENV/.built"

smoke_test() {
  HF_HUB_OFFLINE=1 "$VENV/bin/python" - <<'PY'
import sys
sys.path.insert(0, "benchmarks")
import lerobot_compat

lerobot_compat.install()
import torch
from ledataset.datasets.lerobot_dataset import CODEBASE_VERSION, LeRobotDataset  # noqa: F401

info = lerobot_compat.describe("pyav")
assert torch.__version__.endswith("+cpu"), f"expected the CPU build of torch, got {torch.__version__}"
print(f"== .venv-lerobot: lerobot-dataset {info['lerobot_dataset']} (format {CODEBASE_VERSION}), torch {info['torch']}, "
      f"torchvision {info['torchvision']}, av {info['av']}, numpy {info['numpy']}; decoder: PyAV")
PY
}

if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$PACKAGES" ] && [ -x "$VENV/bin/python" ]; then
  smoke_test
  exit 0
fi

echo "== .venv-lerobot: building ($PACKAGES)"
rm -rf "$VENV"
"$PYTHON" -m venv "$VENV"
PIP=("$VENV/bin/python" -m pip install -q --disable-pip-version-check)
"${PIP[@]}" torch==2.13.0  # first and alone: the CPU wheel (see scripts/install.sh)
"${PIP[@]}" $PACKAGES
smoke_test
echo "$PACKAGES" > "$STAMP"

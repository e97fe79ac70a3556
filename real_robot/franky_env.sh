#!/usr/bin/env bash
# Build .venv-franky/ (repository root, gitignored): the franky-sim simulated Franka FR3, which speaks
# the libfranka network protocol on loopback, for the `franka` driver's tests and benchmark.
#
# It gets its own virtual environment because it cannot share robolearn's: franky-sim 1.0.4 needs
# pinocchio 4.x (it fails with pinocchio 2.7 under numpy 1.26) and so numpy 2, while robosuite needs
# mujoco 3.3.7 and robolearn pins numpy 1.26. The daemon's side (franky-control, the client library)
# lives in robolearn's own environment (the `robolearn[franka]` extra, franky-control 2.0.0 with numpy 1.26); this script installs that too.
#
# Idempotent: a venv that already imports franky_sim with the pinned versions is left as it is.
#   bash real_robot/franky_env.sh            (also run by .ci/run)
# PYTHON=... picks the interpreter for the venv (default python3).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
VENV=.venv-franky
PINS=(franky-sim==1.0.4 "numpy>=2,<3" "mujoco>=4,<5" "pin>=4,<5")

check() {
  "$VENV/bin/python" - <<'PY' 2>/dev/null
import importlib.metadata as md
import franky_sim, mujoco, numpy, pinocchio  # noqa: F401  (the server imports all of them)
assert md.version("franky-sim") == "1.0.4", md.version("franky-sim")
assert numpy.__version__.split(".")[0] == "2" and mujoco.__version__.split(".")[0] == "4"
assert md.version("pin").split(".")[0] == "4"
PY
}

if [ -x "$VENV/bin/python" ] && check; then
  echo "== $VENV: franky-sim already installed"
else
  echo "== $VENV: installing ${PINS[*]}"
  rm -rf "$VENV"
  "$PYTHON" -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q --upgrade pip
  "$VENV/bin/python" -m pip install -q "${PINS[@]}"
  check || { echo "franky_env.sh: $VENV does not import franky_sim with the pinned versions" >&2; exit 1; }
fi
"$VENV/bin/python" -c "import importlib.metadata as m; print('== franky-sim', m.version('franky-sim'), \
'numpy', m.version('numpy'), 'mujoco', m.version('mujoco'), 'pin', m.version('pin'))"

# the client side, in robolearn's environment (numpy 1.26 stays)
if ! "$PYTHON" -c "import franky" 2>/dev/null; then
  echo "== franky-control (the robolearn[franka] extra) into robolearn's environment"
  "$PYTHON" -m pip install -q "franky-control==2.0.0" "numpy>=1.26,<2"
fi
"$PYTHON" -c "import franky, numpy; print('== franky-control', franky.__version__ if hasattr(franky, '__version__') else '?', 'numpy', numpy.__version__)"

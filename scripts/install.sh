#!/usr/bin/env bash
# Install what robolearn needs, from a clone of the repository (README's first command and .ci/run):
#   1. the Debian libraries for offscreen MuJoCo rendering, when missing (apt-get; sudo only when not root)
#   2. the pinned Python packages: torch first (an unpinned torch pulls a multi-GB CUDA build), then robolearn
# Without the rendering libraries everything still installs and runs, but nothing renders: commands that need
# camera images stop with one line naming the packages, and the quickstart skips its videos. So when they
# cannot be installed here, this script says which ones to install and carries on; with --require-gl
# (CI) it stops there with exit code 1 instead. PYTHON=... picks the interpreter (default python3).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
REQUIRE_GL=0
for arg in "$@"; do
  case "$arg" in
    --require-gl) REQUIRE_GL=1 ;;
    *) echo "install.sh: unknown option $arg; expected --require-gl" >&2; exit 2 ;;
  esac
done
GL_PACKAGES=(libegl1 libegl-mesa0 libgl1 libgles2 libosmesa6)  # EGL via Mesa; OSMesa as the fallback

install_gl_libraries() {
  if [ "$(uname -s)" = Darwin ]; then
    echo "== offscreen rendering libraries: none needed on macOS (MuJoCo renders through CGL)"
    return 0
  fi
  if ! command -v apt-get >/dev/null 2>&1 || ! command -v dpkg >/dev/null 2>&1; then
    echo "install.sh: no apt-get here; install the offscreen OpenGL libraries yourself (Debian names: ${GL_PACKAGES[*]}) to render images and videos" >&2
    return 1
  fi
  local missing=() pkg
  for pkg in "${GL_PACKAGES[@]}"; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
  done
  if [ ${#missing[@]} -eq 0 ]; then
    echo "== offscreen rendering libraries: already installed"
    return 0
  fi
  local sudo=()
  if [ "$(id -u)" -ne 0 ]; then
    if ! command -v sudo >/dev/null 2>&1; then
      echo "install.sh: cannot install ${missing[*]} (not root, no sudo); run as root: apt-get install ${missing[*]}" >&2
      return 1
    fi
    sudo=(sudo)
  fi
  echo "== offscreen rendering libraries: installing ${missing[*]}"
  local aptlog
  aptlog=$(mktemp "${TMPDIR:-/tmp}/robolearn-apt.XXXXXX")
  if ! { "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq &&
         "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"; } \
       >"$aptlog" 2>&1; then
    echo "install.sh: could not install ${missing[*]} (apt-get failed, see $aptlog); install them to render images and videos" >&2
    return 1
  fi
  rm -f "$aptlog"
}

echo "== system libraries for offscreen MuJoCo rendering (EGL via Mesa; OSMesa as fallback)"
if ! install_gl_libraries && [ "$REQUIRE_GL" = 1 ]; then
  exit 1
fi

echo "== python packages (torch 2.13.0 first: the CPU wheel; then robolearn with its dev extra)"
"$PYTHON" -m pip install -q torch==2.13.0
"$PYTHON" -m pip install -q -e ".[dev]"

# one line on whether images can be rendered here (robolearn's own check, as the commands run it)
"$PYTHON" - <<'PY' || true
from robolearn.sim.gl import configure_gl, offscreen_problem

backend, problem = configure_gl(), offscreen_problem()
print(f"== offscreen rendering: ok (MUJOCO_GL={backend})" if problem is None else f"== offscreen rendering: {problem}")
PY

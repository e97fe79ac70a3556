"""Pick an offscreen OpenGL backend before mujoco/robosuite are imported, and check it works.

MuJoCo reads `MUJOCO_GL` once, at import. A CPU-only machine has no display, so
we choose a headless backend unless the user already chose one: EGL (Mesa's
llvmpipe through libEGL) when libEGL loads, else OSMesa. PyOpenGL, which
robosuite imports, must agree with mujoco, so `PYOPENGL_PLATFORM` follows.

When the backend's library cannot be loaded at all, `import mujoco` itself would
fail with a PyOpenGL traceback (`'NoneType' object has no attribute
'eglQueryString'`), even for jobs that never render. So `configure_gl` then turns
MuJoCo's GL off (`MUJOCO_GL=disable`): simulation works, rendering does not, and
`offscreen_problem()` says why in one line. Commands that need images call
`require_offscreen()` up front (one `UserError` line); jobs that render only for
videos skip them with a note.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os
import subprocess
import sys

from robolearn.errors import UserError

HEADLESS = ("egl", "osmesa")
DISABLED = ("disable", "disabled", "off", "false", "0")
# the shared library each headless backend loads, and the Debian packages that provide it
LIBRARIES = {"egl": ("libEGL.so.1", "EGL"), "osmesa": ("libOSMesa.so.8", "OSMesa")}
PACKAGES = {"egl": "libegl1 libegl-mesa0 libgl1 libgles2", "osmesa": "libosmesa6"}
INSTALL_HINT = "bash scripts/install.sh installs them"
# why configure_gl turned GL off; in the environment so that worker processes inherit it
UNUSABLE_ENV = "ROBOLEARN_GL_UNUSABLE"


def load_problem(backend: str) -> str | None:
    """None if the backend's GL library loads in this process, else why not (the loader's message)."""
    soname, short = LIBRARIES[backend]
    errors = []
    for name in dict.fromkeys((soname, ctypes.util.find_library(short))):
        if not name:
            continue
        try:
            ctypes.CDLL(name)
            return None
        except OSError as exc:
            errors.append(str(exc))
    return errors[0] if errors else f"{soname}: not found"


def configure_gl() -> str:
    """Set MUJOCO_GL / PYOPENGL_PLATFORM if unset; return the backend in use ("disable" when none loads)."""
    backend = os.environ.get("MUJOCO_GL", "").strip().lower()
    if not backend:
        backend = next((b for b in HEADLESS if load_problem(b) is None), "egl")
        os.environ["MUJOCO_GL"] = backend
    if backend in HEADLESS:
        why = load_problem(backend)
        if why is not None:
            os.environ[UNUSABLE_ENV] = _missing(backend, why)
            os.environ["MUJOCO_GL"] = backend = "disable"
            if os.environ.get("PYOPENGL_PLATFORM") in HEADLESS:
                del os.environ["PYOPENGL_PLATFORM"]  # PyOpenGL would fail on import the same way
            return backend
        os.environ.pop(UNUSABLE_ENV, None)
        os.environ.setdefault("PYOPENGL_PLATFORM", backend)
    return backend


def _missing(backend: str, why: str) -> str:
    other = "osmesa" if backend == "egl" else "egl"
    return (f"no offscreen OpenGL for MuJoCo: MUJOCO_GL={backend} needs {LIBRARIES[backend][0]}, which does not load "
            f"({why}); install the Debian packages {PACKAGES[backend]} (or {PACKAGES[other]} with "
            f"MUJOCO_GL={other}); {INSTALL_HINT}")


# A tiny context in a fresh interpreter: a broken GL stack can abort a process, not just raise.
_PROBE = "import mujoco; c = mujoco.GLContext(8, 8); c.make_current(); c.free()"


@functools.cache
def offscreen_problem() -> str | None:
    """None when an offscreen GL context can be created, else one line naming what is missing and
    the Debian packages that provide it. Checked once per process (about half a second)."""
    backend = configure_gl()
    if backend in DISABLED:
        if os.environ.get(UNUSABLE_ENV):
            return os.environ[UNUSABLE_ENV]
        return f"MUJOCO_GL={backend} turns MuJoCo's rendering off; unset it (or set egl or osmesa) to render images"
    if backend not in HEADLESS:
        return None  # glfw/glx on a display: the user's choice, not ours to second-guess
    env = {**os.environ, "MUJOCO_GL": backend, "PYOPENGL_PLATFORM": backend}
    try:
        r = subprocess.run([sys.executable, "-c", _PROBE], env=env, capture_output=True, text=True, timeout=120)
    except subprocess.TimeoutExpired:
        return f"MUJOCO_GL={backend}: creating an offscreen GL context did not finish in 120 s"
    if r.returncode == 0:
        return None
    lines = [line.strip() for line in r.stderr.splitlines() if line.strip()]
    last = lines[-1] if lines else f"exit code {r.returncode}"
    return (f"no offscreen OpenGL for MuJoCo: MUJOCO_GL={backend} loads {LIBRARIES[backend][0]} but cannot create a "
            f"context ({last}); install the Debian packages {PACKAGES[backend]}; {INSTALL_HINT}")


def require_offscreen(what: str) -> None:
    """Stop with one line (UserError) when `what` needs rendered images and no backend works."""
    problem = offscreen_problem()
    if problem:
        raise UserError(f"{what}: {problem}")

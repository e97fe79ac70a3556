"""Pick an offscreen OpenGL backend before mujoco/robosuite are imported.

MuJoCo reads `MUJOCO_GL` once, at import. A CPU-only machine has no display, so
we choose a headless backend unless the user already chose one: EGL (Mesa's
llvmpipe through libEGL) when libEGL is present, else OSMesa. PyOpenGL, which
robosuite imports, must agree with mujoco, so `PYOPENGL_PLATFORM` follows.
"""

from __future__ import annotations

import ctypes.util
import os


def configure_gl() -> str:
    """Set MUJOCO_GL / PYOPENGL_PLATFORM if unset; return the backend in use."""
    backend = os.environ.get("MUJOCO_GL", "").strip().lower()
    if not backend:
        if ctypes.util.find_library("EGL"):
            backend = "egl"
        elif ctypes.util.find_library("OSMesa"):
            backend = "osmesa"
        else:
            backend = "egl"  # let mujoco produce its own error message
        os.environ["MUJOCO_GL"] = backend
    if backend in ("egl", "osmesa"):
        os.environ.setdefault("PYOPENGL_PLATFORM", backend)
    return backend

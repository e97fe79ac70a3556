"""Offscreen camera rendering straight from the MuJoCo model, with a fast mode.

robosuite renders camera observations through a 640x480 offscreen buffer with a
4096² shadow map, 4x multisampling, reflections and a skybox; on a CPU (Mesa
llvmpipe) that costs ~70 ms for one 84x84 frame. `CameraRenderer` owns one GL
context per env (one env per process) and renders into a buffer the size of the
image. Render modes:

* ``"fast"`` (default for collected data): no shadows (shadow map not even
  allocated), no reflections on the table/floor, no skybox (background beyond
  the walls is black), no multisampling (edges are aliased, not smoothed), no
  decorative elements (site markers, labels). Lighting, textures and colours are
  unchanged, so objects and the arm look the same apart from missing cast
  shadows and highlights.
* ``"quality"``: the model's own visual settings (what robosuite renders).

Images are returned top row first (robosuite's default "opengl" convention
returns them upside down). Depth is linear distance along the optical axis in
metres; point clouds are world-frame XYZ per pixel.
"""

from __future__ import annotations

import atexit
import weakref

import mujoco
import numpy as np

RENDER_MODES = ("fast", "quality")
_LIVE: "weakref.WeakSet[CameraRenderer]" = weakref.WeakSet()


def _close_all() -> None:
    # free GL contexts before the GL library's own exit handlers run (avoids EGL errors at exit)
    for r in list(_LIVE):
        r.close()


def _gl_context_class():
    """The headless GL context for our backend, even if mujoco was imported before robolearn.sim
    (mujoco.GLContext is fixed from MUJOCO_GL at mujoco's import and may be GLFW, which needs a display)."""
    from robolearn.sim.gl import DISABLED, configure_gl, require_offscreen

    backend = configure_gl()
    if backend in DISABLED:
        require_offscreen("rendering camera images")  # one line naming what is missing, not a GL traceback
    if backend == "egl":
        from mujoco.egl import GLContext
    elif backend == "osmesa":
        from mujoco.osmesa import GLContext
    else:
        GLContext = mujoco.GLContext
    return GLContext


class CameraRenderer:
    def __init__(self, model: mujoco.MjModel, data: mujoco.MjData, size: int, mode: str = "fast"):
        if mode not in RENDER_MODES:
            raise ValueError(f"render_mode: expected one of {RENDER_MODES}, got {mode!r}")
        self.model, self.data, self.size, self.mode = model, data, size, mode
        model.vis.global_.offwidth = max(size, 1)
        model.vis.global_.offheight = max(size, 1)
        if mode == "fast":
            model.vis.quality.offsamples = 0
            model.vis.quality.shadowsize = 0
        self._gl = _gl_context_class()(size, size)
        # after the first context, EGL registers eglTerminate at exit; ours must run before it (LIFO)
        atexit.unregister(_close_all)
        atexit.register(_close_all)
        self._gl.make_current()
        self._con = mujoco.MjrContext(model, mujoco.mjtFontScale.mjFONTSCALE_150)
        mujoco.mjr_setBuffer(mujoco.mjtFramebuffer.mjFB_OFFSCREEN, self._con)
        self._scn = mujoco.MjvScene(model, maxgeom=2000)
        self._catmask = mujoco.mjtCatBit.mjCAT_ALL
        if mode == "fast":
            for flag in ("mjRND_SHADOW", "mjRND_REFLECTION", "mjRND_SKYBOX"):
                self._scn.flags[getattr(mujoco.mjtRndFlag, flag)] = 0
            self._catmask = mujoco.mjtCatBit.mjCAT_STATIC | mujoco.mjtCatBit.mjCAT_DYNAMIC
        self._opt = mujoco.MjvOption()
        self._opt.geomgroup[0] = 0  # robosuite: group 0 = collision geoms, hidden
        self._pert = mujoco.MjvPerturb()
        self._cam = mujoco.MjvCamera()
        self._cam.type = mujoco.mjtCamera.mjCAMERA_FIXED
        self._rect = mujoco.MjrRect(0, 0, size, size)
        self._rgb = np.empty((size, size, 3), np.uint8)
        self._depth = np.empty((size, size), np.float32)
        _LIVE.add(self)

    def render(self, camera_id: int, depth: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
        """RGB (H, W, 3) uint8 and optional linear depth (H, W) float32 metres, top row first."""
        self._gl.make_current()
        self._cam.fixedcamid = camera_id
        mujoco.mjv_updateScene(self.model, self.data, self._opt, self._pert, self._cam, self._catmask, self._scn)
        mujoco.mjr_render(self._rect, self._scn, self._con)
        mujoco.mjr_readPixels(self._rgb, self._depth if depth else None, self._rect, self._con)
        rgb = self._rgb[::-1].copy()
        if not depth:
            return rgb, None
        extent = self.model.stat.extent
        near, far = self.model.vis.map.znear * extent, self.model.vis.map.zfar * extent
        z = near / (1.0 - self._depth[::-1] * (1.0 - near / far))  # (H, W) metres
        return rgb, z.astype(np.float32)

    def pointcloud(self, camera_id: int, depth_m: np.ndarray) -> np.ndarray:
        """World-frame XYZ (H, W, 3) float32 from a linear depth image of `camera_id`."""
        h, w = depth_m.shape
        fovy = np.deg2rad(self.model.cam_fovy[camera_id])
        f = 0.5 * h / np.tan(fovy / 2)
        u, v = np.meshgrid(np.arange(w) + 0.5, np.arange(h) + 0.5)  # (H, W) pixel centres
        # camera frame (MuJoCo/OpenGL): x right, y up, looking along -z; row 0 is the top
        x = (u - w / 2) / f * depth_m
        y = -(v - h / 2) / f * depth_m
        pts_cam = np.stack([x, y, -depth_m], axis=-1)  # (H, W, 3)
        rot = self.data.cam_xmat[camera_id].reshape(3, 3)
        pos = self.data.cam_xpos[camera_id]
        return (pts_cam @ rot.T + pos).astype(np.float32)

    def close(self) -> None:
        if getattr(self, "_con", None) is not None:
            self._con.free()
            self._con = None
        if getattr(self, "_gl", None) is not None:
            self._gl.free()
            self._gl = None

    def __del__(self):
        try:
            self.close()
        except Exception:  # interpreter shutdown: GL may already be gone
            pass

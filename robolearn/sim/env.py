"""`make(task, ...)`: a gymnasium.Env over a robosuite task.

Observation dict (see CONTRACT.md): ``proprio`` (eef pos 3, eef quat xyzw 4,
gripper qpos), ``object`` (robosuite's privileged object-state), ``state`` =
concat(proprio, object), ``<camera>_image`` uint8 HWC, optional
``<camera>_depth`` float32 HW1 (metres) and ``<camera>_pointcloud`` float32 HW3
(world frame). Action: OSC_POSE deltas, float32 (7,) in [-1, 1] (last = gripper,
+1 closes). ``info["success"]`` is robosuite's own `_check_success()`.

Speed choices: robosuite never renders (no offscreen context of its own, no
camera observables); our `CameraRenderer` renders only the requested cameras
into an image-sized buffer. `hard_reset=False` keeps one MuJoCo model and one GL
context for the env's lifetime instead of re-compiling the XML on every reset.
Seeding: ``reset(seed=s)`` re-seeds robosuite's generator in place, which every
placement sampler and the robot's init noise share, so the same seed gives the
same initial state.
"""

from __future__ import annotations

import copy
import logging
from typing import Any

import gymnasium as gym
import numpy as np

import robolearn.sim  # noqa: F401  (configures GL before mujoco/robosuite load)
from robolearn.errors import UserError
from robolearn.sim.dynamics import Dynamics, apply_model_dynamics
from robolearn.sim.render import RENDER_MODES, CameraRenderer
from robolearn.sim.suite import TaskSpec, get_spec

log = logging.getLogger(__name__)


def make(
    task: str,
    cameras: tuple[str, ...] | list[str] | None = None,
    image_size: int | None = None,
    depth: bool = False,
    pointcloud: bool = False,
    controller: str | None = None,
    robot: str | None = None,
    render_mode: str | None = None,
    horizon: int | None = None,
    dynamics: dict | None = None,
    env_kwargs: dict | None = None,
) -> "RobolearnEnv":
    """Build the env for a task of sim/tasks.toml; None = the task's default."""
    spec = get_spec(task)
    cams = tuple(spec.cameras if cameras is None else cameras)
    size = spec.image_size if image_size is None else int(image_size)
    if cams and size <= 0:
        raise UserError(f"image_size: expected a positive integer, got {size}")
    mode = render_mode or spec.render_mode
    if mode not in RENDER_MODES:
        raise UserError(f"render_mode: expected one of {RENDER_MODES}, got {mode!r}")
    ctrl = controller or spec.controller
    if ctrl != "OSC_POSE":
        raise UserError(f"controller: only 'OSC_POSE' is supported, got {ctrl!r}")
    if horizon is not None and horizon <= 0:
        raise UserError(f"horizon: expected a positive integer, got {horizon}")
    return RobolearnEnv(
        spec,
        cameras=cams,
        image_size=size,
        depth=depth,
        pointcloud=pointcloud,
        robot=robot or spec.robot,
        render_mode=mode,
        horizon=horizon or spec.horizon,
        dynamics=Dynamics.from_dict(dynamics or {}),
        env_kwargs={**spec.env_kwargs, **(env_kwargs or {})},
    )


def make_robosuite(spec: TaskSpec, robot: str, dynamics: Dynamics, env_kwargs: dict, **render_kwargs):
    """The underlying robosuite env (no rendering unless render_kwargs ask for it)."""
    import robosuite
    from robosuite.controllers import load_composite_controller_config

    from robosuite.robots import ROBOT_CLASS_MAPPING

    if robot not in ROBOT_CLASS_MAPPING:
        raise UserError(f"robot: unknown robot {robot!r}; robosuite has {sorted(ROBOT_CLASS_MAPPING)}")
    cfg = load_composite_controller_config(controller="BASIC", robot=robot)
    arm = cfg["body_parts"]["right"]
    cfg["body_parts"] = {"right": arm}  # single-arm robots: drop the parts they lack (robosuite warns otherwise)
    if dynamics.kp_scale != 1.0:
        arm["kp"] = float(arm["kp"]) * dynamics.kp_scale
    kwargs = dict(
        robots=robot,
        controller_configs=cfg,
        has_renderer=False,
        has_offscreen_renderer=False,
        use_camera_obs=False,
        use_object_obs=True,
        hard_reset=False,
        ignore_done=True,
        horizon=10**9,
        control_freq=spec.control_freq,
        reward_shaping=False,
        seed=MODEL_SEED,
    )
    kwargs.update(render_kwargs)
    kwargs.update(env_kwargs)
    return _build_robosuite(spec, kwargs)


# robosuite draws model properties (e.g. Lift's cube size) from its env RNG while it builds the
# model, and seeds that RNG from entropy unless given `seed`: without a fixed model seed, "same
# seed, same initial state" would hold only inside one process, not across eval/collect workers.
MODEL_SEED = 0


def _build_robosuite(spec: TaskSpec, kwargs: dict):
    import robosuite

    if spec.env.startswith("robolearn:"):
        from robolearn.sim import scenes

        cls = getattr(scenes, spec.env.split(":", 1)[1])
        return cls(**kwargs)
    try:
        return robosuite.make(spec.env, **kwargs)
    except TypeError as exc:  # an env_kwargs key the robosuite env does not take
        raise UserError(f"env_kwargs: robosuite {spec.env} rejected the arguments: {exc}") from exc


class RobolearnEnv(gym.Env):
    metadata = {"render_modes": ["rgb_array"]}

    def __init__(
        self,
        spec: TaskSpec,
        cameras: tuple[str, ...],
        image_size: int,
        depth: bool,
        pointcloud: bool,
        robot: str,
        render_mode: str,
        horizon: int,
        dynamics: Dynamics,
        env_kwargs: dict,
    ):
        self.spec_ = spec
        self.task = spec.name
        self.cameras, self.image_size = tuple(cameras), image_size
        self.depth, self.pointcloud = bool(depth or pointcloud), bool(pointcloud)
        self.robot, self.render_mode_, self.horizon = robot, render_mode, horizon
        self.dynamics = dynamics
        self.rs = make_robosuite(spec, robot, dynamics, env_kwargs)
        self.sim = self.rs.sim
        names = [self.sim.model.camera_id2name(i) for i in range(self.sim.model.ncam)]
        unknown = [c for c in self.cameras if c not in names]
        if unknown:
            self.rs.close()
            raise UserError(f"cameras: unknown camera(s) {unknown} for task {self.task!r}; available: {names}")
        self._cam_ids = {c: names.index(c) for c in self.cameras}
        apply_model_dynamics(self.rs, dynamics)
        self.renderer = (
            CameraRenderer(self.sim.model._model, self.sim.data._data, image_size, render_mode) if self.cameras else None
        )
        self.kwargs = dict(
            cameras=list(self.cameras), image_size=image_size, depth=bool(depth), pointcloud=self.pointcloud,
            controller="OSC_POSE", robot=robot, render_mode=render_mode, horizon=horizon,
            dynamics=dynamics.to_dict(), env_kwargs=copy.deepcopy(env_kwargs),
        )  # fmt: skip
        self.instruction = spec.instruction
        self.raw_obs: dict[str, np.ndarray] = {}
        self.t = 0
        obs, _ = self.reset(seed=0)
        self.observation_space = gym.spaces.Dict({k: _space_for(v) for k, v in obs.items()})
        self.action_space = gym.spaces.Box(-1.0, 1.0, shape=(7,), dtype=np.float32)

    # ------------------------------------------------------------------ gym API
    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        if seed is not None:
            self.rs.rng.bit_generator.state = np.random.default_rng(seed).bit_generator.state
        self.raw_obs = self.rs.reset()
        if hasattr(self.rs, "instruction"):
            self.instruction = self.rs.instruction
        # a multitask scene's goal kind this episode (multi_cube: lift / stack / reach), for per-kind success
        goal = getattr(self.rs, "goal", None)
        self.goal_kind = str(goal.get("kind", "")) if isinstance(goal, dict) else ""
        self.t = 0
        return self._obs(), {"success": bool(self.rs._check_success()), "instruction": self.instruction}

    def step(self, action):
        a = np.asarray(action, dtype=np.float64).reshape(7)
        a = np.clip(a, -1.0, 1.0)
        a[:6] *= self.dynamics.action_scale
        self.raw_obs, reward, _, _ = self.rs.step(a)
        self.t += 1
        success = bool(self.rs._check_success())
        info = {"success": success, "instruction": self.instruction}
        return self._obs(), float(reward), False, self.t >= self.horizon, info

    def render(self):
        cam = self.cameras[0] if self.cameras else "agentview"
        return self.render_camera(cam)

    def render_camera(self, camera: str) -> np.ndarray:
        """RGB frame of any camera in the scene, at the env's image size (84 if it has no cameras)."""
        names = [self.sim.model.camera_id2name(i) for i in range(self.sim.model.ncam)]
        if camera not in names:
            raise UserError(f"camera: unknown camera {camera!r}; available: {names}")
        if self.renderer is None:
            size = self.image_size if self.image_size > 0 else 84
            self.renderer = CameraRenderer(self.sim.model._model, self.sim.data._data, size, self.render_mode_)
        return self.renderer.render(names.index(camera))[0]

    def close(self):
        if self.renderer is not None:
            self.renderer.close()
            self.renderer = None
        self.rs.close()

    # ------------------------------------------------------------ observations
    def _obs(self) -> dict[str, np.ndarray]:
        r = self.raw_obs
        proprio = np.concatenate([r["robot0_eef_pos"], r["robot0_eef_quat"], r["robot0_gripper_qpos"]])
        obj = np.asarray(r["object-state"], dtype=np.float32)
        obs = {
            "proprio": proprio.astype(np.float32),
            "object": obj,
            "state": np.concatenate([proprio, obj]).astype(np.float32),
        }
        for cam, cid in self._cam_ids.items():
            rgb, z = self.renderer.render(cid, depth=self.depth)
            obs[f"{cam}_image"] = rgb
            if self.depth:
                obs[f"{cam}_depth"] = z[..., None]
            if self.pointcloud:
                obs[f"{cam}_pointcloud"] = self.renderer.pointcloud(cid, z)
        return obs


def _space_for(x: np.ndarray) -> gym.spaces.Box:
    if x.dtype == np.uint8:
        return gym.spaces.Box(0, 255, shape=x.shape, dtype=np.uint8)
    return gym.spaces.Box(-np.inf, np.inf, shape=x.shape, dtype=x.dtype)


def env_kwargs_of(env: RobolearnEnv) -> dict[str, Any]:
    """The kwargs that rebuild `env` with `robolearn.sim.make(task, **kwargs)`."""
    return copy.deepcopy(env.kwargs)

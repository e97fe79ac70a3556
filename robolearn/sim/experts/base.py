"""Scripted-expert machinery: a stage machine over privileged sim state.

An expert is a list of `Stage`s. Each stage names a phase label and computes,
from the current state, a target end-effector position, a target yaw (rotation
about world z of the downward-pointing gripper) and a gripper command. A
proportional controller turns the target into an OSC_POSE delta action. A stage
ends when the target is reached (position within `tol`, after `min_steps`) or
after `max_steps`. Randomness (speed, approach offsets, action noise) comes from
the expert's own generator, seeded per episode, so demos differ but replay
exactly.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

# Global phase vocabulary: phase ids stored in `phase` (int16) index this list.
PHASES = [
    "approach", "descend", "grasp", "lift", "move", "place", "release", "retreat",
    "align", "turn", "pull", "push", "wander", "pause", "done",
]  # fmt: skip
PHASE_ID = {p: i for i, p in enumerate(PHASES)}

POS_SCALE = 0.05  # OSC_POSE output_max for position (m per unit action)
ROT_SCALE = 0.5  # OSC_POSE output_max for rotation (rad per unit action)

Target = tuple[np.ndarray, float, float]  # (eef position (3,), yaw (rad), gripper -1 open .. +1 closed)


@dataclass
class Stage:
    phase: str
    target: Callable[[], Target]
    tol: float = 0.01
    min_steps: int = 0
    max_steps: int = 80
    yaw_tol: float = 0.1
    speed: float = 1.0  # cap on |position action| in this stage (on top of the demo's own speed)


def wrap(angle: float, period: float = 2 * np.pi) -> float:
    """Wrap into [-period/2, period/2)."""
    return (angle + period / 2) % period - period / 2


def quat_xyzw_to_mat(q: np.ndarray) -> np.ndarray:
    x, y, z, w = q
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ]
    )


def yaw_of(mat: np.ndarray) -> float:
    """Yaw of a frame's x-axis projected on the world xy plane."""
    return float(np.arctan2(mat[1, 0], mat[0, 0]))


def rotz(a: float) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1.0]])


def rot_error(r_target: np.ndarray, r_cur: np.ndarray) -> np.ndarray:
    """Axis-angle (world frame) rotating r_cur onto r_target."""
    r = r_target @ r_cur.T
    angle = np.arccos(np.clip((np.trace(r) - 1) / 2, -1.0, 1.0))
    if angle < 1e-6:
        return np.zeros(3)
    axis = np.array([r[2, 1] - r[1, 2], r[0, 2] - r[2, 0], r[1, 0] - r[0, 1]]) / (2 * np.sin(angle))
    return axis * angle


@dataclass
class ExpertParams:
    """Controlled randomness of one demonstration."""

    speed: float = 1.0  # max |action| for position
    gain: float = 1.0  # proportional gain (1 = aim to close the error in one step)
    noise: float = 0.0  # std of Gaussian action noise (position and rotation)
    offset: np.ndarray = field(default_factory=lambda: np.zeros(3))  # approach offset (m)

    @classmethod
    def sample(cls, rng: np.random.Generator, randomize: bool = True) -> "ExpertParams":
        if not randomize:
            return cls()
        return cls(
            speed=float(rng.uniform(0.6, 1.0)),
            gain=float(rng.uniform(0.8, 1.2)),
            noise=float(rng.uniform(0.0, 0.05)),
            offset=np.array([*rng.uniform(-0.03, 0.03, 2), rng.uniform(0.0, 0.04)]),
        )


class Expert:
    """Base class: subclasses build `self.stages` in `plan()` from the env's privileged state."""

    name = "base"

    def __init__(self, env, seed: int = 0, randomize: bool = True, mode: int | None = None):
        self.env = env
        self.rs = env.rs
        self.rng = np.random.default_rng(seed)
        self.params = ExpertParams.sample(self.rng, randomize)
        self.mode = int(self.rng.integers(self.n_modes)) if mode is None else int(mode)
        self.r_down = self.eef_mat().copy()  # the gripper-down orientation at reset
        self.yaw0 = yaw_of(self.r_down)
        self.stages: list[Stage] = self.plan()
        self.i, self.k = 0, 0  # stage index, steps in stage
        self.retries = 0
        self._ierr = np.zeros(3)
        self.done = False

    n_modes = 1

    # --------------------------------------------------------------- state
    def eef_pos(self) -> np.ndarray:
        return np.asarray(self.env.raw_obs["robot0_eef_pos"], dtype=np.float64)

    def eef_mat(self) -> np.ndarray:
        return quat_xyzw_to_mat(self.env.raw_obs["robot0_eef_quat"])

    def body_pos(self, body_id: int) -> np.ndarray:
        return np.array(self.rs.sim.data.body_xpos[body_id])

    def body_mat(self, body_id: int) -> np.ndarray:
        return np.array(self.rs.sim.data.body_xmat[body_id]).reshape(3, 3)

    def site_pos(self, name: str) -> np.ndarray:
        return np.array(self.rs.sim.data.site_xpos[self.rs.sim.model.site_name2id(name)])

    def wrist_ok(self, yaw: float, margin: float = 0.3) -> bool:
        """Can the last joint turn the gripper to `yaw` (rotating about world z turns it the other way)?"""
        robot = self.rs.robots[0]
        m = self.rs.sim.model._model
        jid = m.joint(robot.robot_joints[-1]).id
        q = float(self.rs.sim.data._data.qpos[m.jnt_qposadr[jid]])
        lo, hi = m.jnt_range[jid]
        q_new = q - wrap(yaw - yaw_of(self.eef_mat()))
        return lo + margin < q_new < hi - margin

    def grasp_yaw(self, obj_yaw: float, symmetry: float = np.pi / 2) -> float:
        """Gripper yaw aligned to an object yaw: the reachable equivalent closest to the reset yaw."""
        base = self.yaw0 + wrap(obj_yaw - self.yaw0, symmetry)
        cands = sorted((base + k * symmetry for k in range(-3, 4)), key=lambda y: abs(y - self.yaw0))
        return next((y for y in cands if self.wrist_ok(y)), base)

    # -------------------------------------------------------------- control
    def plan(self) -> list[Stage]:
        raise NotImplementedError

    @property
    def phase(self) -> str:
        return self.stages[min(self.i, len(self.stages) - 1)].phase

    max_retries = 3
    ki = 0.1  # integral gain (per step)
    max_rot = 0.5  # max |rotation action|

    def lost_grasp(self) -> bool:
        """True when the object slipped out of the gripper; the expert then starts over."""
        return False

    def act(self) -> tuple[np.ndarray, str]:
        """Next action (7,) and its phase label."""
        if self.retries < self.max_retries and self.i < len(self.stages) and self.lost_grasp():
            self.retries += 1
            self.stages, self.i, self.k = self.plan(), 0, 0
        while self.i < len(self.stages):
            stage = self.stages[self.i]
            pos, yaw, grip = stage.target()
            err = pos - self.eef_pos()
            r_target = rotz(yaw - self.yaw0) @ self.r_down
            rerr = rot_error(r_target, self.eef_mat())
            reached = np.linalg.norm(err) < stage.tol and np.linalg.norm(rerr) < stage.yaw_tol
            if (reached and self.k >= stage.min_steps) or self.k >= stage.max_steps:
                self.i, self.k = self.i + 1, 0
                self._ierr = np.zeros(3)
                continue
            self.k += 1
            # integral term: removes the OSC's steady-state error where the arm is stretched
            self._ierr = np.clip(self._ierr + err, -0.1, 0.1)
            return self._action(err + self.ki * self._ierr, rerr, grip, stage.speed), stage.phase
        self.done = True
        pos, yaw, grip = self.stages[-1].target()
        return self._action(pos - self.eef_pos(), np.zeros(3), grip), "done"

    def _action(self, err: np.ndarray, rerr: np.ndarray, grip: float, speed: float = 1.0) -> np.ndarray:
        p = self.params
        vmax = min(p.speed, speed)
        a_pos = np.clip(p.gain * err / POS_SCALE, -vmax, vmax)
        a_rot = np.clip(rerr / ROT_SCALE, -self.max_rot, self.max_rot)
        a = np.concatenate([a_pos, a_rot, [grip]])
        if p.noise > 0:
            a[:6] += self.rng.normal(0.0, p.noise, 6)
        return np.clip(a, -1.0, 1.0).astype(np.float32)

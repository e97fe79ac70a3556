"""Action adapter: a policy action -> a joint-space target, every control tick.

The daemon always commands joints (what arm drivers stream at a fixed rate);
the policy may speak either of two action spaces (robot config `[action]`):

- `joint`: action = [q_target (n), gripper (-1 open .. 1 closed)]; the
  schedule is interpolated linearly between slots and the target used as is.
- `eef_delta`: robosuite OSC_POSE, action = [dpos (3), drot axis-angle (3),
  gripper]. When a slot starts, its action sets an end-effector goal relative
  to the *commanded* pose (goal = pose(q_cmd) + pos_scale * dpos, rotation
  exp(rot_scale * drot) applied in the world frame, as robosuite's OSC does);
  each tick one damped-least-squares differential-IK step, using MuJoCo's site
  Jacobian on the robot model, moves the command toward the goal
  (dq = J^T (J J^T + lambda^2 I)^-1 * gain * error).

Either way the result is only a *request*: the safety filter clamps it.
Anchoring goals on the commanded (not measured) pose keeps the command path
smooth and free of sensor noise; the policy still closes the loop through its
observations, as with a real arm's impedance controller.
"""

from __future__ import annotations

import numpy as np

from robolearn.real_robot.config import ActionConfig
from robolearn.real_robot.model import Kinematics


def axis_angle_to_matrix(v: np.ndarray) -> np.ndarray:
    angle = float(np.linalg.norm(v))
    if angle < 1e-12:
        return np.eye(3)
    k = v / angle
    K = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + np.sin(angle) * K + (1 - np.cos(angle)) * K @ K


def rotation_error(R_goal: np.ndarray, R: np.ndarray) -> np.ndarray:
    """Axis-angle vector (3,) rotating R onto R_goal, in the world frame."""
    E = R_goal @ R.T
    cos = np.clip((np.trace(E) - 1) / 2, -1.0, 1.0)
    angle = np.arccos(cos)
    w = np.array([E[2, 1] - E[1, 2], E[0, 2] - E[2, 0], E[1, 0] - E[0, 1]])
    if angle < 1e-9:
        return 0.5 * w
    s = np.sin(angle)
    if abs(s) < 1e-6:  # ~180 degrees: fall back to a small step about any valid axis
        return 0.5 * w
    return angle / (2 * s) * w


class ActionAdapter:
    def __init__(self, cfg: ActionConfig, dof: int, kin: Kinematics | None):
        self.cfg = cfg
        self.dof = dof
        self.kin = kin
        if cfg.space == "eef_delta" and kin is None:
            raise ValueError("eef_delta actions need a kinematics model")
        self.action_dim = dof + 1 if cfg.space == "joint" else 7
        self.interpolate = cfg.space == "joint"
        self._slot: int | None = None
        self._goal_p = np.zeros(3)
        self._goal_R = np.eye(3)

    def reset(self) -> None:
        """Forget the current end-effector goal (after a hold, the next slot sets a new one)."""
        self._slot = None

    @staticmethod
    def gripper(a_last: float) -> float:
        return float((np.clip(a_last, -1.0, 1.0) + 1.0) / 2.0)

    def target(self, action: np.ndarray, slot: int, q_cmd: np.ndarray) -> tuple[np.ndarray, float]:
        """(joint target (n,), gripper 0..1) for this tick; NaN passes through for the safety filter to reject."""
        if self.cfg.space == "joint":
            return action[: self.dof].astype(np.float64), self.gripper(action[self.dof])
        assert self.kin is not None
        if slot != self._slot:
            p, R = self.kin.pose(q_cmd)
            self._goal_p = p + self.cfg.pos_scale * np.clip(action[:3], -1, 1)
            self._goal_R = axis_angle_to_matrix(self.cfg.rot_scale * np.clip(action[3:6], -1, 1)) @ R
            self._slot = slot
        p, R = self.kin.pose(q_cmd)
        err = np.concatenate([self._goal_p - p, rotation_error(self._goal_R, R)])  # (6,)
        J = self.kin.jacobian(q_cmd)  # (6, n)
        lam2 = self.cfg.ik_damping**2
        dq = J.T @ np.linalg.solve(J @ J.T + lam2 * np.eye(6), self.cfg.ik_gain * err)
        return q_cmd + dq, self.gripper(action[6])

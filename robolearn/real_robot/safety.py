"""Safety filter: the last thing every joint command passes before the driver.

Independent of the policy and always on. Per control tick, for a requested
joint target `q` (and a gripper command in [0, 1]):

1. non-finite entries -> rejected (the previous safe command is repeated: hold);
2. per-joint step cap: |q - q_prev| <= min(vel_max * dt, max_step);
3. acceleration: the implied velocity may change by at most acc_max * dt per tick;
4. position limits: q clamped into [pos_min, pos_max];
5. workspace box: forward kinematics of the result must lie in the box, else rejected;
6. a final invariant check (position and step bounds) -> rejected if anything slipped.

Clamps and rejections are reported as interventions so the daemon can log
them. A rejected command never reaches the driver; the returned command is
the previous safe one (a hold, which may decelerate faster than acc_max: a
stop is always allowed).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from robolearn.real_robot.config import JointLimits, Workspace

Fk = Callable[[np.ndarray], np.ndarray]  # q (n,) -> end-effector position (3,)


@dataclass
class SafetyResult:
    q: np.ndarray  # (n,) the command to send (always within limits)
    gripper: float  # [0, 1]
    ok: bool  # False: the request was rejected and `q` is the previous command (hold)
    interventions: list[str] = field(default_factory=list)  # e.g. ["clamp_vel", "clamp_pos"]


class SafetyFilter:
    def __init__(self, joints: JointLimits, workspace: Workspace, dt: float, fk: Fk | None = None,
                 gripper_step: float = 0.1):
        self.j = joints
        self.ws = workspace
        self.dt = float(dt)
        self.fk = fk
        self.gripper_step = float(gripper_step)
        self.step_cap = np.minimum(joints.vel_max * self.dt, joints.max_step)  # (n,) rad per tick
        self.q_prev: np.ndarray | None = None
        self.v_prev = np.zeros(joints.dof)
        self.g_prev = 0.0

    def reset(self, q_now: np.ndarray, gripper_now: float | None = None) -> None:
        """Start from the measured position at rest (after a hold / at start)."""
        self.q_prev = np.clip(np.asarray(q_now, dtype=np.float64), self.j.pos_min, self.j.pos_max)
        self.v_prev = np.zeros(self.j.dof)
        if gripper_now is not None and np.isfinite(gripper_now):
            self.g_prev = float(np.clip(gripper_now, 0.0, 1.0))

    def _hold(self, why: list[str]) -> SafetyResult:
        self.v_prev = np.zeros(self.j.dof)
        return SafetyResult(self.q_prev.copy(), self.g_prev, ok=False, interventions=why)

    def filter(self, q_target: np.ndarray, gripper: float) -> SafetyResult:
        if self.q_prev is None:
            raise RuntimeError("SafetyFilter.reset(q_now) must be called before filter()")
        q_target = np.asarray(q_target, dtype=np.float64)
        if q_target.shape != (self.j.dof,):
            return self._hold([f"reject_shape:{q_target.shape}"])
        if not np.all(np.isfinite(q_target)) or not np.isfinite(gripper):
            return self._hold(["reject_nonfinite"])
        why: list[str] = []
        step = q_target - self.q_prev
        # acceleration bound around the previous velocity, intersected with the step cap
        dv = self.j.acc_max * self.dt * self.dt  # (n,) max change of the per-tick step
        lo = np.maximum(self.v_prev * self.dt - dv, -self.step_cap)
        hi = np.minimum(self.v_prev * self.dt + dv, self.step_cap)
        lo = np.minimum(lo, hi)  # v_prev beyond the cap (after a config change): allow braking
        clamped = np.clip(step, lo, hi)
        if np.any(np.abs(clamped) < np.abs(step) - 1e-12):
            why.append("clamp_vel_acc")
        q = self.q_prev + clamped
        q_pos = np.clip(q, self.j.pos_min, self.j.pos_max)
        if np.any(q_pos != q):
            why.append("clamp_pos")
        q = q_pos
        if self.fk is not None:
            p = self.fk(q)
            if not (np.all(np.isfinite(p)) and self.ws.contains(p)):
                return self._hold(why + ["reject_workspace"])
        if not self._invariant(q):
            return self._hold(why + ["reject_invariant"])
        g = float(np.clip(gripper, 0.0, 1.0))
        g = float(np.clip(g, self.g_prev - self.gripper_step, self.g_prev + self.gripper_step))
        if g != gripper:
            why.append("clamp_gripper")
        self.v_prev = (q - self.q_prev) / self.dt
        self.q_prev = q
        self.g_prev = g
        return SafetyResult(q.copy(), g, ok=True, interventions=why)

    def _invariant(self, q: np.ndarray) -> bool:
        return bool(
            np.all(np.isfinite(q))
            and np.all(q >= self.j.pos_min) and np.all(q <= self.j.pos_max)
            and np.all(np.abs(q - self.q_prev) <= self.step_cap + 1e-9)
        )


def within_limits(q: np.ndarray, q_prev: np.ndarray | None, joints: JointLimits, dt: float, tol: float = 1e-9) -> bool:
    """Independent check used by tests and drivers: position limits and (if q_prev) the per-tick step cap."""
    q = np.asarray(q, dtype=np.float64)
    if q.shape != (joints.dof,) or not np.all(np.isfinite(q)):
        return False
    if np.any(q < joints.pos_min - tol) or np.any(q > joints.pos_max + tol):
        return False
    if q_prev is not None:
        cap = np.minimum(joints.vel_max * dt, joints.max_step)
        if np.any(np.abs(q - q_prev) > cap + tol):
            return False
    return True

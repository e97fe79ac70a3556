"""In-process kinematic arm for tests and dry runs (and the smallest example of a driver).

The joints move toward the last command with a first-order lag; the
end-effector pose comes from the robot model's kinematics. It records every
command, hold and stop, and checks each command against the config's limits
(`violations`). (The tests' fault switches - a frozen state, a lost connection -
are a subclass in tests/real_robot/doubles.py.)
"""

from __future__ import annotations

import time

import numpy as np

from robolearn.real_robot.config import RobotConfig
from robolearn.real_robot.driver import JointCommand, RobotState
from robolearn.real_robot.model import Kinematics, quat_wxyz_to_xyzw
from robolearn.real_robot.safety import within_limits


def _mat_to_quat_wxyz(R: np.ndarray) -> np.ndarray:
    import mujoco

    q = np.zeros(4)
    mujoco.mju_mat2Quat(q, R.reshape(-1))
    return q


class FakeDriver:
    def __init__(self, cfg: RobotConfig, clock=time.monotonic, lag: float = 0.5, kinematics: Kinematics | None = None):
        self.cfg = cfg
        self.clock = clock
        self.lag = lag  # fraction of the remaining error closed per read
        self.kin = kinematics or Kinematics(cfg.model, cfg.joints.names, base_pos=cfg.base_pos)
        self.q = cfg.joints.home.copy()
        self.q_target = self.q.copy()
        self.gripper = 0.0
        self.commands: list[JointCommand] = []
        self.holds: list[float] = []
        self.stops: list[float] = []
        self.violations: list[str] = []
        self.enabled = False
        self._paused = False

    def connect(self) -> None:
        self.enabled = True

    def read_state(self) -> RobotState:
        now = self.clock()
        self.q = self.q + self.lag * (self.q_target - self.q)
        p, R = self.kin.pose(self.q)
        g = 0.04 * (1.0 - self.gripper)
        return RobotState(now, self.q.copy(), np.zeros_like(self.q), p, quat_wxyz_to_xyzw(_mat_to_quat_wxyz(R)),
                          np.array([g, -g]), self.gripper)

    def send(self, command: JointCommand) -> None:
        # step bound against the previous command, unless a hold/stop came between (the daemon then restarts
        # from the measured position)
        prev = self.commands[-1].q if self.commands and not self._paused else None
        if not within_limits(command.q, prev, self.cfg.joints, self.cfg.period, tol=1e-6):
            self.violations.append(f"command out of limits at t={command.t:.4f}: {command.q}")
        if not self.cfg.workspace.contains(self.kin.fk(command.q)):
            self.violations.append(f"command outside workspace at t={command.t:.4f}")
        if not self.enabled:
            self.violations.append(f"command while stopped at t={command.t:.4f}")
            return
        self.commands.append(command)
        self._paused = False
        self.q_target = command.q.copy()
        self.gripper = command.gripper

    def hold(self) -> None:
        self.holds.append(self.clock())
        self._paused = True
        self.q_target = self.q.copy()

    def stop(self) -> None:
        self.stops.append(self.clock())
        self._paused = True
        self.enabled = False
        self.q_target = self.q.copy()

    def close(self) -> None:
        self.enabled = False

"""Driver protocol: the only code that talks to an arm.

A vendor driver (Franka via libfranka/panda-py, UR via ur-rtde, xArm SDK,
Dynamixel/Feetech buses) is one file under `drivers/` implementing these five
methods, plus one line in `DRIVERS`. Joint limits come from the robot config
and are enforced by the daemon's safety filter before `send`; a driver may add
its own checks but never relaxes them.

Times are `time.monotonic()` seconds on the daemon's machine; a driver whose
hardware stamps states with its own clock converts them.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np

from robolearn.errors import UserError


class DriverError(RuntimeError):
    """The arm (or its connection) failed; the daemon holds, then stops."""


@dataclass
class RobotState:
    t: float  # monotonic time the state was measured
    q: np.ndarray  # (n,) joint positions, rad
    dq: np.ndarray  # (n,) joint velocities, rad/s
    eef_pos: np.ndarray  # (3,) end-effector position, m (robot/world frame of the config's workspace box)
    eef_quat: np.ndarray  # (4,) end-effector orientation, xyzw (robosuite convention)
    gripper_qpos: np.ndarray  # (2,) finger positions, m
    gripper: float = 0.0  # last applied gripper command, 0 open .. 1 closed
    extra: dict[str, np.ndarray] = field(default_factory=dict)  # e.g. "object" state, camera images


@dataclass
class JointCommand:
    t: float  # monotonic time the daemon issued it
    q: np.ndarray  # (n,) joint position targets, rad (already through the safety filter)
    gripper: float  # 0 open .. 1 closed


@runtime_checkable
class Driver(Protocol):
    def connect(self) -> None:
        """Open the connection / (re-)enable motion after `stop()`. Raises DriverError."""

    def read_state(self) -> RobotState:
        """Latest state, non-blocking (a few hundred microseconds at most). Raises DriverError."""

    def send(self, command: JointCommand) -> None:
        """Stream one joint-space target (impedance/position control on the arm side). Raises DriverError."""

    def hold(self) -> None:
        """Hold the current position (zero velocity) until the next `send`."""

    def stop(self) -> None:
        """Stop now and refuse commands until `connect()` again. Must not raise."""

    def close(self) -> None:
        """Release the connection (after `stop`)."""


# name -> "module:Class"; a vendor driver adds one line here.
DRIVERS = {
    "sim": "robolearn.real_robot.drivers.sim:SimDriver",
    "fake": "robolearn.real_robot.drivers.fake:FakeDriver",
    "franka": "robolearn.real_robot.drivers.franka:FrankaDriver",
}


def make_driver(name: str, cfg, **kwargs) -> Driver:
    if name not in DRIVERS:
        raise UserError(f"{cfg.source}: driver: unknown driver {name!r} (expected one of {sorted(DRIVERS)})")
    module, cls = DRIVERS[name].split(":")
    return getattr(importlib.import_module(module), cls)(cfg, **kwargs)

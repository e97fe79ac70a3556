"""The sim arm without its real-time process: the same physics, stepped in lockstep with a clock.

`SteppedSimDriver` builds exactly what `SimDriver` runs (robosuite's Panda + the lift scene, joint
impedance with gravity compensation, frames of `1 / publish_hz`, observation and actuation latency)
but in the caller's process, and advances the physics to `clock()` whenever the daemon calls it.
Driven by a simulated clock (`FakeClock`), the daemon's own `tick` runs the arm as fast as the CPU
allows, with inference taking no simulated time: the synchronous counterpart of a sim eval, for
recording demonstrations quickly and for measuring what real time (asynchronous inference,
scheduling jitter, a loaded CPU) costs a policy. Not a driver for `robolearn serve`.
"""

from __future__ import annotations

import collections

import numpy as np

from robolearn.real_robot.config import RobotConfig
from robolearn.real_robot.driver import DriverError, JointCommand, RobotState
from robolearn.real_robot.drivers.sim import CMD, DEFAULTS, ENABLE, HOLD, STOP, _Sim, state_from_vector


class SteppedSimDriver:
    def __init__(self, cfg: RobotConfig, clock, **overrides):
        self.cfg = cfg
        self.clock = clock
        self.opts = {**DEFAULTS, **cfg.driver_options, **overrides}
        self.n = cfg.joints.dof
        self.sim: _Sim | None = None
        n_sub = max(1, round(1.0 / (self.opts["publish_hz"] * self.opts["physics_dt"])))
        self.n_sub, self.frame = n_sub, n_sub * self.opts["physics_dt"]

    def _start(self) -> None:
        """A fresh arm and per-connection state (a reconnect after close() starts clean)."""
        o = self.opts
        self.sim = _Sim(self.cfg.model, list(self.cfg.base_pos), list(self.cfg.joints.names),
                        self.cfg.joints.home.astype(np.float64), o)
        self.inbox: collections.deque = collections.deque()  # (t_apply, msg)
        self.outbox: collections.deque = collections.deque()  # (t_publish, state vector)
        self.enabled = False
        self.k = 0  # frames done since t0
        self.t0 = self.clock()
        self.published = self.sim.state_vector(self.t0, 0.0, 0.0)

    def advance(self) -> None:
        """Run every frame due by `clock()`: apply the commands whose latency elapsed, step, publish."""
        assert self.sim is not None
        now = self.clock()
        while self.t0 + (self.k + 1) * self.frame <= now + 1e-12:
            self.k += 1
            t = self.t0 + self.k * self.frame
            while self.inbox and self.inbox[0][0] <= t + 1e-12:
                self.enabled = self.sim.apply(self.inbox.popleft()[1], self.enabled)
            self.sim.step(self.n_sub)
            self.outbox.append((t + self.opts["obs_latency_s"], self.sim.state_vector(t, 0.0, t - self.t0)))
            while self.outbox and self.outbox[0][0] <= t + 1e-12:
                self.published = self.outbox.popleft()[1]

    def _queue(self, kind: float, g: float = 0.0, q: np.ndarray | None = None) -> None:
        if self.sim is None:
            raise DriverError("stepped sim: not connected")
        q = np.zeros(self.n) if q is None else q
        msg = np.concatenate([[kind, self.clock(), g], q]).astype(np.float64)
        self.inbox.append((self.clock() + self.opts["act_latency_s"], msg))

    # ---- Driver protocol ---------------------------------------------------------------------
    def connect(self) -> None:
        if self.sim is None:
            self._start()
        self._queue(ENABLE)

    def read_state(self) -> RobotState:
        if self.sim is None:
            raise DriverError("stepped sim: not connected")
        self.advance()
        return state_from_vector(self.published, self.n)

    def send(self, command: JointCommand) -> None:
        self._queue(CMD, command.gripper, command.q)

    def hold(self) -> None:
        self._queue(HOLD)

    def stop(self) -> None:
        if self.sim is not None:
            self._queue(STOP)

    def close(self) -> None:
        self.sim = None

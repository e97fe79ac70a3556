"""Lift episodes on the sim arm through the daemon: success, limit checks, demo recording.

One episode = a fresh sim arm (cube placed by `seed`), a `Daemon` around the policy, and the
robosuite Lift success rule (`cube centre > table top + 0.04`, checked every control tick, the
episode ends at the first success or after `time_limit` seconds, as `robolearn eval` ends at the
env's horizon: 200 steps at 20 Hz = 10 s). Two clocks:

- `realtime=True`: `SimDriver` (the physics in its own process at real time) and `Daemon.run`,
  exactly what `robolearn serve` does: asynchronous inference, wall-clock deadlines.
- `realtime=False`: `SteppedSimDriver` + a simulated clock, the daemon's own `tick` called
  period by period and each inference awaited (it takes no simulated time): the synchronous
  counterpart of a sim eval, many times faster than real time.

Every command that reaches the arm is checked against the robot config's limits (position, per-tick
step, workspace box) independently of the safety filter; `violations` counts the failures.
A `recorder` (`record.EpisodeRecorder`) captures the run as a training episode.
"""

from __future__ import annotations

import collections
import math
import time
from dataclasses import dataclass

import numpy as np

from robolearn.real_robot.config import RobotConfig
from robolearn.real_robot.daemon import Daemon
from robolearn.real_robot.driver import JointCommand
from robolearn.real_robot.events import EventLog
from robolearn.real_robot.model import LIFT_TABLE_TOP, Kinematics
from robolearn.real_robot.safety import within_limits

SUCCESS_Z = LIFT_TABLE_TOP + 0.04  # robosuite Lift: cube centre above the table top + 4 cm
# the sim driver's lift scene as robosuite Lift draws it: cube xy in +-3 cm and turned about z (any yaw
# is one within +-45 deg for a cube)
SCENE = {"cube_xy_range": 0.03, "cube_yaw_range": math.pi / 4}


@dataclass
class LiftOutcome:
    seed: int
    success: bool
    t_success: float | None  # seconds from the first command to success
    rise: float  # highest cube centre above its start, m
    commands: int  # joint commands that reached the arm
    violations: int  # of them outside the configured limits (must be 0)
    holds: int  # daemon hold events (clamps that reject, starvation, watchdog)
    hold_reasons: dict  # reason -> count, over hold and hold_reason events
    stops: int
    policy_errors: int
    wall_s: float


class SimClock:
    """A clock the caller advances (`sleep` only moves it forward)."""

    def __init__(self, t: float = 1000.0):
        self.t = t

    def __call__(self) -> float:
        return self.t

    def sleep(self, dt: float) -> None:
        self.t += max(0.0, dt)


class CheckedDriver:
    """Wraps a driver; checks every command against the limits (the step bound across a hold/stop is
    not checked: the daemon restarts from the measured position) and counts the violations."""

    def __init__(self, inner, cfg: RobotConfig, kin: Kinematics):
        self.inner, self.cfg, self.kin = inner, cfg, kin
        self.commands = 0
        self.violations: list[str] = []
        self._prev: np.ndarray | None = None

    def send(self, command: JointCommand) -> None:
        if not within_limits(command.q, self._prev, self.cfg.joints, self.cfg.period, tol=1e-6):
            self.violations.append(f"joint limits at t={command.t:.3f}")
        if not self.cfg.workspace.contains(self.kin.fk(command.q)):
            self.violations.append(f"workspace at t={command.t:.3f}")
        self.commands += 1
        self._prev = command.q.copy()
        self.inner.send(command)

    def hold(self) -> None:
        self._prev = None
        self.inner.hold()

    def stop(self) -> None:
        self._prev = None
        self.inner.stop()

    def connect(self) -> None:
        self.inner.connect()

    def read_state(self):
        return self.inner.read_state()

    def close(self) -> None:
        self.inner.close()


def run_lift_episode(cfg: RobotConfig, policy, seed: int, realtime: bool = True, recorder=None,
                     time_limit: float = 10.0, success_z: float = SUCCESS_Z, kin: Kinematics | None = None,
                     device: str = "cpu", scene: dict | None = None) -> LiftOutcome:
    """One lift attempt of `policy` through the daemon on a fresh sim arm (cube placed by `seed`;
    `scene` overrides driver options, default `SCENE`)."""
    from robolearn.real_robot.drivers.sim import SimDriver
    from robolearn.real_robot.drivers.stepped import SteppedSimDriver

    kin = kin or Kinematics(cfg.model, cfg.joints.names, base_pos=cfg.base_pos)
    clock = time.monotonic if realtime else SimClock()
    opts = {**(SCENE if scene is None else scene), "seed": int(seed)}
    inner = SimDriver(cfg, **opts) if realtime else SteppedSimDriver(cfg, clock, **opts)
    drv = CheckedDriver(inner, cfg, kin)
    if hasattr(policy, "reset"):
        policy.reset()
    import torch

    torch.manual_seed(seed)
    sleep = time.sleep if realtime else clock.sleep
    d = Daemon(cfg, drv, policy, events=EventLog(None), kinematics=kin, clock=clock, sleep=sleep, device=device,
               recorder=recorder)
    w0 = time.perf_counter()
    z0, top, t_first, t_success = None, -np.inf, None, None

    def watch(now: float) -> None:  # on the state the daemon last read (no extra driver call)
        nonlocal z0, top, t_first, t_success
        st = d.obs.latest()
        if st is None:
            return
        z = float(st.extra["object"][2])
        z0 = z if z0 is None else z0
        top = max(top, z)
        if t_first is None and drv.commands:
            t_first = now
        if z > success_z and t_success is None:
            t_success = now - (t_first if t_first is not None else now)
            d.request_quit()

    try:
        d.start()
    except BaseException:
        d.shutdown()
        raise
    t0 = clock()
    if realtime:
        d.run(duration=time_limit, on_tick=watch)  # shuts the daemon down at the end
    else:
        try:
            while t_success is None and clock() - t0 < time_limit:
                clock.t += cfg.period
                d.tick(clock.t)
                d.worker.wait_idle()
                watch(clock.t)
        finally:
            d.shutdown()
    kinds = d.events.kinds()
    reasons = collections.Counter(r.split(":")[0] for e in d.events.events if e["kind"] in ("hold", "hold_reason")
                                  for r in e["why"])
    return LiftOutcome(
        seed=int(seed), success=t_success is not None,
        t_success=None if t_success is None else round(float(t_success), 3),
        rise=round(float(top - z0), 4) if z0 is not None else 0.0, commands=drv.commands,
        violations=len(drv.violations), holds=kinds.count("hold"), hold_reasons=dict(reasons),
        stops=kinds.count("stop"), policy_errors=kinds.count("policy_error"),
        wall_s=round(time.perf_counter() - w0, 2))


def summarize(outcomes: list[LiftOutcome]) -> dict:
    """Success rate with its Wilson 95% interval, the lift times, and the safety counters."""
    from robolearn.stats import wilson_interval

    n, k = len(outcomes), sum(o.success for o in outcomes)
    times = [o.t_success for o in outcomes if o.success]
    lo, hi = wilson_interval(k, n)
    return {
        "episodes": n, "successes": k, "success_rate": round(k / n, 4) if n else 0.0,
        "wilson95": [round(lo, 4), round(hi, 4)],
        "t_success_s_mean": round(float(np.mean(times)), 3) if times else None,
        "violations": sum(o.violations for o in outcomes),
        "holds": sum(o.holds for o in outcomes),
        "hold_reasons": dict(sum((collections.Counter(o.hold_reasons) for o in outcomes), collections.Counter())),
        "stops": sum(o.stops for o in outcomes),
        "policy_errors": sum(o.policy_errors for o in outcomes),
        "seeds_failed": [o.seed for o in outcomes if not o.success],
    }


def record_lift_demos(cfg: RobotConfig, policy, store_path, seeds, realtime: bool = False, time_limit: float = 10.0,
                      keep_failures: bool = False, scene: dict | None = None) -> list[LiftOutcome]:
    """Run `policy` (a scripted demonstrator, e.g. the tests' `MarkovLiftPolicy`) through the daemon once per
    seed and append each successful run to a new episode store at `store_path` (the daemon's commanded
    actions at the policy rate + observations, `record.EpisodeRecorder`), ready for `robolearn train`."""
    from robolearn.datasets.store import EpisodeStore
    from robolearn.real_robot.record import EpisodeRecorder

    # `env` says where the demos come from; it names no robosuite kwargs, so `robolearn eval` of a policy
    # trained on them builds the default robosuite Lift (same observation keys and action space)
    env = {"source": "robolearn serve", "robot_config": cfg.name, "driver": cfg.driver, "control_hz": cfg.control_hz,
           "action_dt": cfg.scheduling.action_dt, "action_space": cfg.action.space, "scene": scene or SCENE,
           "realtime": bool(realtime)}
    store = EpisodeStore.create(store_path, attrs={"task": "lift", "env": env})
    kin = Kinematics(cfg.model, cfg.joints.names, base_pos=cfg.base_pos)
    outcomes = []
    for seed in seeds:
        rec = EpisodeRecorder()
        o = run_lift_episode(cfg, policy, int(seed), realtime=realtime, recorder=rec, time_limit=time_limit, kin=kin,
                             scene=scene)
        outcomes.append(o)
        if len(rec) and (o.success or keep_failures):
            rec.save(store, seed=int(seed), success=bool(o.success), demonstrator=type(policy).__name__)
    store.compute_stats()
    return outcomes

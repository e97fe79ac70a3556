"""The control daemon: a fixed-rate loop that is the only thing talking to the arm.

Each tick, on absolute deadlines of `time.monotonic`:

1. e-stop requested -> `driver.stop()` this tick, latched until re-armed;
2. read the robot state (non-blocking); record it in the observation history;
3. collect finished inference results and schedule them (late actions dropped);
4. ask the watchdog: "stop" -> stop and latch; "hold" -> `driver.hold()`;
5. take the scheduled action at `now`, turn it into a joint target (adapter),
   pass it through the safety filter, `driver.send()` it;
6. if the worker is idle and the schedule runs low, submit a new inference
   request at the start of an action slot (it never waits for the answer).

Every request carries the daemon's current goal (`robolearn.goal.Goal`: an instruction, goal
images, goal state; None = no goal). `set_goal` changes it from any thread (the control socket's
`goal <instruction>` line does); it is checked against the goal modalities the policy was trained
with, and the first chunk requested after the change is for the new goal.

Policy supervision: with a `PolicyProcess` (`--inference process`) the daemon checks the child every
tick; an exit is logged with its exit code (`policy_exit`), the arm holds and the process is restarted
(`policy_restarted`) up to `[safety].policy_restarts` times; the exit after that stops the arm and
ends the run with `fatal` set (the CLI prints it as one line and exits non-zero). Likewise a policy
server that stays unreachable (requests timing out) for longer than `[safety].stop_after_s`: stop
and end, never retry forever.

`run()` ends with `finally: driver.stop()`. `tick(now)` is the whole cycle for
one time value, so tests can drive it with a fake clock.
"""

from __future__ import annotations

import logging
import math
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from robolearn.goal import Goal, GoalConfig, check_goal
from robolearn.real_robot.adapter import ActionAdapter
from robolearn.real_robot.checkpoint import goal_config
from robolearn.real_robot.config import RobotConfig
from robolearn.real_robot.driver import Driver, DriverError, JointCommand
from robolearn.real_robot.events import EventLog
from robolearn.real_robot.model import Kinematics
from robolearn.real_robot.safety import SafetyFilter
from robolearn.policies.scheduling import Chunk, ChunkScheduler
from robolearn.real_robot.watchdog import HOLD, STOP, Watchdog
from robolearn.real_robot.worker import ObsHistory, PolicyProcess, PolicyWorker, Request, obs_from_state

log = logging.getLogger(__name__)

RUN, HOLDING, STOPPED = "run", "hold", "stopped"


@dataclass
class LoopStats:
    tick_start: list[float] = field(default_factory=list)  # actual start times
    lateness: list[float] = field(default_factory=list)  # start - deadline
    busy: list[float] = field(default_factory=list)  # tick duration
    deadline_misses: int = 0  # ticks that ended after the next deadline
    skipped: int = 0  # whole periods skipped after an overrun
    inference_latency: list[float] = field(default_factory=list)
    obs_to_command: list[float] = field(default_factory=list)  # obs measured -> first command from its chunk


@dataclass
class PolicySpec:
    """What the daemon needs to know about the policy (from `policy.config`)."""

    obs_keys: list[str]
    obs_horizon: int
    horizon: int
    n_action_steps: int
    action_dim: int
    goal: GoalConfig = field(default_factory=GoalConfig)  # the goal modalities it was trained with

    @classmethod
    def of(cls, policy) -> "PolicySpec":
        c = policy.config
        return cls(list(c.obs_keys), int(c.obs_horizon), int(c.horizon), int(c.n_action_steps), int(c.action_dim),
                   goal_config(policy))


class Daemon:
    def __init__(self, cfg: RobotConfig, driver: Driver, policy, events: EventLog | None = None,
                 kinematics: Kinematics | None = None, clock=time.monotonic, sleep=time.sleep,
                 device: str = "cpu", recorder=None, goal: Goal | None = None,
                 supervisor: PolicyProcess | None = None):
        self.cfg = cfg
        self.supervisor = supervisor  # the policy's process, when it runs in one (policy = its client)
        self.fatal: str | None = None  # why the run ended on a fault it cannot recover from (one line)
        self._unreachable_since: float | None = None  # start of the first of consecutive unanswered requests
        self.recorder = recorder  # an EpisodeRecorder: (obs, action) at each new action slot
        self._rec_slot: int | None = None
        self.driver = driver
        self.policy = policy
        self.spec = PolicySpec.of(policy)
        self.events = events or EventLog(None)
        self.clock, self.sleep = clock, sleep
        self.kin = kinematics if kinematics is not None else Kinematics(cfg.model, cfg.joints.names, base_pos=cfg.base_pos)
        self.adapter = ActionAdapter(cfg.action, cfg.joints.dof, self.kin)
        if self.spec.action_dim != self.adapter.action_dim:
            raise ValueError(f"policy action_dim {self.spec.action_dim} != {self.adapter.action_dim} "
                             f"for [action].space = {cfg.action.space!r}")
        self.safety = SafetyFilter(cfg.joints, cfg.workspace, cfg.period, fk=self.kin.fk,
                                   gripper_step=cfg.safety.gripper_step)
        s = cfg.scheduling
        self.sched = ChunkScheduler(s.mode, s.action_dt, s.exec_latency_s, s.ensemble_k, s.rtc_blend_steps)
        self.worker = PolicyWorker(policy, self.spec.action_dim, device=device, clock=clock)
        self.obs = ObsHistory(seconds=max(3.0, 2 * self.spec.obs_horizon * s.action_dt))
        self.stats = LoopStats()
        self.mode = HOLDING
        self.tick_n = 0
        self.resume_after = -math.inf  # chunks from observations before this are stale
        self._estop = threading.Event()
        self._rearm = threading.Event()
        self._quit = threading.Event()
        self._seq = 0
        self._last_req_slot: int | None = None
        self._chunk_t_obs: dict[int, float] = {}
        self._last_src = -1
        self.watchdog: Watchdog | None = None
        self.last_command: JointCommand | None = None
        self._hold_why: list[str] = []
        self._clamp_key: tuple = ()
        self._clamp_ticks = 0
        self._goal_lock = threading.Lock()
        self._goal: Goal | None = None
        self._goal_announced: Goal | None = None  # the goal the event log last named
        self.set_goal(goal)

    # ---- external requests (thread/signal safe: they only set flags) --------------------------
    def request_estop(self) -> None:
        self._estop.set()

    def request_rearm(self) -> None:
        self._rearm.set()

    def request_quit(self) -> None:
        self._quit.set()

    def set_goal(self, goal: Goal | None) -> None:
        """The goal every following inference request carries (None: no goal). UserError, and the goal
        unchanged, if the policy was not trained for it (modality, camera, size)."""
        check_goal(goal, self.spec.goal, where="goal")
        with self._goal_lock:
            self._goal = goal

    @property
    def goal(self) -> Goal | None:
        with self._goal_lock:
            return self._goal

    # ---- lifecycle ----------------------------------------------------------------------------
    def start(self) -> None:
        self.driver.connect()
        st = self.driver.read_state()
        missing = [k for k in self.spec.obs_keys if k not in _obs_keys_of(st)]
        if missing:
            raise ValueError(f"the robot provides no observation {missing} (has {sorted(_obs_keys_of(st))})")
        self.obs.add(st)
        self.safety.reset(st.q, st.gripper)
        import torch  # noqa: F401  (imported here: an import inside the worker thread would stall the loop)

        sys.setswitchinterval(0.0005)  # the control thread gets the GIL back quickly from the worker
        dt = self.cfg.scheduling.action_dt
        req = Request(0, self.obs.window(st.t, self.spec.obs_horizon, dt, self.spec.obs_keys), st.t, 0, None, self.goal)
        try:
            warm = self.worker.warmup(req)
        except Exception as exc:
            raise ValueError(f"the policy fails on the robot's observation ({type(exc).__name__}: {exc})") from None
        self.events.emit("warmup", 0, self.clock(), inference_s=warm)
        if warm > self.cfg.safety.inference_deadline_s:
            log.warning("warm inference takes %.3f s > inference_deadline_s %.3f s: the arm will mostly hold",
                        warm, self.cfg.safety.inference_deadline_s)
        self.watchdog = Watchdog(self.cfg.safety, self.clock())
        self.watchdog.obs(st.t)
        self.worker.start()
        self.driver.hold()
        self.events.emit("start", 0, self.clock(), robot=self.cfg.name, mode=self.cfg.scheduling.mode,
                         rtc_hook=self.worker.has_prefix_hook)

    def run(self, max_ticks: int | None = None, duration: float | None = None,
            on_tick: Callable[[float], None] | None = None) -> LoopStats:
        """The fixed-rate loop until quit, ``max_ticks`` or ``duration``; ``on_tick(now)`` runs after
        each tick, outside the measured busy time (a test or benchmark watching the arm)."""
        period = self.cfg.period
        try:
            if self.watchdog is None:
                self.start()
            t0 = self.clock()
            k = 0
            while not self._quit.is_set():
                deadline = t0 + k * period
                now = self.clock()
                if now < deadline:
                    self.sleep(deadline - now)
                    now = self.clock()
                self.stats.tick_start.append(now)
                self.stats.lateness.append(now - deadline)
                self.tick(now)
                end = self.clock()
                self.stats.busy.append(end - now)
                if on_tick is not None:
                    on_tick(now)
                k += 1
                if end > t0 + k * period:  # overran into the next period
                    self.stats.deadline_misses += 1
                    behind = math.floor((end - t0) / period) - k
                    if behind > 0:  # never burst to catch up: skip whole periods
                        self.stats.skipped += behind
                        k += behind
                if (max_ticks is not None and self.tick_n >= max_ticks) or (
                        duration is not None and end - t0 >= duration):
                    break
        finally:
            self.shutdown()
        return self.stats

    def shutdown(self) -> None:
        try:
            self.driver.stop()
        except Exception as exc:  # stop must never raise, but be sure
            log.error("driver.stop() failed: %s", exc)
        self.events.emit("shutdown", self.tick_n, self.clock())
        self.worker.close()
        if self.supervisor is not None:
            self.supervisor.close()
        try:
            self.driver.close()
        except Exception as exc:
            log.warning("driver.close() failed: %s", exc)
        self.events.close()

    # ---- one cycle ----------------------------------------------------------------------------
    def tick(self, now: float) -> None:
        self.tick_n += 1
        wd = self.watchdog
        assert wd is not None, "call start() first"
        if self._estop.is_set():
            self._estop.clear()
            wd.estop()
            self._enter_stop(now, ["estop"])
            return
        if self._rearm.is_set():
            self._rearm.clear()
            self._do_rearm(now)
        st = self._read_state(now)
        self._collect(now)
        policy_down = self._supervise(now)
        wd.heartbeat(self.worker.last_beat, self.worker.alive)
        v = wd.verdict(now)
        if self.mode == STOPPED:
            return
        if v.level == STOP:
            self._enter_stop(now, v.reasons)
            return
        if v.level == HOLD or policy_down:
            self._enter_hold(now, v.reasons + policy_down, stale_plan=True)
            self._maybe_submit(now)
            return
        a, slot = self.sched.action_at(now, interpolate=self.adapter.interpolate)
        if a is None:
            self._enter_hold(now, ["starved"], stale_plan=False)
            self._maybe_submit(now)
            return
        if self.mode == HOLDING:
            self._leave_hold(now, st)
        self._command(now, a, slot, st)
        self._maybe_submit(now)

    def _read_state(self, now: float):
        try:
            st = self.driver.read_state()
        except DriverError as exc:
            if self.watchdog.driver_error_since is None:
                self.events.emit("driver_error", self.tick_n, now, error=str(exc))
            self.watchdog.driver_error(now)
            return self.obs.latest()
        self.watchdog.driver_ok()
        if self.obs.add(st):
            self.watchdog.obs(st.t)
        return st

    def _collect(self, now: float) -> None:
        for r in self.worker.poll():
            self.watchdog.inference_end(now)
            if r.gen != self.worker.gen:  # a request to a policy process that has since been replaced
                self.events.emit("chunk_stale", self.tick_n, now, seq=r.seq, why="old_policy_process")
                continue
            self.stats.inference_latency.append(r.t_end - r.t_start)
            if r.actions is None:
                self.events.emit("policy_error", self.tick_n, now, error=r.error)
                if r.unreachable and self._unreachable_since is None:
                    self._unreachable_since = r.t_start
                continue
            self._unreachable_since = None
            if r.t_obs < self.resume_after or self.mode == STOPPED:
                self.events.emit("chunk_stale", self.tick_n, now, seq=r.seq)
                continue
            chunk = Chunk(r.k0, r.actions, r.seq, r.t_obs, r.prefix_used)
            dropped = self.sched.add(chunk, now)
            self._chunk_t_obs[r.seq] = r.t_obs
            if dropped:
                self.events.emit("chunk_late", self.tick_n, now, seq=r.seq, dropped=dropped)

    def _supervise(self, now: float) -> list[str]:
        """Watch the policy process (exit -> hold + restart, or stop past the restart budget) and the
        policy server's reachability; returns the hold reasons for this tick ([] = none)."""
        sup = self.supervisor
        if sup is not None and sup.restarting:
            out = sup.poll_restart()
            if out is None:
                return ["policy_restarting"]
            if isinstance(out, BaseException):
                self._fatal(now, "policy_restart_failed", f"the policy process could not be restarted ({out}); "
                                                          "the arm is stopped")
                return []
            self.worker.set_policy(out)
            self._unreachable_since = None
            self.events.emit("policy_restarted", self.tick_n, now, restarts=sup.restarts, pid=sup.proc.pid)
            log.warning("policy process restarted (pid %d, restart %d of %d)", sup.proc.pid, sup.restarts,
                        sup.max_restarts)
        if sup is not None and self.fatal is None and sup.exited():
            code = sup.exitcode()
            self.events.emit("policy_exit", self.tick_n, now, exitcode=code, restarts=sup.restarts)
            log.error("the policy process exited with code %s (%s)", code, _describe_exit(code))
            if sup.restarts >= sup.max_restarts:
                self._fatal(now, "policy_exit", f"the policy process exited with code {code} "
                            f"({_describe_exit(code)}) after {sup.restarts} restart(s) "
                            f"([safety].policy_restarts = {sup.max_restarts}); the arm is stopped")
                return []
            sup.restart()
            return ["policy_exit"]
        since = self._unreachable_since
        if since is not None and now - since > self.cfg.safety.stop_after_s:
            self._fatal(now, "policy_unreachable", f"the policy server did not answer for {now - since:.1f} s "
                        f"(> [safety].stop_after_s = {self.cfg.safety.stop_after_s:g} s); the arm is stopped")
        return []

    def _fatal(self, now: float, reason: str, message: str) -> None:
        """Stop the arm and end the run: a fault the daemon does not recover from by itself."""
        if self.fatal is None:
            self.fatal = message
            log.error(message)
        self._enter_stop(now, [reason])
        self.request_quit()

    def _command(self, now: float, a: np.ndarray, slot: int, st=None) -> None:
        q_target, g = self.adapter.target(a, slot, self.safety.q_prev)
        res = self.safety.filter(q_target, g)
        if not res.ok:
            self.events.emit("reject", self.tick_n, now, why=res.interventions)
            self._enter_hold(now, res.interventions, stale_plan=True)
            return
        self._log_clamps(now, res.interventions)
        cmd = JointCommand(now, res.q, res.gripper)
        try:
            self.driver.send(cmd)
        except DriverError as exc:
            self.watchdog.driver_error(now)
            self.events.emit("driver_error", self.tick_n, now, error=str(exc))
            return
        self.last_command = cmd
        if self.recorder is not None and slot != self._rec_slot and st is not None:  # only what reached the arm
            self._rec_slot = slot
            self.recorder.add(obs_from_state(st), a)
        src = self.sched.committed.get(slot, (None, -1))[1]
        if src != self._last_src and src in self._chunk_t_obs:
            self.stats.obs_to_command.append(now - self._chunk_t_obs.pop(src))
            self._last_src = src

    def _log_clamps(self, now: float, why: list[str]) -> None:
        """One event per run of identical clamping (with its length), not one per tick."""
        key = tuple(why)
        if key == self._clamp_key:
            self._clamp_ticks += 1
            return
        if self._clamp_key:
            self.events.emit("clamp_end", self.tick_n, now, why=list(self._clamp_key), ticks=self._clamp_ticks)
        if key:
            self.events.emit("clamp", self.tick_n, now, why=list(key))
        self._clamp_key, self._clamp_ticks = key, 1

    def _maybe_submit(self, now: float) -> None:
        if self.worker.busy or self.mode == STOPPED or not self.worker.alive:
            return
        if self.supervisor is not None and self.supervisor.restarting:
            return
        st = self.obs.latest()
        if st is None or now - st.t > self.cfg.safety.obs_stale_s:
            return
        self.sched.anchor(now)
        k = self.sched.slot_of(now)
        if k == self._last_req_slot or now - self.sched.slot_time(k) >= self.cfg.period - 1e-9:
            return  # ask only on the first tick of a slot, once
        if not self.sched.wants_chunk(k + 1, self.spec.horizon, self.spec.n_action_steps):  # slot k already runs
            return
        dt = self.cfg.scheduling.action_dt
        k0 = self.sched.nearest_slot(st.t) + self.cfg.scheduling.action_offset
        prefix = None
        if self.sched.mode == "rtc":
            n_prefix = max(1, math.ceil(self.cfg.scheduling.rtc_prefix_s / dt))
            prefix = self.sched.prefix(k0, min(n_prefix, self.spec.horizon - 1))
        self._seq += 1
        goal = self.goal
        if goal is not self._goal_announced:
            self._goal_announced = goal
            self.events.emit("goal", self.tick_n, now, seq=self._seq, **_describe_goal(goal))
        req = Request(self._seq, self.obs.window(st.t, self.spec.obs_horizon, dt, self.spec.obs_keys), st.t, k0, prefix,
                      goal)
        if self.worker.submit(req):
            self._last_req_slot = k
            self.watchdog.inference_start(now)

    # ---- mode changes -------------------------------------------------------------------------
    def _enter_hold(self, now: float, reasons: list[str], stale_plan: bool) -> None:
        if stale_plan:
            self.sched.clear()
            self.resume_after = now
        if self.mode == HOLDING:
            if reasons != self._hold_why and reasons != ["starved"]:
                self._hold_why = reasons
                self.events.emit("hold_reason", self.tick_n, now, why=reasons)
            return
        self.mode = HOLDING
        self._hold_why = reasons
        try:
            self.driver.hold()
        except DriverError as exc:
            self.watchdog.driver_error(now)
            reasons = reasons + [f"hold_failed:{exc}"]
        self.events.emit("hold", self.tick_n, now, why=reasons)

    def _leave_hold(self, now: float, st) -> None:
        if st is not None:
            self.safety.reset(st.q, st.gripper)
        self.adapter.reset()
        self.mode = RUN
        self.events.emit("run", self.tick_n, now)

    def _enter_stop(self, now: float, reasons: list[str]) -> None:
        if self.mode == STOPPED:
            return
        self.mode = STOPPED
        self.driver.stop()
        self.sched.clear()
        self.resume_after = now
        self.events.emit("stop", self.tick_n, now, why=reasons)

    def _do_rearm(self, now: float) -> None:
        if self.mode != STOPPED:
            return
        try:
            self.driver.connect()
        except DriverError as exc:
            self.events.emit("rearm_failed", self.tick_n, now, error=str(exc))
            return
        self.watchdog.rearm(now)
        self.mode = HOLDING
        self.sched.clear()
        self.resume_after = now
        self.events.emit("rearm", self.tick_n, now)


def _describe_exit(code: int | None) -> str:
    """'killed by SIGKILL' for a negative exit code, 'exit status N' otherwise."""
    if code is None:
        return "exit status unknown"
    if code < 0:
        import signal

        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit status {code}"


def _obs_keys_of(st) -> set[str]:
    from robolearn.real_robot.worker import obs_from_state

    return set(obs_from_state(st))


def _describe_goal(goal: Goal | None) -> dict:
    """Event-log fields for a goal (the instruction, which cameras and keys; not the arrays)."""
    if goal is None:
        return {"modalities": []}
    state = {k: np.asarray(v, dtype=float).ravel().tolist() for k, v in goal.state.items()}
    return {"modalities": goal.modalities, "instruction": goal.instruction or "", "images": sorted(goal.images),
            "state": state}

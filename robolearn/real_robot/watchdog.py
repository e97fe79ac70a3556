"""Watchdog: decides, from timestamps alone, whether the loop may move the arm.

Pure (no clock of its own): the daemon feeds it times from `time.monotonic`
and the tests from a fake clock. `verdict(now)` returns a level and reasons:

- "ok": commands may be sent;
- "hold": hold position this tick (recovers by itself when the cause clears):
  observation older than `obs_stale_s`, an inference running longer than
  `inference_deadline_s`, a driver read error;
- "stop": stopped until re-armed: observation stale longer than `stop_after_s`,
  driver failing for `driver_silent_s`, the policy worker thread dead or
  silent for `worker_silent_s` while idle, or an e-stop.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from robolearn.real_robot.config import SafetyConfig

OK, HOLD, STOP = "ok", "hold", "stop"


@dataclass
class Verdict:
    level: str
    reasons: list[str] = field(default_factory=list)


class Watchdog:
    def __init__(self, cfg: SafetyConfig, now: float):
        self.cfg = cfg
        self.last_obs_t = now  # measurement time of the freshest robot state
        self.driver_error_since: float | None = None
        self.inference_started: float | None = None
        self.worker_beat = now
        self.worker_alive = True
        self.estopped = False

    # ---- inputs ---------------------------------------------------------------------------
    def obs(self, t_measured: float) -> None:
        self.last_obs_t = max(self.last_obs_t, t_measured)

    def driver_ok(self) -> None:
        self.driver_error_since = None

    def driver_error(self, now: float) -> None:
        if self.driver_error_since is None:
            self.driver_error_since = now

    def inference_start(self, now: float) -> None:
        self.inference_started = now

    def inference_end(self, now: float) -> None:
        self.inference_started = None
        self.worker_beat = now

    def heartbeat(self, now: float, alive: bool = True) -> None:
        self.worker_beat = max(self.worker_beat, now)
        self.worker_alive = alive

    def estop(self) -> None:
        self.estopped = True

    def rearm(self, now: float) -> None:
        self.estopped = False
        self.worker_beat = now
        self.driver_error_since = None

    # ---- output -----------------------------------------------------------------------------
    def verdict(self, now: float) -> Verdict:
        c = self.cfg
        stop, hold = [], []
        if self.estopped:
            stop.append("estop")
        age = now - self.last_obs_t
        if age > c.stop_after_s:
            stop.append(f"obs_stale:{age:.3f}s")
        elif age > c.obs_stale_s:
            hold.append(f"obs_stale:{age:.3f}s")
        if self.driver_error_since is not None:
            (stop if now - self.driver_error_since > c.driver_silent_s else hold).append("driver_error")
        if not self.worker_alive:
            stop.append("worker_dead")
        elif self.inference_started is None and now - self.worker_beat > c.worker_silent_s:
            stop.append("worker_silent")
        if self.inference_started is not None and now - self.inference_started > c.inference_deadline_s:
            hold.append("inference_deadline")
        if stop:
            return Verdict(STOP, stop + hold)
        if hold:
            return Verdict(HOLD, hold)
        return Verdict(OK)

"""Franka (FR3 / Panda) driver on franky, the libfranka client library (`pip install "robolearn[franka]"`).

The same code drives a real arm (robot config `[driver_options] host = "<FCI address>"`) and
franky-sim, a simulated FR3 that speaks the libfranka network protocol on loopback
(`real_robot/franky_env.sh` builds it; `real_robot/franka_fr3.toml`).

Motion type. The daemon streams one joint target per control tick (100 Hz) and expects the arm to
track it compliantly, like the sim arm's joint impedance. franky's closest motion is
`JointImpedanceTrackingMotion`: a client-side joint impedance controller running in libfranka's
1 kHz loop (torque commands, gravity compensated by the arm, Coriolis compensated by franky) whose
reference is swapped without blocking (`set_reference`, ~30 us) and picked up the next millisecond.
We chose it over re-issuing a `JointWaypointMotion` every tick (franky preempts and re-plans a
Ruckig trajectory per call: its own velocity/acceleration shaping on top of our safety filter, and a
planning cost inside our tick) and over `JointPositions` motion generators (a position interface
with the arm's internal joint impedance, which rejects any target discontinuity beyond its own
limits with a reflex error instead of tracking it). The safety filter has already bounded each
target's step, velocity and acceleration, so the impedance only has to follow a smooth path.

State without blocking the loop. While a motion runs, franky returns the control loop's latest
state in about a microsecond; while none runs (before `connect`, after `stop`), reading the state
waits for the next UDP state packet (up to a few ms, longer on a lost link). So a reader thread
polls the state and keeps the latest as a `RobotState` stamped with `time.monotonic()` when a new
robot time was first seen; `read_state` only copies it. Gripper width is read (and gripper commands
issued) in a second thread: the Franka hand is a slow, command-at-a-time device (a `move` or `grasp`
takes ~1 s), so the daemon's continuous gripper command becomes open/close with hysteresis
(close at >= 0.6, open at <= 0.4): `grasp(0, speed, force)` with wide tolerances (it holds with
`force` whatever the width) and `move(max_width)` to open, each issued once the previous one has
finished (a change of mind waits for it: aborting with the hand's `stop` drops the running
command's reply in franky-sim 1.0.4, which then fails the connection).

Hold = the impedance reference set to the measured joints. Stop = the vendor's `Robot.stop()`
(preempts the motion; the arm holds with its internal controller) and commands are refused until
`connect()`, which recovers from reflex errors (`recover_from_errors`) and starts a new motion.
A motion that ends by itself (reflex, lost link, server gone) makes `send`/`hold` raise
`DriverError` with franky's reason; the daemon holds, then stops. Connecting to an address that
does not answer fails within `connect_timeout_s` (franky's own connect has no timeout).

Frames: `eef_pos` = the arm's `O_T_EE` translation + `base_pos` (the base frame's axes are taken as
the config frame's), `eef_quat` = `O_T_EE` rotation, xyzw. `O_T_EE` is the Franka hand's TCP (flange
+ 0.1034 m); robosuite's Panda grip site, which the daemon's kinematics model uses for the workspace
box and the IK, lies 7 mm further along the tool axis (measured against franky-sim).

Driver options (`[driver_options]`): host, arm ("fr3" | "panda": the datasheet `robolearn robot check`
and `serve` hold the limits to), gripper (true), stiffness (Nm/rad, 7), damping (7 or omitted =
critical), realtime ("enforce" | "ignore": franky refuses to run without a real-time kernel unless
"ignore"), connect_timeout_s, state_poll_s, gripper_speed (m/s), grasp_force (N).
"""

from __future__ import annotations

import logging
import threading
import time

import numpy as np

from robolearn.errors import UserError
from robolearn.real_robot.config import RobotConfig
from robolearn.real_robot.driver import DriverError, JointCommand, RobotState

log = logging.getLogger(__name__)

NEEDED = ("Robot", "Gripper", "RealtimeConfig", "JointImpedanceTrackingMotion", "JointReference")
DEFAULTS = dict(host="", arm="fr3", gripper=True, stiffness=[600.0, 600.0, 600.0, 600.0, 250.0, 150.0, 50.0], damping=None,
                realtime="enforce", connect_timeout_s=2.0, state_poll_s=0.002, gripper_speed=0.05,
                grasp_force=20.0, gripper_poll_s=0.02)

# Vendor datasheet limits (rad, rad/s, rad/s^2) per arm, for `robolearn robot check` and franka_fr3.toml.
DATASHEET = {
    "fr3": dict(pos_min=[-2.7437, -1.7837, -2.9007, -3.0421, -2.8065, 0.5445, -3.0159],
                pos_max=[2.7437, 1.7837, 2.9007, -0.1518, 2.8065, 4.5169, 3.0159],
                vel_max=[2.62, 2.62, 2.62, 2.62, 5.26, 4.18, 5.26],
                acc_max=[10.0, 10.0, 10.0, 10.0, 10.0, 10.0, 10.0]),
    "panda": dict(pos_min=[-2.8973, -1.7628, -2.8973, -3.0718, -2.8973, -0.0175, -2.8973],
                  pos_max=[2.8973, 1.7628, 2.8973, -0.0698, 2.8973, 3.7525, 2.8973],
                  vel_max=[2.175, 2.175, 2.175, 2.175, 2.61, 2.61, 2.61],
                  acc_max=[15.0, 7.5, 10.0, 12.5, 15.0, 20.0, 20.0]),
}


def import_franky(where: str):
    """franky, checked for every type this driver uses (UserError naming what is missing)."""
    try:
        import franky
    except ImportError:
        raise UserError(f"{where}: driver 'franka' needs franky-control: pip install \"robolearn[franka]\"") from None
    missing = [n for n in NEEDED if not hasattr(franky, n)]
    if missing:
        from importlib.metadata import PackageNotFoundError, version

        try:
            v = version("franky-control")
        except PackageNotFoundError:
            v = "?"
        raise UserError(f"{where}: franky-control {v} lacks {', '.join(missing)} (streamed joint impedance "
                        "targets need franky-control 2.0): pip install \"robolearn[franka]\"")
    return franky


def _call_with_timeout(fn, timeout: float, what: str):
    """fn() in a helper thread; DriverError if it raises or has not returned within `timeout` s."""
    box: dict = {}

    def run() -> None:
        try:
            box["value"] = fn()
        except Exception as exc:  # reported below
            box["error"] = exc

    th = threading.Thread(target=run, name="franka-connect", daemon=True)
    th.start()
    th.join(timeout)
    if th.is_alive():
        raise DriverError(f"{what}: no answer within {timeout:g} s (arm switched on, FCI enabled, address right?)")
    if "error" in box:
        raise DriverError(f"{what}: {type(box['error']).__name__}: {box['error']}")
    return box["value"]


class FrankaDriver:
    def __init__(self, cfg: RobotConfig, **overrides):
        self.cfg = cfg
        self.franky = import_franky(f"{cfg.source}: driver")
        o = {**DEFAULTS, **cfg.driver_options, **overrides}
        if not isinstance(o["host"], str) or not o["host"]:
            raise UserError(f"{cfg.source}: [driver_options].host: the arm's FCI address is required")
        if o["realtime"] not in ("enforce", "ignore"):
            raise UserError(f"{cfg.source}: [driver_options].realtime: expected \"enforce\" or \"ignore\"")
        if cfg.joints.dof != 7:
            raise UserError(f"{cfg.source}: [joints]: a Franka arm has 7 joints, the config names {cfg.joints.dof}")
        self.o = o
        self.host = o["host"]
        self.base = np.asarray(cfg.base_pos, dtype=np.float64)
        self.robot = None
        self.gripper = None
        self.motion = None
        self.max_width = 0.08
        self._state: RobotState | None = None
        self._error: tuple[str, float] | None = None  # (message, since) from the reader thread
        self._grip_error: str | None = None
        self._grip_cmd = 0.0  # last commanded gripper value, 0 open .. 1 closed
        self._grip_closed = False  # what the hand was last told
        self._width = self.max_width
        self._quit = threading.Event()
        self._threads: list[threading.Thread] = []
        self.n_states = 0  # distinct robot states seen by the reader (for rate measurements)

    # ---- connection ------------------------------------------------------------------------------
    def _open(self) -> None:
        fr, timeout = self.franky, float(self.o["connect_timeout_s"])
        rt = fr.RealtimeConfig.Ignore if self.o["realtime"] == "ignore" else fr.RealtimeConfig.Enforce
        self.robot = _call_with_timeout(lambda: fr.Robot(self.host, realtime_config=rt), timeout,
                                        f"franka {self.host}")
        if self.o["gripper"]:
            self.gripper = _call_with_timeout(lambda: fr.Gripper(self.host), timeout, f"franka gripper {self.host}")
            self.max_width = float(_call_with_timeout(lambda: self.gripper.max_width, timeout, "franka gripper"))
        self._quit.clear()
        self._threads = [threading.Thread(target=self._read_loop, name="franka-state", daemon=True)]
        if self.gripper is not None:
            self._threads.append(threading.Thread(target=self._gripper_loop, name="franka-gripper", daemon=True))
        for th in self._threads:
            th.start()
        t_end = time.monotonic() + timeout
        while self._state is None and time.monotonic() < t_end:
            time.sleep(0.005)
        if self._state is None:
            raise DriverError(f"franka {self.host}: no robot state within {timeout:g} s"
                              + (f" ({self._error[0]})" if self._error else ""))

    def connect(self) -> None:
        if self.robot is None:
            self._open()
        fr, r = self.franky, self.robot
        try:
            try:
                r.join_motion(0.5)  # collect the previous motion's end (a stop's preemption) before a new one
            except Exception:
                pass
            if r.has_errors and not r.recover_from_errors():
                raise DriverError(f"franka {self.host}: the arm is in an error state and did not recover")
            kw = {"stiffness": np.asarray(self.o["stiffness"], dtype=np.float64)}
            if self.o["damping"] is not None:
                kw["damping"] = np.asarray(self.o["damping"], dtype=np.float64)
            m = fr.JointImpedanceTrackingMotion(**kw)
            q = self._state.q if self._state is not None else np.asarray(r.current_joint_positions)
            m.set_reference(fr.JointReference(q=np.asarray(q, dtype=np.float64)))
            r.move(m, asynchronous=True)
        except DriverError:
            raise
        except Exception as exc:
            raise DriverError(f"franka {self.host}: could not start joint impedance control "
                              f"({type(exc).__name__}: {exc})") from None
        self.motion = m

    # ---- background threads ------------------------------------------------------------------------
    def _read_loop(self) -> None:
        r, poll, last = self.robot, float(self.o["state_poll_s"]), None
        while not self._quit.is_set():
            try:
                in_control = r.is_in_control
                s = r.state  # the control loop's latest while in control; else waits for the next packet
                t_robot = s.time.to_msec()
                if t_robot != last:
                    last = t_robot
                    T = s.O_T_EE
                    w = self._width
                    self._state = RobotState(time.monotonic(), np.asarray(s.q, dtype=np.float64).copy(),
                                             np.asarray(s.dq, dtype=np.float64).copy(),
                                             np.asarray(T.translation, dtype=np.float64) + self.base,
                                             np.asarray(T.quaternion, dtype=np.float64).copy(),
                                             np.array([w / 2, -w / 2]), self._grip_cmd)
                    self.n_states += 1
                self._error = None
            except Exception as exc:  # a lost link: the state goes stale, read_state reports it
                if self._error is None:
                    self._error = (f"franka {self.host}: state read failed ({type(exc).__name__}: {exc})",
                                   time.monotonic())
                self._quit.wait(0.01)
                continue
            if in_control:
                time.sleep(poll)

    def _gripper_loop(self) -> None:
        g, o = self.gripper, self.o
        fut = None
        while not self._quit.wait(float(o["gripper_poll_s"])):
            try:
                c = self._grip_cmd
                want = c >= 0.6 if not self._grip_closed else c > 0.4
                if want != self._grip_closed and (fut is None or fut.wait(0)):  # one command at a time
                    if want:
                        fut = g.grasp_async(0.0, float(o["gripper_speed"]), float(o["grasp_force"]), 1.0, 1.0)
                    else:
                        fut = g.move_async(self.max_width, float(o["gripper_speed"]))
                    self._grip_closed = want
                self._width = float(g.width)
                self._grip_error = None
            except Exception as exc:
                self._grip_error = f"franka gripper {self.host}: {type(exc).__name__}: {exc}"

    # ---- Driver protocol -----------------------------------------------------------------------------
    def read_state(self) -> RobotState:
        if self.robot is None:
            raise DriverError("franka: not connected")
        err = self._error
        if err is not None and time.monotonic() - err[1] > 0.02:  # more than a blip
            raise DriverError(err[0])
        if self._grip_error:
            raise DriverError(self._grip_error)
        st = self._state
        if st is None:
            raise DriverError(f"franka {self.host}: no robot state yet")
        return st

    def _check_motion(self) -> None:
        if self.motion is None:
            raise DriverError(f"franka {self.host}: stopped (connect() to re-enable)")
        try:
            running = self.robot.is_in_control
        except Exception as exc:
            raise DriverError(f"franka {self.host}: {type(exc).__name__}: {exc}") from None
        if not running:
            why = "motion ended"
            try:
                self.robot.poll_motion()  # raises the reason the control loop ended with
            except Exception as exc:
                why = f"{type(exc).__name__}: {exc}"
            self.motion = None
            raise DriverError(f"franka {self.host}: the arm left joint impedance control ({why})")

    def _reference(self, q: np.ndarray) -> None:
        q = np.asarray(q, dtype=np.float64)
        if q.shape != (7,) or not np.all(np.isfinite(q)):
            raise DriverError(f"franka: refusing a joint target of shape {q.shape} / non-finite values")
        self._check_motion()
        try:
            self.motion.set_reference(self.franky.JointReference(q=q))
        except Exception as exc:
            raise DriverError(f"franka {self.host}: {type(exc).__name__}: {exc}") from None

    def send(self, command: JointCommand) -> None:
        self._reference(command.q)
        if np.isfinite(command.gripper):
            self._grip_cmd = float(np.clip(command.gripper, 0.0, 1.0))

    def hold(self) -> None:
        st = self._state
        if st is None:
            raise DriverError(f"franka {self.host}: no state to hold at")
        self._reference(st.q)

    def stop(self) -> None:
        self.motion = None  # refuse commands from now on, whatever happens below
        if self.robot is None:
            return
        try:
            self.robot.stop()
        except Exception as exc:  # a lost link: nothing is moving it any more
            log.warning("franka %s: stop failed (%s)", self.host, exc)

    def close(self) -> None:
        self.stop()
        self._quit.set()
        for th in self._threads:
            th.join(1.0)
        self._threads = []
        self.robot = self.gripper = None
        self._state = None

"""`robolearn robot check --robot CONFIG`: is this arm ready for `robolearn serve`? And `serve --dry-run`.

The check runs, in order, stopping at the first failure that makes the rest meaningless:

1. limits     the config is consistent beyond what loading validates: the home pose's end effector
              lies in the workspace box, the per-tick step cap is reachable at the velocity limit;
2. datasheet  every limit inside the vendor datasheet of the arm the driver names (FR3 or Panda:
              `DATASHEET` in drivers/franka.py; the sim arm is robosuite's Panda);
3. connect    the driver connects (an address that does not answer fails within its timeout);
4. state      two reads a moment apart: timestamps advance (the rate of distinct states is reported),
              joints inside their limits, end effector inside the box;
5. motion     a guarded motion: the base joint (vertical axis: no gravity load, the stiffest) turns by
              `MOTION_RAD` and back, every target through the daemon's safety filter at the control rate;
              it must arrive within `TRACK_TOL` rad and no command may break the limits;
6. e-stop     mid-motion `driver.stop()`: the arm comes to rest (joint spread < 0.01 rad over 0.3 s,
              0.6 s after the stop), then `connect()` re-enables it (a re-arm).

Each row prints PASS/FAIL/SKIP with its measurement; the command exits 1 when any row failed.

`DryRunDriver` wraps a driver for `serve --dry-run`: the daemon's whole loop runs (state, inference,
scheduling, IK, safety filter) but every `send` becomes a `hold`, so the arm stays where it is; it
counts the commands that would have been sent.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from robolearn.real_robot.config import RobotConfig
from robolearn.real_robot.driver import DriverError, JointCommand

MOTION_RAD = 0.1  # the guarded motion's amplitude on the base joint (~5 cm at the hand)
GUARD_RAD = 0.3  # rad: the motion is aborted (stop) when the arm is this far from its command
TRACK_TOL = 0.05  # rad: how close the arm must come to the motion's end points: it covered at least half
#                   (franky-sim's arm settles 0.02-0.03 rad short of a joint impedance target even at 600 Nm/rad)


def arm_of(cfg: RobotConfig) -> str | None:
    """The arm whose datasheet bounds this config: [driver_options].arm for a Franka (default "fr3");
    robosuite's Panda for the sim and fake arms; None when unknown."""
    if cfg.driver == "franka":
        return str(cfg.driver_options.get("arm", "fr3"))
    if cfg.driver in ("sim", "fake") and cfg.model == "robosuite:panda":
        return "panda"
    return None


def datasheet_problems(cfg: RobotConfig) -> list[str]:
    """One line per limit outside the datasheet of the named arm ([] if all inside, or no datasheet)."""
    from robolearn.real_robot.drivers.franka import DATASHEET

    arm = arm_of(cfg)
    if arm is None or arm not in DATASHEET:
        return []
    ds = {k: np.asarray(v) for k, v in DATASHEET[arm].items()}
    j, names, out = cfg.joints, cfg.joints.names, []
    if j.dof != len(ds["vel_max"]):
        return [f"[joints]: {j.dof} joints, the {arm} has {len(ds['vel_max'])}"]
    for key, bad in (("pos_min", j.pos_min < ds["pos_min"] - 1e-9), ("pos_max", j.pos_max > ds["pos_max"] + 1e-9),
                     ("vel_max", j.vel_max > ds["vel_max"] + 1e-9), ("acc_max", j.acc_max > ds["acc_max"] + 1e-9)):
        if bad.any():
            joints = [names[i] for i in np.flatnonzero(bad)]
            out.append(f"[joints].{key} beyond the {arm} datasheet for {joints} "
                       f"(datasheet {ds[key][bad].round(4).tolist()}, config {getattr(j, key)[bad].round(4).tolist()})")
    return out


@dataclass
class Row:
    name: str
    status: str  # PASS | FAIL | SKIP
    detail: str


def _limits(cfg: RobotConfig, kin) -> Row:
    j = cfg.joints
    p = kin.fk(j.home)
    if not cfg.workspace.contains(p):
        return Row("limits", "FAIL", f"home pose's end effector {p.round(3).tolist()} is outside the workspace box")
    cap = np.minimum(j.vel_max * cfg.period, j.max_step)
    if np.any(j.acc_max * cfg.period * cfg.period <= 0) or np.any(cap <= 0):
        return Row("limits", "FAIL", "a per-tick step or acceleration bound is zero")
    return Row("limits", "PASS", f"home in the box at {p.round(3).tolist()}; step cap {cap.max():.4f} rad/tick "
                                 f"at {cfg.control_hz:g} Hz")


def _datasheet(cfg: RobotConfig) -> Row:
    arm = arm_of(cfg)
    if arm is None:
        return Row("datasheet", "SKIP", f"no datasheet for driver {cfg.driver!r} / model {cfg.model!r}")
    probs = datasheet_problems(cfg)
    if probs:
        return Row("datasheet", "FAIL", "; ".join(probs))
    from robolearn.real_robot.drivers.franka import DATASHEET

    frac = np.max(cfg.joints.vel_max / np.asarray(DATASHEET[arm]["vel_max"]))
    return Row("datasheet", "PASS", f"inside the {arm} datasheet (velocities at most {100 * frac:.0f} % of it)")


def _wait_rest(drv, seconds: float = 0.3) -> float:
    """Spread (rad) of the measured joints over `seconds`."""
    qs, t_end = [], time.monotonic() + seconds
    while time.monotonic() < t_end:
        qs.append(drv.read_state().q)
        time.sleep(0.01)
    return float(np.ptp(np.array(qs), axis=0).max())


def _settle(drv, timeout: float = 3.0) -> None:
    """Until the arm has stopped moving (joint spread < 0.002 rad over 0.2 s), at most `timeout` s: a
    simulator slower than real time (franky-sim on a loaded CPU) takes longer than the wall clock says."""
    t_end = time.monotonic() + timeout
    while time.monotonic() < t_end and _wait_rest(drv, 0.2) > 0.002:
        pass


def _move(drv, cfg, safety, target: np.ndarray, seconds: float) -> list[str]:
    """Stream targets towards `target` through the safety filter at the control rate; returns problems."""
    from robolearn.real_robot.safety import within_limits

    problems, prev = [], safety.q_prev.copy()
    t_end = time.monotonic() + seconds
    while time.monotonic() < t_end:
        t0 = time.monotonic()
        q_meas = drv.read_state().q  # the guard: the arm must follow what it was sent
        if np.abs(q_meas - prev).max() > GUARD_RAD:
            j = int(np.argmax(np.abs(q_meas - prev)))
            problems.append(f"{cfg.joints.names[j]} is {abs(q_meas[j] - prev[j]):.3f} rad from its command: aborted")
            break
        res = safety.filter(target, safety.g_prev)
        if not res.ok:
            problems.append(f"safety filter rejected the motion ({res.interventions})")
            break
        if not within_limits(res.q, prev, cfg.joints, cfg.period, tol=1e-9):
            problems.append("a command broke the limits")
            break
        drv.send(JointCommand(t0, res.q, res.gripper))
        prev = res.q
        time.sleep(max(0.0, cfg.period - (time.monotonic() - t0)))
    return problems


def run_check(cfg: RobotConfig, driver=None, out=print, track_tol: float = TRACK_TOL) -> bool:
    """Run the checks, print the table; True when nothing failed. `driver` defaults to the config's."""
    from robolearn.real_robot.driver import make_driver
    from robolearn.real_robot.model import Kinematics
    from robolearn.real_robot.safety import SafetyFilter

    kin = Kinematics(cfg.model, cfg.joints.names, base_pos=cfg.base_pos)
    rows = [_limits(cfg, kin), _datasheet(cfg)]
    drv = None
    try:
        if any(r.status == "FAIL" for r in rows):
            raise _Skip("limits failed: the arm is not touched")
        drv = driver if driver is not None else make_driver(cfg.driver, cfg)
        t0 = time.monotonic()
        try:
            drv.connect()
        except DriverError as exc:
            rows.append(Row("connect", "FAIL", str(exc)))
            raise _Skip("no connection") from None
        rows.append(Row("connect", "PASS", f"{type(drv).__name__} in {time.monotonic() - t0:.2f} s"))

        s0 = drv.read_state()
        n, reads, errors, t_end, last = 0, 0, [], time.monotonic() + 0.5, s0.t
        while time.monotonic() < t_end:
            reads += 1
            try:
                s = drv.read_state()
            except DriverError as exc:  # a read that fails now and then is reported; often is a failure
                errors.append(str(exc))
                continue
            if s.t != last:
                n, last = n + 1, s.t
            time.sleep(0.001)
        s1 = drv.read_state()
        bad = [f"{len(errors)} of {reads} reads failed ({errors[0]})"] if len(errors) > 0.05 * reads else []
        if s1.t <= s0.t:
            bad.append("the state's timestamp does not advance")
        if np.any(s1.q < cfg.joints.pos_min) or np.any(s1.q > cfg.joints.pos_max):
            bad.append(f"joints {s1.q.round(3).tolist()} outside the limits")
        if not cfg.workspace.contains(kin.fk(s1.q)):
            bad.append(f"end effector {kin.fk(s1.q).round(3).tolist()} outside the workspace box")
        rows.append(Row("state", "FAIL" if bad else "PASS",
                        "; ".join(bad) or f"{n / 0.5:.0f} states/s, {len(errors)} of {reads} reads failed; "
                                        f"eef {s1.eef_pos.round(3).tolist()}"))
        if bad:
            raise _Skip("state out of bounds: no motion")

        safety = SafetyFilter(cfg.joints, cfg.workspace, cfg.period, fk=kin.fk, gripper_step=cfg.safety.gripper_step)
        safety.reset(s1.q, s1.gripper)
        drv.hold()
        start = s1.q.copy()
        goal = start.copy()
        J = 0  # the wrist joints have low stiffness: franky-sim leaves them up to ~0.07 rad off in some poses
        goal[J] = np.clip(goal[J] + MOTION_RAD, cfg.joints.pos_min[J] + 0.05, cfg.joints.pos_max[J] - 0.05)
        probs = _move(drv, cfg, safety, goal, 1.0)  # the filtered path arrives in well under a second
        _settle(drv)
        err_out = abs(drv.read_state().q[J] - goal[J])
        if not probs:
            probs += _move(drv, cfg, safety, start, 1.0)
        _settle(drv)
        err_back = abs(drv.read_state().q[J] - start[J])
        if err_out > track_tol or err_back > track_tol:
            probs.append(f"tracking error {max(err_out, err_back):.3f} rad > {track_tol} (--track-tol)")
        rows.append(Row("motion", "FAIL" if probs else "PASS", "; ".join(probs) or
                        f"{cfg.joints.names[J]} {goal[J] - start[J]:+.3f} rad and back; "
                        f"errors {err_out:.4f} / {err_back:.4f} rad"))
        if probs:
            raise _Skip("guarded motion failed: no e-stop test")

        safety.reset(drv.read_state().q, s1.gripper)
        target = start.copy()
        target[J] = goal[J]
        _move(drv, cfg, safety, target, 0.3)  # moving when the e-stop comes
        t_stop = time.monotonic()
        drv.stop()
        stop_ms = 1e3 * (time.monotonic() - t_stop)
        _wait_rest(drv, 0.6)  # let it come to rest
        spread = _wait_rest(drv, 0.3)
        ok = spread < 0.01
        detail = f"stop() returned in {stop_ms:.1f} ms; joint spread at rest {spread:.4f} rad"
        try:
            drv.connect()
            drv.hold()
            detail += "; re-armed"
        except DriverError as exc:
            ok, detail = False, detail + f"; re-arm failed: {exc}"
        rows.append(Row("e-stop", "PASS" if ok else "FAIL", detail))
    except _Skip as why:
        done = {r.name for r in rows}
        for name in ("connect", "state", "motion", "e-stop"):
            if name not in done:
                rows.append(Row(name, "SKIP", str(why)))
    except DriverError as exc:
        done = {r.name for r in rows}
        rows.append(Row(next(n for n in ("connect", "state", "motion", "e-stop") if n not in done), "FAIL", str(exc)))
    finally:
        if drv is not None:
            try:
                drv.stop()
            finally:
                drv.close()
    width = max(len(r.name) for r in rows)
    out(f"robot check: {cfg.name} ({cfg.source}, driver {cfg.driver})")
    for r in rows:
        out(f"  {r.name:<{width}}  {r.status:<4}  {r.detail}")
    failed = [r.name for r in rows if r.status == "FAIL"]
    out(f"{'FAIL: ' + ', '.join(failed) if failed else 'PASS'}")
    return not failed


class _Skip(Exception):
    pass


class DryRunDriver:
    """A driver whose `send` holds instead (serve --dry-run): the loop runs, the arm does not move."""

    def __init__(self, driver):
        self.driver = driver
        self.would_send = 0

    def connect(self) -> None:
        self.driver.connect()

    def read_state(self):
        return self.driver.read_state()

    def send(self, command: JointCommand) -> None:
        self.would_send += 1
        self.driver.hold()

    def hold(self) -> None:
        self.driver.hold()

    def stop(self) -> None:
        self.driver.stop()

    def close(self) -> None:
        self.driver.close()

"""The `franka` driver against franky-sim: a simulated FR3 speaking the libfranka network protocol on
loopback, in its own process and virtual environment (.venv-franky, built by real_robot/franky_env.sh;
.ci/run builds it). The daemon drives it through franky-control exactly as it would drive a real arm.

Each test runs the daemon in real time and checks, from the arm's own state read back over the protocol
each tick (joints, joint velocities, end-effector pose), that nothing outside the robot config's limits
reached the arm, and from what the driver was told, that every command was within the limits and that
the hold/stop came in the first tick the fault was visible.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import threading
import time

import numpy as np
import pytest
from doubles import ToyReachPolicy
from rr_helpers import ROOT

from robolearn.real_robot.config import load_robot_config
from robolearn.real_robot.daemon import HOLDING, STOPPED, Daemon
from robolearn.real_robot.safety import within_limits

FR3 = ROOT / "real_robot" / "franka_fr3.toml"
VENV_PY = ROOT / ".venv-franky" / "bin" / "python"
A, B = (0.45, -0.12, 0.45), (0.45, 0.12, 0.45)  # toy reach targets, in the FR3 base frame


class FrankySim:
    """franky-sim (MuJoCo backend) on one loopback address, as a child process."""

    def __init__(self):
        self.host = f"127.0.{random.randint(2, 250)}.{random.randint(2, 250)}"
        self.proc: subprocess.Popen | None = None
        self.log: list[str] = []

    def start(self, timeout: float = 180.0) -> None:
        self.proc = subprocess.Popen([str(VENV_PY), "-u", "-m", "franky_sim.run_server", "--simulator", "mujoco",
                                      "--hostname", self.host], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True, cwd="/")
        ready = threading.Event()

        def pump(out):
            for line in out:
                self.log.append(line.rstrip())
                if "Connect to the server" in line:
                    ready.set()

        threading.Thread(target=pump, args=(self.proc.stdout,), daemon=True).start()
        t_end = time.monotonic() + timeout
        while not ready.wait(0.1):
            if self.proc.poll() is not None or time.monotonic() > t_end:
                self.kill()
                raise RuntimeError("franky-sim did not start:\n" + "\n".join(self.log[-20:]))

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGCONT)
            self.proc.kill()
            self.proc.wait(10)


IN_CI = bool(os.environ.get("CI") or os.environ.get("ROBOLEARN_CI"))  # .ci/run sets ROBOLEARN_CI: never skip there


def _require_franky() -> None:
    try:
        import franky  # noqa: F401
    except ImportError:
        if IN_CI:
            pytest.fail("franky-control is missing in CI: real_robot/franky_env.sh installs it")
        pytest.skip('franky-control is not installed: pip install "robolearn[franka]"')


@pytest.fixture(scope="module")
def sim():
    if not VENV_PY.exists():
        if IN_CI:
            pytest.fail(".venv-franky is missing in CI: .ci/run must run real_robot/franky_env.sh")
        pytest.skip("franky-sim's venv .venv-franky is absent: build it with `bash real_robot/franky_env.sh`")
    _require_franky()
    s = FrankySim()
    s.start()
    yield s
    s.kill()


@pytest.fixture
def arm(sim):
    """The running simulator (restarted if a test killed it), its arm moved back to the start pose with
    franky's own position motion: after a stop, franky-sim 1.0.4 holds joint 3 at a stale elbow target,
    so between tests the arm drifts to poses no test chose (once with the hand 5 cm above the floor)."""
    import franky

    if not sim.alive():
        sim.start()
    robot = franky.Robot(sim.host, realtime_config=franky.RealtimeConfig.Ignore, relative_dynamics_factor=0.3)
    if robot.has_errors:
        robot.recover_from_errors()
    home = load_robot_config(FR3).joints.home
    robot.move(franky.JointWaypointMotion([franky.JointWaypoint(home)]))
    del robot
    yield sim


def fr3_cfg(sim, **overrides):
    ov = {"driver_options.host": sim.host, "control_socket": "", "scheduling.mode": "receding"}
    ov.update(overrides)
    return load_robot_config(FR3, ov)


class Watch:
    """Records, every tick, the arm's state read back from the simulator; runs `actions` [(tick, fn(daemon))]."""

    def __init__(self, d: Daemon, actions):
        self.d = d
        self.samples = []  # (tick time, RobotState)
        self.actions = sorted(actions, key=lambda a: a[0])
        self.done = {}  # tick -> tick_n at which its action ran

    def __call__(self, now: float) -> None:
        try:
            self.samples.append((now, self.d.driver.read_state()))
        except Exception:
            pass
        while self.actions and self.d.tick_n >= self.actions[0][0]:
            n, fn = self.actions.pop(0)
            self.done[n] = self.d.tick_n
            fn(self.d)


def run(cfg, policy, seconds, actions=()):
    """The daemon on the simulated FR3 for `seconds` (real time); records what the driver was told."""
    from robolearn.real_robot.driver import make_driver

    drv = make_driver("franka", cfg)
    sent, pauses, stops = [], [], []
    send, hold, stop = drv.send, drv.hold, drv.stop

    def rec_send(c):
        send(c)  # recorded once the driver has taken it
        sent.append(c)

    def rec_hold():
        pauses.append(len(sent))
        hold()

    def rec_stop():
        stops.append(time.monotonic())
        pauses.append(len(sent))
        stop()

    drv.send, drv.hold, drv.stop = rec_send, rec_hold, rec_stop
    d = Daemon(cfg, drv, policy)
    w = Watch(d, actions)
    d.run(duration=seconds, on_tick=w)
    d.sent, d.pauses, d.stops, d.samples, d.done = sent, pauses, stops, w.samples, w.done
    return d


def check_limits(d, cfg) -> None:
    """Every command within the limits (step bound except across holds), and the arm's own state too."""
    for i, c in enumerate(d.sent):
        prev = d.sent[i - 1].q if i > 0 and i not in d.pauses else None
        assert within_limits(c.q, prev, cfg.joints, cfg.period, tol=1e-6), f"command {i} out of limits"
        assert cfg.workspace.contains(d.kin.fk(c.q)), f"command {i} outside the workspace box"
    j, lo, hi = cfg.joints, cfg.workspace.min - 0.02, cfg.workspace.max + 0.02  # 7 mm tool offset + tracking
    assert len(d.samples) > 0.5 * len(d.stats.tick_start)
    for t, s in d.samples:
        assert np.all(s.q >= j.pos_min - 0.01) and np.all(s.q <= j.pos_max + 0.01), f"arm joints out of limits at {t}"
        assert np.all(s.eef_pos >= lo) and np.all(s.eef_pos <= hi), f"arm hand {s.eef_pos} left the box at {t}"
    # joint speed as the arm moved, over 100 ms windows of its measured positions against the daemon's clock.
    # (Not the simulator's own dq: on a loaded CPU franky-sim runs slower than real time, so a path that is
    # within the limits per wall-clock second is faster per simulated second; and it advances in bursts when
    # it gets the CPU back.) 1.5 x vel_max allows that and the impedance's overshoot: still under 60 % of
    # the FR3 datasheet velocities. The commands themselves are held to the limits exactly (above).
    st = sorted({s.t: s for _, s in d.samples}.values(), key=lambda s: s.t)
    k = 0
    for s0 in st:
        while k < len(st) and st[k].t < s0.t + 0.1:
            k += 1
        if k == len(st):
            break
        v = np.abs(st[k].q - s0.q) / (st[k].t - s0.t)
        assert np.all(v <= 1.5 * j.vel_max), f"arm joint speed {v} over the limit at {s0.t}"


def events(d, kind, after=-np.inf):
    return [e for e in d.events.events if e["kind"] == kind and e["t"] > after]


def ticks_between(d, t0, t1) -> int:
    """Control ticks strictly between two times: 0 = the second came in the first tick after the first."""
    return sum(1 for ts in d.stats.tick_start if t0 < ts < t1 - 1e-9)


def test_daemon_drives_the_simulated_fr3_then_estop_and_rearm(arm):
    """Chunks (a toy reach with per-chunk noise: jumps at chunk boundaries) go through the safety filter
    to the arm; an e-stop mid-motion stops it in the next tick with the vendor's stop, latched; re-arming
    reconnects (a new impedance motion) and the arm moves again."""
    cfg = fr3_cfg(arm)
    d = run(cfg, ToyReachPolicy(a=A, b=B, seed=2, noise=0.15), 5.0,
            [(250, lambda d: d.request_estop()), (350, lambda d: d.request_rearm())])
    check_limits(d, cfg)
    stop = events(d, "stop")[0]
    assert stop["why"] == ["estop"] and stop["tick"] == d.done[250] + 1 and d.stops  # next tick, vendor stop
    before = [c for c in d.sent if c.t < stop["t"]]
    assert len(before) > 100
    p0 = d.kin.fk(cfg.joints.home)
    assert max(np.linalg.norm(d.kin.fk(c.q) - p0) for c in before) > 0.04  # it moved
    rearm = events(d, "rearm")[0]
    assert [c for c in d.sent if stop["t"] <= c.t < rearm["t"]] == []  # latched until re-armed
    assert len([c for c in d.sent if c.t > rearm["t"]]) > 20, "no motion after re-arming (reconnect failed)"
    # the arm comes to rest (franky-sim 1.0.4's stop then pulls joint 3 towards a stale elbow target, up to
    # ~0.08 rad over half a second, with no command from us; a real arm holds where it stopped)
    stopped = np.array([s.q for t, s in d.samples if rearm["t"] - 0.3 < t < rearm["t"]])
    assert len(stopped) > 10 and np.ptp(stopped, axis=0).max() < 0.01


def test_nan_action_never_reaches_the_arm(arm):
    """From its third call on the policy's chunks hold a NaN: each is refused (policy_error), the arm runs the
    last good chunk out and holds in the tick it ends; no non-finite value is ever sent."""
    cfg = fr3_cfg(arm)
    d = run(cfg, ToyReachPolicy(a=A, b=B, faults="nan", noise=0.15), 2.5)
    check_limits(d, cfg)
    err = events(d, "policy_error")
    assert err and all("non-finite" in e["error"] for e in err)
    assert all(np.all(np.isfinite(c.q)) and np.isfinite(c.gripper) for c in d.sent)
    hold = events(d, "hold")[-1]
    assert d.mode == HOLDING
    assert [c for c in d.sent if c.t > hold["t"]] == []
    # commands up to the hold tick, no gap (one period, plus one tick a loaded 2-core machine may miss)
    assert not d.sent or d.sent[-1].t >= hold["t"] - 2 * cfg.period - 1e-9
    late = np.array([s.q for t, s in d.samples if t > hold["t"] + 0.5])
    assert len(late) > 10 and np.ptp(late, axis=0).max() < 0.01  # holding still


def test_robot_check_on_the_simulated_fr3(arm, capsys):
    from robolearn.real_robot.check import run_check

    # franky-sim's arm settles 0.02-0.07 rad short of joint impedance targets (measured here, at 600 Nm/rad
    # on the base joint, on a loaded CPU): the guarded motion is held to 0.09 of its 0.1 rad instead of 0.05
    assert run_check(fr3_cfg(arm), track_tol=0.09), capsys.readouterr().out
    out = capsys.readouterr().out
    assert "e-stop     PASS" in out and "re-armed" in out and "inside the fr3 datasheet" in out


def test_stale_state_holds_then_stops(arm):
    """The simulator freezes (SIGSTOP: no more state packets) mid-motion: hold in the first tick the state is
    older than obs_stale_s, stop once older than stop_after_s; nothing sent in between."""
    cfg = fr3_cfg(arm)
    frozen = []

    def freeze(d):
        frozen.append(d.clock())
        os.kill(arm.proc.pid, signal.SIGSTOP)

    def thaw(d):
        os.kill(arm.proc.pid, signal.SIGCONT)

    try:
        d = run(cfg, ToyReachPolicy(a=A, b=B, seed=1, noise=0.15), 3.5, [(150, freeze), (300, thaw)])
    finally:
        os.kill(arm.proc.pid, signal.SIGCONT)
    check_limits(d, cfg)
    t_last = max(s.t for t, s in d.samples if t <= frozen[0] + 0.05)  # the freshest state before the freeze
    hold = events(d, "hold", after=frozen[0])[0]
    assert any("obs_stale" in w or "driver_error" in w for w in hold["why"])
    assert ticks_between(d, min(t_last + cfg.safety.obs_stale_s, hold["t"]), hold["t"]) == 0
    stop = events(d, "stop", after=hold["t"])[0]
    assert [c for c in d.sent if c.t > hold["t"]] == []
    assert stop["t"] <= t_last + cfg.safety.stop_after_s + 2 * cfg.period + 0.05 or "driver_error" in stop["why"]


def test_simulator_killed_mid_run_holds_then_stops(arm):
    """The protocol server dies (SIGKILL) mid-motion: the driver reports the lost arm, the daemon holds in
    the first tick that sees it and stops; the run ends cleanly (no hang in the driver)."""
    cfg = fr3_cfg(arm)
    killed = []

    def kill(d):
        killed.append(d.clock())
        arm.kill()

    d = run(cfg, ToyReachPolicy(a=A, b=B, seed=4, noise=0.15), 3.0, [(150, kill)])
    check_limits(d, cfg)
    t_kill = killed[0]
    hold = events(d, "hold", after=t_kill)[0]
    err = events(d, "driver_error", after=t_kill)
    t_seen = min([e["t"] for e in err] + [hold["t"]])
    assert ticks_between(d, t_seen, hold["t"]) == 0  # hold in the tick the loss was seen
    stop = events(d, "stop", after=t_kill)[0]
    assert d.mode == STOPPED or stop is not None
    assert [c for c in d.sent if c.t > hold["t"]] == []
    assert events(d, "shutdown")


def test_an_arm_that_does_not_answer_is_one_line_within_the_timeout():
    """Nothing listening (refused at once), and a listener that never answers (franky's own connect would
    wait): a DriverError naming the address within connect_timeout_s."""
    import socket

    _require_franky()
    from robolearn.real_robot.driver import DriverError, make_driver

    host = f"127.0.{random.randint(2, 250)}.{random.randint(2, 250)}"
    for listen in (False, True):
        srv = None
        if listen:  # accepts the TCP connection (backlog) and never says anything
            srv = socket.socket()
            srv.bind((host, 1337))
            srv.listen(1)
        try:
            cfg = load_robot_config(FR3, {"driver_options.host": host, "driver_options.connect_timeout_s": 1.0})
            drv = make_driver("franka", cfg)
            with pytest.raises(DriverError, match=host):
                drv.connect()
            drv.close()
        finally:
            if srv is not None:
                srv.close()

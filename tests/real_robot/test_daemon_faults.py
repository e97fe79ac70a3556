"""The daemon on a fake arm and a fake clock: normal motion and every fault of issue 8.

Each fault test asserts (a) no command outside the limits ever reached the driver (the fake driver
checks every command against the config independently of the safety filter), and (b) the arm was
told to hold/stop within one control period of the fault becoming detectable.
"""

import os
import signal
import time

import numpy as np
import pytest
from rr_helpers import fake_daemon, step

from robolearn.real_robot.control import ControlServer, install_signal_handlers, send_command
from robolearn.real_robot.daemon import HOLDING, RUN, STOPPED
from doubles import JointTargetPolicy, ToyReachPolicy


def first_event(d, kinds, after=-np.inf):
    return next((e for e in d.events.events if e["kind"] in kinds and e["t"] > after), None)


def commands_after(drv, t):
    return [c for c in drv.commands if c.t > t + 1e-12]


@pytest.fixture
def cleanup():
    made = []
    yield made.append
    for d in made:
        d.shutdown()


@pytest.mark.parametrize("mode", ["receding", "ensemble", "rtc"])
def test_daemon_drives_arm_within_limits(kin, cleanup, mode):
    d, drv, clock = fake_daemon(ToyReachPolicy(seed=1), kin, **{"scheduling.mode": mode})
    cleanup(d)
    d.start()
    p0 = kin.fk(drv.q)
    step(d, clock, 100)  # 2 s at 50 Hz
    assert d.mode == RUN and len(drv.commands) > 80
    assert drv.violations == []
    assert np.linalg.norm(kin.fk(drv.q) - p0) > 0.05  # it actually moved toward the toy goal
    assert d.sched.n_chunks >= 3


@pytest.mark.parametrize("fault, marker", [("raise", "toy policy failure"), ("nan", "non-finite")])
def test_policy_raises_or_returns_nan_then_holds(kin, cleanup, fault, marker):
    d, drv, clock = fake_daemon(ToyReachPolicy(faults=fault), kin)
    cleanup(d)
    d.start()
    step(d, clock, 100)
    err = first_event(d, {"policy_error"})
    assert err is not None and marker in err["error"]
    hold = first_event(d, {"hold"}, after=err["t"])
    assert hold is not None and "starved" in hold["why"] and d.mode == HOLDING
    # commands flowed until the schedule ran out, then hold in that same tick: no gap, no command after
    assert drv.commands[-1].t >= hold["t"] - d.cfg.period - 1e-9
    assert commands_after(drv, hold["t"]) == []
    assert drv.violations == []
    assert all(np.all(np.isfinite(c.q)) for c in drv.commands)


def test_inference_5x_over_budget_holds(kin, cleanup):
    budget = 0.1
    pol = ToyReachPolicy(latency=0.04)
    d, drv, clock = fake_daemon(pol, kin, **{"safety.inference_deadline_s": budget})
    cleanup(d)
    d.start()
    step(d, clock, 40)  # normal chunks
    assert d.mode == RUN
    pol.faults, n_calls = "slow", pol.calls  # from now on every call takes 5 x 0.04 s of real time
    while pol.calls == n_calls:  # get a slow call in flight, then let fake time run 5x the budget past it
        step(d, clock, 1, wait_worker=False)
    started = d.watchdog.inference_started
    assert started is not None
    n = int(5 * budget / d.cfg.period)
    for _ in range(n):
        step(d, clock, 1, wait_worker=False)
    hold = first_event(d, {"hold", "hold_reason"}, after=started)
    assert hold is not None and "inference_deadline" in hold["why"]
    assert hold["t"] - (started + budget) <= d.cfg.period + 1e-9
    assert commands_after(drv, hold["t"]) == [] and d.mode == HOLDING
    assert drv.violations == []


def test_observation_stops_updating_holds_then_stops(kin, cleanup):
    d, drv, clock = fake_daemon(ToyReachPolicy(), kin)
    cleanup(d)
    d.start()
    step(d, clock, 30)
    assert d.mode == RUN
    drv.freeze = True
    step(d, clock, 1)
    t_last = d.watchdog.last_obs_t
    step(d, clock, 60)
    hold = first_event(d, {"hold"}, after=t_last)
    assert "obs_stale" in hold["why"][0]
    assert hold["t"] - (t_last + d.cfg.safety.obs_stale_s) <= d.cfg.period + 1e-9
    assert commands_after(drv, hold["t"]) == []
    stop = first_event(d, {"stop"}, after=hold["t"])
    assert stop is not None and stop["t"] - (t_last + d.cfg.safety.stop_after_s) <= d.cfg.period + 1e-9
    assert d.mode == STOPPED and drv.stops and drv.violations == []


def test_driver_disconnect_holds_then_stops(kin, cleanup):
    d, drv, clock = fake_daemon(ToyReachPolicy(), kin)
    cleanup(d)
    d.start()
    step(d, clock, 30)
    t_fault = clock.t
    drv.disconnect = True
    step(d, clock, 20)
    hold = first_event(d, {"hold"}, after=t_fault)
    assert "driver_error" in hold["why"] and hold["t"] - t_fault <= d.cfg.period + 1e-9
    stop = first_event(d, {"stop"}, after=t_fault)
    # the first failed read (the hold tick) starts the driver-silent timer
    assert stop["t"] - (hold["t"] + d.cfg.safety.driver_silent_s) <= d.cfg.period + 1e-9
    assert commands_after(drv, t_fault) == [] and drv.violations == []


def test_estop_mid_motion_by_socket_and_signal_then_rearm(kin, cleanup):
    d, drv, clock = fake_daemon(ToyReachPolicy(), kin)
    cleanup(d)
    d.start()
    server = ControlServer("tcp://127.0.0.1:0", d)
    old = {s: signal.getsignal(s) for s in (signal.SIGUSR1, signal.SIGTERM, signal.SIGINT)}
    try:
        step(d, clock, 30)
        assert d.mode == RUN
        t_req = clock.t
        assert send_command(f"tcp://127.0.0.1:{server.port}", "estop")["ok"]
        step(d, clock, 1)
        stop = first_event(d, {"stop"})
        assert stop["why"] == ["estop"] and stop["t"] - t_req <= d.cfg.period + 1e-9
        assert drv.stops and commands_after(drv, t_req) == [] and d.mode == STOPPED
        step(d, clock, 10)
        assert commands_after(drv, t_req) == []  # latched
        assert send_command(f"tcp://127.0.0.1:{server.port}", "arm")["ok"]
        step(d, clock, 30)
        assert d.mode == RUN and commands_after(drv, t_req)  # re-armed and moving again
        install_signal_handlers(d)
        t_sig = clock.t
        os.kill(os.getpid(), signal.SIGUSR1)
        time.sleep(0.01)
        step(d, clock, 1)
        assert d.mode == STOPPED and commands_after(drv, t_sig) == []
        assert send_command(f"tcp://127.0.0.1:{server.port}", "status")["mode"] == STOPPED
    finally:
        server.close()
        for s, h in old.items():
            signal.signal(s, h)
    assert drv.violations == []


def test_wild_joint_targets_are_clamped_never_passed(kin, cleanup):
    cfg_home = np.array([0.0, 0.19635, 0.0, -2.61799, 0.0, 2.94159, 0.78540])
    d, drv, clock = fake_daemon(JointTargetPolicy(cfg_home, wild=True), kin,
                                **{"action.space": "joint", "scheduling.action_dt": 0.04})
    cleanup(d)
    d.start()
    step(d, clock, 60)
    assert drv.violations == []
    assert any(e["kind"] in ("clamp", "reject") for e in d.events.events)
    for c in drv.commands:
        assert np.all(c.q >= d.cfg.joints.pos_min) and np.all(c.q <= d.cfg.joints.pos_max)


def test_workspace_box_enforced(kin, cleanup):
    below_table = (-0.1, 0.0, 0.6)  # the toy policy dives into the table
    d, drv, clock = fake_daemon(ToyReachPolicy(a=below_table, b=below_table, noise=0.0), kin)
    cleanup(d)
    d.start()
    step(d, clock, 150)
    rej = first_event(d, {"reject"})
    assert rej is not None and "reject_workspace" in rej["why"]
    assert drv.violations == []
    assert all(d.cfg.workspace.contains(kin.fk(c.q)) for c in drv.commands)


def test_run_calls_on_tick_after_every_tick_and_can_be_stopped_from_it(kin):
    """The hook a lift benchmark watches the arm through: once per tick, at the tick's time, after the
    tick, and a quit requested from it ends the loop (the daemon shuts down: the arm is stopped)."""
    d, drv, clock = fake_daemon(ToyReachPolicy(seed=1), kin)
    seen = []

    def watch(now):
        seen.append((now, d.tick_n))
        if len(seen) == 40:
            d.request_quit()

    d.run(max_ticks=100, on_tick=watch)
    assert len(seen) == 40 and d.tick_n == 40  # stopped by the hook, not by max_ticks
    assert [n for _, n in seen] == list(range(1, 41))
    assert seen == sorted(seen)
    assert [round(t, 6) for t, _ in seen] == [round(t, 6) for t in d.stats.tick_start]
    assert drv.stops and not drv.enabled

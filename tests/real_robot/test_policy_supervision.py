"""Supervised policy process (issue 19, item 4): a policy process killed mid-run is seen in the tick it
exits (not as a request timeout), logged with its exit code and restarted while the arm holds, up to
`[safety].policy_restarts` times; the next exit stops the arm and ends the run with one line. A
policy server unreachable for longer than `[safety].stop_after_s` stops the arm too.

Every test asserts no command outside the limits reached the (fake) arm and the hold/stop came in the
tick the fault became visible.
"""

import os
import signal
import subprocess
import sys
import threading
import time

import pytest
from doubles import FaultyFakeDriver, ToyReachPolicy
from rr_helpers import ROOT, SIM_PANDA, FakeClock, make_cfg, step

from robolearn.errors import UserError
from robolearn.real_robot.config import load_robot_config
from robolearn.real_robot.daemon import HOLDING, RUN, STOPPED, Daemon
from robolearn.real_robot.remote import PolicyServer, RemotePolicy, spawn_local_server
from robolearn.real_robot.worker import PolicyProcess


@pytest.fixture(scope="module")
def ck(tmp_path_factory):
    return proprio_checkpoint(tmp_path_factory.mktemp("supervision") / "ck")


def proprio_checkpoint(path):
    """An untrained tiny diffusion head on `proprio` (what the fake arm provides), 7-D eef_delta actions."""
    from robolearn.policies import POLICY_REGISTRY, make_policy

    cfg = POLICY_REGISTRY["diffusion"].config_class(down_dims=[16, 32], step_embed_dim=16, num_train_timesteps=20,
                                                    num_inference_steps=3, horizon=8, n_action_steps=4)
    cfg.obs_keys, cfg.image_keys, cfg.obs_shapes, cfg.action_dim = ["proprio"], [], {"proprio": [9]}, 7
    stats = {"proprio": {"min": [-2.0] * 9, "max": [2.0] * 9, "mean": [0.0] * 9, "std": [1.0] * 9},
             "action": {"min": [-0.1] * 7, "max": [0.1] * 7, "mean": [0.0] * 7, "std": [0.05] * 7}}
    make_policy(cfg, stats).save(path)
    return str(path)


def events(d, kind, after=float("-inf")):
    return [e for e in d.events.events if e["kind"] == kind and e["t"] > after]


def wait_exited(pid: int, timeout: float = 10.0) -> None:
    """Until the killed child is a zombie; it is not reaped here (the daemon's check must see the exit)."""
    t_end = time.monotonic() + timeout
    while time.monotonic() < t_end:
        with open(f"/proc/{pid}/stat") as f:
            if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                return
        time.sleep(0.01)
    raise AssertionError(f"process {pid} did not exit")


def step_until(d, clock, cond, timeout: float = 120.0) -> None:
    """Advance fake time tick by tick (real time passes too: a restart spawns a real process)."""
    t_end = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < t_end, "timed out waiting"
        step(d, clock, 1, wait_worker=False)
        time.sleep(0.005)


def test_killed_policy_process_is_restarted_then_stops_the_arm(ck, kin):
    sup = PolicyProcess(lambda: spawn_local_server(ck, "cpu", timeout_s=1.0), max_restarts=1)
    clock = FakeClock()
    cfg = make_cfg(**{"safety.policy_restarts": 1})
    drv = FaultyFakeDriver(cfg, clock=clock, kinematics=kin)
    d = Daemon(cfg, drv, sup.policy, kinematics=kin, clock=clock, sleep=clock.sleep, supervisor=sup)
    try:
        d.start()
        step(d, clock, 20)
        assert d.mode == RUN and drv.commands
        for n_exit in (1, 2):
            step_until(d, clock, lambda: not d.worker.busy and d.mode == RUN)
            pid = sup.proc.pid
            os.kill(pid, signal.SIGKILL)
            wait_exited(pid)
            t_kill, n_cmd = clock.t, len(drv.commands)
            step(d, clock, 1, wait_worker=False)
            # seen in the very tick after the exit, with its exit code; the arm holds (or stops) in that tick
            exit_ev = events(d, "policy_exit", after=t_kill)
            assert len(exit_ev) == 1 and exit_ev[0]["exitcode"] == -signal.SIGKILL, (n_exit, sup.exited(), d.mode, d.fatal, [(e["kind"], e["t"]) for e in list(d.events.events)[-8:]], t_kill)
            assert exit_ev[0]["t"] - t_kill <= cfg.period + 1e-9
            assert not any("TimeoutError" in e["error"] for e in events(d, "policy_error"))  # not a timeout
            if n_exit == 1:
                hold = events(d, "hold", after=t_kill)
                assert hold and hold[0]["t"] == exit_ev[0]["t"] and "policy_exit" in hold[0]["why"]
                assert d.mode == HOLDING and len(drv.commands) == n_cmd
                step_until(d, clock, lambda: bool(events(d, "policy_restarted", after=t_kill)))
                t_up = events(d, "policy_restarted")[0]["t"]
                assert all(c.t >= t_up for c in drv.commands[n_cmd:])  # held until the new process was up
                assert sup.proc.pid != pid and sup.restarts == 1
                step_until(d, clock, lambda: d.mode == RUN and len(drv.commands) > n_cmd + 5)
            else:  # past [safety].policy_restarts: stop, end the run, one line saying why
                stop = events(d, "stop", after=t_kill)
                assert stop and stop[0]["why"] == ["policy_exit"] and d.mode == STOPPED and drv.stops
                assert len(drv.commands) == n_cmd and d._quit.is_set()
                assert "exited with code -9 (killed by SIGKILL)" in d.fatal
                assert "policy_restarts = 1" in d.fatal and "\n" not in d.fatal
        assert drv.violations == []
    finally:
        d.shutdown()
    assert sup.proc is None  # nothing left running


def test_unreachable_policy_server_stops_after_stop_after_s(kin):
    pol = ToyReachPolicy()
    srv = PolicyServer(pol, bind="tcp://127.0.0.1:0")
    th = threading.Thread(target=srv.serve, kwargs={"poll_ms": 20}, daemon=True)
    th.start()
    remote = RemotePolicy(srv.address, timeout_s=0.1)
    clock = FakeClock()
    cfg = make_cfg(**{"safety.stop_after_s": 2.0})  # fake time runs ~4x real time here: several timeouts
    drv = FaultyFakeDriver(cfg, clock=clock, kinematics=kin)
    d = Daemon(cfg, drv, remote, kinematics=kin, clock=clock, sleep=clock.sleep)
    try:
        d.start()
        step(d, clock, 30)
        assert d.mode == RUN
        srv.stop()  # the server goes away for good
        th.join(3)
        step_until(d, clock, lambda: d.mode == STOPPED, timeout=30)
        stop = events(d, "stop")[0]
        assert stop["why"] == ["policy_unreachable"]
        errors = [e for e in events(d, "policy_error") if "did not answer" in e["error"]]
        assert len(errors) >= 2 and errors[0]["t"] < d._unreachable_since + 2.0  # retried while holding, then:
        assert stop["t"] - (d._unreachable_since + 2.0) <= cfg.period + 1e-9  # stopped within a tick of stop_after_s
        assert "did not answer" in d.fatal and "stop_after_s = 2 s" in d.fatal and d._quit.is_set()
        assert [c for c in drv.commands if c.t > stop["t"]] == [] and drv.violations == []
        n_err = len(events(d, "policy_error"))
        step(d, clock, 50, wait_worker=False)  # no retrying once stopped
        assert len(events(d, "policy_error")) <= n_err + 1 and d.mode == STOPPED
    finally:
        d.shutdown()


def test_policy_restarts_config_field():
    assert load_robot_config(SIM_PANDA).safety.policy_restarts == 2
    for bad in (-1, 1.5, True):
        with pytest.raises(UserError, match=r"\[safety\].policy_restarts"):
            load_robot_config(SIM_PANDA, {"safety.policy_restarts": bad})


@pytest.mark.slow  # a CLI process plus a policy process: ~25 s on an idle 2-core machine, over a minute loaded
def test_serve_exits_nonzero_with_one_line_when_the_policy_process_keeps_dying(ck, tmp_path):
    """`robolearn serve --inference process` with `[safety].policy_restarts = 0`, the policy process
    SIGKILLed once it is up: the arm stops and serve exits 1 with one clear line (restarting is covered
    above; one process start less keeps this test short)."""
    log = tmp_path / "events.jsonl"
    cmd = [sys.executable, "-m", "robolearn.cli", "serve", "--robot", str(SIM_PANDA), "--checkpoint", ck,
           "--inference", "process", "--duration", "300", "--set", 'driver="fake"', 'control_socket=""',
           f'event_log="{log}"', "safety.policy_restarts=0", "scheduling.mode=\"receding\""]
    p = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        killed = []
        t_end = time.monotonic() + 240
        while p.poll() is None and time.monotonic() < t_end:
            kids = _children(p.pid)
            text = log.read_text() if log.exists() else ""
            up = text.count('"kind": "start"') + text.count('"kind": "policy_restarted"')
            if kids and up > len(killed) and kids[-1] not in killed:
                os.kill(kids[-1], signal.SIGKILL)
                killed.append(kids[-1])
            time.sleep(0.05)
        out, err = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
    assert len(killed) == 1 and p.returncode == 1, (out, err)
    last = err.strip().splitlines()[-1]
    assert last.startswith("robolearn serve: error: the policy process exited with code -9"), err
    assert "policy_restarts = 0" in last and "the arm is stopped" in last
    text = log.read_text()
    assert text.count('"kind": "policy_exit"') == 1 and text.count('"kind": "policy_restarted"') == 0
    assert '"why": ["policy_exit"]' in text  # the stop


def _children(pid: int) -> list[int]:
    """The policy-server processes pid spawned (not multiprocessing's resource tracker), oldest first."""
    out = []
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/children") as f:
                kids = [int(x) for x in f.read().split()]
        except OSError:
            continue
        for kid in kids:
            try:
                with open(f"/proc/{kid}/cmdline", "rb") as f:
                    if b"spawn_main" in f.read():
                        out.append(kid)
            except OSError:
                pass
    return sorted(out)

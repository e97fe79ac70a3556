"""Goals reach the arm: the daemon's goal travels with every inference request, in a worker thread, to a
policy server over loopback, and to a policy server in its own process; a goal the policy was not trained
for is refused before the arm moves (`robolearn serve` exits 1 with one line, nothing written).

The policy is `doubles.GoalReachPolicy`: it reaches the point its goal names (goal state "proprio", or the
instruction "left" / "right") and holds still without a goal, so "it got there" means "the goal got there".
"""

import signal
import threading

import numpy as np
import pytest
from doubles import LEFT, RIGHT, GoalReachPolicy, ToyReachPolicy, reach_goal_state
from rr_helpers import SIM_PANDA, fake_daemon, step, tiny_checkpoint

from robolearn.cli import main
from robolearn.errors import UserError
from robolearn.goal import Goal, GoalConfig
from robolearn.real_robot.control import ControlServer, send_command
from robolearn.real_robot.daemon import HOLDING, RUN
from robolearn.real_robot.remote import PolicyServer, RemotePolicy, spawn_local_server

TARGET = (-0.02, -0.08, 0.95)  # a goal-state target: neither the start nor LEFT / RIGHT


def serve_in_thread(policy, token=None):
    srv = PolicyServer(policy, bind="tcp://127.0.0.1:0", token=token)
    th = threading.Thread(target=srv.serve, kwargs={"poll_ms": 20}, daemon=True)
    th.start()
    return srv, th


def eef(d) -> np.ndarray:
    return d.obs.latest().eef_pos


@pytest.fixture
def policy_via(request, tmp_path):
    """A GoalReachPolicy behind each kind of inference the daemon runs: in-process (worker thread),
    a loopback policy server, a policy server in a child process (it imports `doubles` to know the head)."""
    closers = []

    def make(how: str):
        if how == "thread":
            return GoalReachPolicy.build()
        if how == "server":
            srv, th = serve_in_thread(GoalReachPolicy.build())
            closers.append(lambda: (srv.stop(), th.join(2)))
            return RemotePolicy(srv.address, timeout_s=5.0)
        ck = tmp_path / "goal_reach"
        GoalReachPolicy.build().save(ck)
        proc, remote = spawn_local_server(str(ck), "cpu", timeout_s=30.0, imports=["doubles"])
        closers.append(lambda: (remote.close(), proc.kill(), proc.join(5)))
        return remote

    yield make
    for close in closers:
        close()


@pytest.mark.parametrize("how", ["thread", "server", "process"])
def test_daemon_reaches_the_goal_only_when_it_has_one(kin, policy_via, how):
    policy = policy_via(how)
    assert policy.config.goal.modalities == ["language", "state"]  # a remote client learns it from the server
    d, drv, clock = fake_daemon(policy, kin)
    try:
        d.start()
        p0 = eef(d).copy()
        step(d, clock, 60)  # no goal: chunks arrive (the arm runs), the policy holds still
        assert d.mode == RUN and drv.commands
        assert np.linalg.norm(eef(d) - p0) < 0.005

        d.set_goal(Goal(state={"proprio": reach_goal_state(TARGET)}))
        step(d, clock, 150)
        assert np.linalg.norm(eef(d) - TARGET) < 0.02

        d.set_goal(Goal("right"))  # a new goal, mid-run
        step(d, clock, 150)
        assert np.linalg.norm(eef(d) - RIGHT) < 0.02
        goals = [e for e in d.events.events if e["kind"] == "goal"]
        assert [g["modalities"] for g in goals] == [["state"], ["language"]] and goals[1]["instruction"] == "right"
        assert drv.violations == [] and not any(e["kind"] == "policy_error" for e in d.events.events)
    finally:
        d.shutdown()


def test_daemon_refuses_a_goal_the_policy_was_not_trained_for(kin):
    policy = GoalReachPolicy.build()  # language + state goals, no goal images
    with pytest.raises(UserError, match="without image goals"):
        fake_daemon(policy, kin)[0].set_goal(Goal(images={"agentview_image": np.zeros((8, 8, 3), np.uint8)}))
    d, _, _ = fake_daemon(policy, kin)
    d.set_goal(Goal("left"))
    with pytest.raises(UserError, match="expects 9"):
        d.set_goal(Goal(state={"proprio": np.zeros(3, np.float32)}))
    assert d.goal.instruction == "left"  # unchanged
    with pytest.raises(UserError, match="no text encoder"):
        fake_daemon(ToyReachPolicy(), kin)[0].set_goal(Goal("left"))


def test_control_socket_sets_the_instruction(kin):
    d, drv, clock = fake_daemon(GoalReachPolicy.build(), kin)
    server = ControlServer("tcp://127.0.0.1:0", d)
    addr = f"tcp://127.0.0.1:{server.port}"
    try:
        d.start()
        step(d, clock, 20)
        assert send_command(addr, "goal Left") == {"ok": True, "instruction": "Left"}  # case kept
        step(d, clock, 150)
        assert np.linalg.norm(eef(d) - LEFT) < 0.02
        assert send_command(addr, "status")["instruction"] == "Left"
        assert send_command(addr, "goal")["ok"] and d.goal is None  # cleared
    finally:
        server.close()
        d.shutdown()
    d2, _, _ = fake_daemon(ToyReachPolicy(), kin)
    server = ControlServer("tcp://127.0.0.1:0", d2)
    try:
        reply = send_command(f"tcp://127.0.0.1:{server.port}", "goal lift the cube")
        assert not reply["ok"] and "no text encoder" in reply["error"] and d2.goal is None
    finally:
        server.close()
        d2.shutdown()


def test_remote_server_carries_the_goal_and_refuses_a_bad_one():
    import torch

    local = GoalReachPolicy.build()
    srv, th = serve_in_thread(GoalReachPolicy.build(), token="s3cret")
    remote = RemotePolicy(srv.address, token="s3cret", timeout_s=5.0)
    try:
        assert remote.config.goal == local.config.goal
        obs = {"proprio": torch.zeros(1, 1, 9)}
        for goal in (Goal("left"), Goal(state={"proprio": reach_goal_state(TARGET)}), None):
            expected = local.predict_action_chunk(obs, goal)
            torch.testing.assert_close(remote.predict_action_chunk(obs, goal=goal), expected)
        assert not torch.equal(remote.predict_action_chunk(obs, goal=Goal("left")), remote.predict_action_chunk(obs))
        with pytest.raises(ValueError, match="bad goal: .*without image goals"):
            remote.predict_action_chunk(obs, goal=Goal(images={"agentview_image": np.zeros((8, 8, 3), np.uint8)}))
        with pytest.raises(ValueError, match="bad goal: .*expects 9"):
            remote.predict_action_chunk(obs, goal=Goal(state={"proprio": np.zeros(3, np.float32)}))
        remote.predict_action_chunk(obs)  # still serving
    finally:
        remote.close()
        srv.stop()
        th.join(2)
    srv, th = serve_in_thread(ToyReachPolicy(noise=0.0))  # a policy without goals
    remote = RemotePolicy(srv.address, timeout_s=5.0)
    try:
        assert remote.config.goal.modalities == []
        with pytest.raises(ValueError, match="bad goal: .*no text encoder"):
            remote.predict_action_chunk({"proprio": torch.zeros(1, 2, 9)}, goal=Goal("left"))
    finally:
        remote.close()
        srv.stop()
        th.join(2)


def test_daemon_holds_when_the_server_refuses_its_goal(kin):
    """The server answers a goal it cannot take with an error (here: its checkpoint was swapped for one
    without language goals after the daemon connected): a failed inference, so the arm holds."""
    srv, th = serve_in_thread(GoalReachPolicy.build())
    remote = RemotePolicy(srv.address, timeout_s=5.0)
    d, drv, clock = fake_daemon(remote, kin, goal=Goal("left"))
    try:
        d.start()
        step(d, clock, 40)
        assert d.mode == RUN and drv.commands
        srv.goal_cfg = GoalConfig(modalities=["state"], state_keys=["proprio"], state_dims={"proprio": 9})
        step(d, clock, 60)
        err = next(e for e in d.events.events if e["kind"] == "policy_error")
        assert "bad goal" in err["error"] and "no text encoder" in err["error"]
        hold = next(e for e in d.events.events if e["kind"] == "hold" and e["t"] > err["t"])
        assert d.mode == HOLDING and [c for c in drv.commands if c.t > hold["t"]] == [] and drv.violations == []
    finally:
        d.shutdown()
        srv.stop()
        th.join(2)


def test_goal_images_and_state_cross_the_wire_intact():
    import torch

    served = GoalReachPolicy.build(modalities=("image", "state"))
    srv, th = serve_in_thread(served)
    remote = RemotePolicy(srv.address, timeout_s=5.0)
    try:
        assert remote.config.goal.image_shapes == {"agentview_image": [8, 8, 3]}
        image = np.random.default_rng(0).integers(0, 256, (8, 8, 3), dtype=np.uint8)
        state = reach_goal_state(TARGET)
        remote.predict_action_chunk({"proprio": torch.zeros(1, 1, 9)},
                                    goal=Goal(images={"agentview_image": image}, state={"proprio": state}))
        got = served.calls[-1]
        assert got.instruction is None and got.images["agentview_image"].dtype == np.uint8
        np.testing.assert_array_equal(got.images["agentview_image"], image)
        np.testing.assert_array_equal(got.state["proprio"], state)
        with pytest.raises(ValueError, match="bad goal: .*expects uint8 \\[8, 8, 3\\]"):
            remote.predict_action_chunk({"proprio": torch.zeros(1, 1, 9)},
                                        goal=Goal(images={"agentview_image": np.zeros((4, 4, 3), np.uint8)}))
    finally:
        remote.close()
        srv.stop()
        th.join(2)


# ---- robolearn serve: goal flags ---------------------------------------------------------------------------
def write_png(path, shape):
    import imageio.v2 as imageio

    imageio.imwrite(path, np.zeros(shape, np.uint8))
    return str(path)


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    root = tmp_path_factory.mktemp("goal_ck")
    GoalReachPolicy.build(modalities=("image", "state")).save(root / "image_goal")
    GoalReachPolicy.build().save(root / "language_goal")
    tiny_checkpoint(root / "no_goal")
    return root


def serve_cli(capsys, tmp_path, *args, overrides=()):
    log = tmp_path / "events.jsonl"
    rc = main(["serve", "--robot", str(SIM_PANDA), "--device", "cpu", *args,
               "--set", f"event_log={log}", 'control_socket=""', *overrides])
    return rc, capsys.readouterr().err, log


@pytest.mark.parametrize("flags, marker", [
    (["--checkpoint", "{ck}/no_goal", "--instruction", "lift the cube"], "no text encoder"),
    (["--checkpoint", "{ck}/image_goal", "--instruction", "left"], "no text encoder"),
    (["--checkpoint", "{ck}/language_goal", "--goal-image", "{png8}"], "without image goals"),
    (["--checkpoint", "{ck}/image_goal", "--goal-image", "{png16}"], "expects uint8 [8, 8, 3]"),
    (["--checkpoint", "{ck}/image_goal", "--goal-image", "{png8}", "--goal-camera", "wrist_image"], "wrist_image"),
    (["--checkpoint", "{ck}/image_goal", "--goal-image", "{tmp}/missing.png"], "cannot read image"),
    (["--checkpoint", "{ck}/image_goal", "--goal-camera", "agentview_image"], "--goal-camera needs --goal-image"),
    (["--checkpoint", "{ck}/language_goal", "--goal-state", "proprio=1,2"], "expects 9"),
    (["--checkpoint", "{ck}/language_goal", "--goal-state", "proprio"], "expected KEY=V1,V2"),
    (["--checkpoint", "{ck}/language_goal", "--goal-state", "object=1,2,3"], "'object'"),
])
def test_serve_refuses_a_bad_goal_before_the_arm_moves(capsys, tmp_path, checkpoints, flags, marker):
    subst = {"ck": checkpoints, "tmp": tmp_path, "png8": write_png(tmp_path / "g8.png", (8, 8, 3)),
             "png16": write_png(tmp_path / "g16.png", (16, 16, 3))}
    rc, err, log = serve_cli(capsys, tmp_path, *[f.format(**subst) for f in flags])
    assert rc == 1 and err.startswith("robolearn serve: error: ") and err.count("\n") == 1, err
    assert marker in err, err
    assert not log.exists()


def test_serve_refuses_a_bad_goal_for_process_and_remote_inference(capsys, tmp_path, checkpoints):
    rc, err, log = serve_cli(capsys, tmp_path, "--checkpoint", str(checkpoints / "no_goal"), "--inference", "process",
                             "--instruction", "lift the cube")
    assert rc == 1 and "no text encoder" in err and err.count("\n") == 1 and not log.exists(), err
    srv, th = serve_in_thread(GoalReachPolicy.build())
    try:
        rc, err, log = serve_cli(capsys, tmp_path, "--remote", srv.address, "--goal-state", "proprio=1,2,3")
        assert rc == 1 and "expects 9" in err and err.count("\n") == 1 and not log.exists(), err
        assert srv.n_requests == 1  # the config request only: the check ran on the client, before any inference
    finally:
        srv.stop()
        th.join(2)


def test_serve_sends_the_instruction_to_the_policy(capsys, tmp_path, checkpoints):
    """The whole command on the (in-process) fake arm for a second: the goal is in every request."""
    import json

    old = {s: signal.getsignal(s) for s in (signal.SIGUSR1, signal.SIGTERM, signal.SIGINT)}
    try:
        rc, err, log = serve_cli(capsys, tmp_path, "--checkpoint", str(checkpoints / "language_goal"),
                                 "--instruction", "left", "--duration", "1", overrides=['driver="fake"'])
    finally:
        for s, h in old.items():
            signal.signal(s, h)
    assert rc == 0, err
    events = [json.loads(line) for line in log.read_text().splitlines()]
    goal = next(e for e in events if e["kind"] == "goal")
    assert goal["instruction"] == "left" and goal["modalities"] == ["language"]

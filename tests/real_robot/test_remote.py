"""Remote mode: JSON + raw-bytes wire format, token rule, and the daemon holding on a stalled or garbage server."""

import threading
import time

import numpy as np
import pytest
import zmq
from rr_helpers import fake_daemon, step, tiny_checkpoint

from robolearn.errors import UserError
from robolearn.real_robot.daemon import HOLDING, RUN
from robolearn.real_robot.remote import PolicyServer, RemotePolicy, decode, encode, policy_info
from doubles import ToyReachPolicy


def serve(policy, token=None):
    srv = PolicyServer(policy, bind="tcp://127.0.0.1:0", token=token)
    th = threading.Thread(target=srv.serve, kwargs={"poll_ms": 20}, daemon=True)
    th.start()
    return srv, th


def test_wire_format_round_trip_and_garbage():
    arrays = {"obs/img": np.arange(12, dtype=np.uint8).reshape(1, 2, 2, 3), "x": np.ones((2, 3), np.float32)}
    h, out = decode(encode({"op": "predict"}, arrays))
    assert h["op"] == "predict"
    for k in arrays:
        np.testing.assert_array_equal(out[k], arrays[k])
        assert out[k].dtype == arrays[k].dtype
    for bad in ([b"\xff\xfe"], [b'{"v": 1, "arrays": [{"key": "a", "dtype": "float32", "shape": [4]}]}', b"123"],
                [b'{"v": 1, "arrays": [{"key": "a", "dtype": "object", "shape": [1]}]}', b"12345678"], [b"[]"]):
        with pytest.raises(ValueError):
            decode(bad)


def test_remote_policy_matches_local_and_token_enforced():
    srv, th = serve(ToyReachPolicy(noise=0.0), token="s3cret")
    try:
        with pytest.raises(UserError, match="no valid policy server"):
            RemotePolicy(srv.address, token="wrong", timeout_s=1.0)
        remote = RemotePolicy(srv.address, token="s3cret", timeout_s=2.0)
        assert remote.config.horizon == 16 and remote.config.supports_prefix
        import torch

        obs = {"proprio": torch.zeros(1, 2, 9)}
        out = remote.predict_action_chunk(obs)
        ref = ToyReachPolicy(noise=0.0).predict_action_chunk(obs)
        torch.testing.assert_close(out, ref)
        remote.close()
    finally:
        srv.stop()
        th.join(2)
    with pytest.raises(UserError, match="token"):
        PolicyServer(ToyReachPolicy(), bind="tcp://0.0.0.0:0")


def test_daemon_holds_when_remote_server_stalls(kin):
    pol = ToyReachPolicy()
    srv, th = serve(pol)
    remote = RemotePolicy(srv.address, timeout_s=0.5)
    d, drv, clock = fake_daemon(remote, kin, **{"safety.inference_deadline_s": 0.2})
    try:
        d.start()
        step(d, clock, 40)
        assert d.mode == RUN
        pol.latency = 1.0  # the server stalls (a GPU box hanging)
        n = pol.calls
        t_end = time.monotonic() + 5
        while pol.calls == n and time.monotonic() < t_end:
            step(d, clock, 1, wait_worker=False)
        started = d.watchdog.inference_started
        for _ in range(20):
            step(d, clock, 1, wait_worker=False)
        hold = next(e for e in d.events.events if e["kind"] in ("hold", "hold_reason") and e["t"] > started)
        assert "inference_deadline" in hold["why"]
        assert hold["t"] - (started + 0.2) <= d.cfg.period + 1e-9
        assert d.mode == HOLDING and [c for c in drv.commands if c.t > hold["t"]] == []
        t_end = time.monotonic() + 5  # the client gives up (timeout) -> reported as a policy error
        while not any(e["kind"] == "policy_error" for e in d.events.events) and time.monotonic() < t_end:
            step(d, clock, 1, wait_worker=False)
            time.sleep(0.01)
        assert any("did not answer" in e.get("error", "") for e in d.events.events if e["kind"] == "policy_error")
        assert drv.violations == []
    finally:
        d.shutdown()
        srv.stop()
        th.join(3)


def test_daemon_holds_when_remote_server_sends_garbage(kin):
    ctx = zmq.Context.instance()
    rep = ctx.socket(zmq.REP)
    port = rep.bind_to_random_port("tcp://127.0.0.1")
    info = policy_info(ToyReachPolicy())  # answer the config request properly, then send garbage
    stop = threading.Event()
    served = []

    def garbage_server():
        while not stop.is_set():
            if rep.poll(20):
                frames = rep.recv_multipart()
                h, _ = decode(frames)
                if h["op"] == "config":
                    rep.send_multipart(encode({"ok": True, "config": info}, {}))
                elif not served:  # the start-up (warm-up) inference gets a real answer
                    served.append(1)
                    rep.send_multipart(encode({"ok": True}, {"action": np.zeros((1, 16, 7), np.float32)}))
                else:
                    rep.send_multipart([b"\x00garbage", b"\x01\x02"])
        rep.close(0)

    th = threading.Thread(target=garbage_server, daemon=True)
    th.start()
    remote = RemotePolicy(f"tcp://127.0.0.1:{port}", timeout_s=0.5)
    d, drv, clock = fake_daemon(remote, kin)
    try:
        d.start()
        step(d, clock, 40)
        errors = [e for e in d.events.events if e["kind"] == "policy_error"]
        assert errors and "JSON" in errors[0]["error"]
        assert d.mode == HOLDING and drv.commands == [] and drv.violations == []
    finally:
        d.shutdown()
        stop.set()
        th.join(2)


def test_inference_in_its_own_process(tmp_path):
    """--inference process: a loopback policy server in a child process, refused cleanly on a bad checkpoint."""
    import torch

    from robolearn.real_robot.remote import spawn_local_server

    ck = tiny_checkpoint(tmp_path / "ck")
    proc, remote = spawn_local_server(str(ck), "cpu", timeout_s=30)
    try:
        out = remote.predict_action_chunk({"state": torch.zeros(1, 2, 19)})
        assert out.shape == (1, 16, 7) and torch.isfinite(out).all()
    finally:
        remote.close()
        proc.kill()
        proc.join(5)
    with pytest.raises(UserError):
        spawn_local_server(str(tmp_path / "missing"), "cpu")

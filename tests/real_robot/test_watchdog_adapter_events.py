"""Watchdog verdicts on a fake clock, the differential-IK adapter, the JSONL event log."""

import json

import numpy as np
from rr_helpers import make_cfg

from robolearn.real_robot.adapter import ActionAdapter
from robolearn.real_robot.config import ActionConfig, SafetyConfig
from robolearn.real_robot.events import EventLog
from robolearn.real_robot.watchdog import HOLD, OK, STOP, Watchdog

C = SafetyConfig(obs_stale_s=0.1, stop_after_s=1.0, inference_deadline_s=0.5, worker_silent_s=2.0,
                 driver_silent_s=0.2)


def test_watchdog_stale_observation_holds_then_stops():
    w = Watchdog(C, now=0.0)
    w.obs(0.0)
    assert w.verdict(0.05).level == OK
    assert w.verdict(0.11).level == HOLD
    assert w.verdict(1.01).level == STOP
    w.obs(1.0)
    assert w.verdict(1.02).level == OK


def test_watchdog_inference_deadline_and_worker():
    w = Watchdog(C, now=0.0)
    w.obs(10.0)
    w.inference_start(9.0)
    v = w.verdict(9.6)
    assert v.level == HOLD and "inference_deadline" in v.reasons
    w.inference_end(9.7)
    w.obs(9.7)
    assert w.verdict(9.7).level == OK
    assert w.verdict(11.0).level == HOLD  # obs stale
    w.obs(12.0)
    assert "worker_silent" in w.verdict(12.0).reasons  # idle worker, no heartbeat for > 2 s
    w.heartbeat(12.0, alive=False)
    assert "worker_dead" in w.verdict(12.0).reasons


def test_watchdog_driver_errors_and_estop():
    w = Watchdog(C, now=0.0)
    w.driver_error(0.0)
    assert w.verdict(0.1).level == HOLD
    assert w.verdict(0.3).level == STOP
    w.driver_ok()
    w.obs(0.3)
    w.estop()
    assert w.verdict(0.3).reasons == ["estop"]
    w.rearm(0.3)
    assert w.verdict(0.3).level == OK


def test_ik_step_moves_end_effector_toward_delta(kin):
    cfg = make_cfg()
    ad = ActionAdapter(ActionConfig(space="eef_delta", ik_gain=0.5), 7, kin)
    q = cfg.joints.home.copy()
    p0, R0 = kin.pose(q)
    a = np.array([1.0, -1.0, 0.5, 0, 0, 0, 1.0])  # +5 cm x, -5 cm y, +2.5 cm z
    for _ in range(20):
        q, g = ad.target(a, slot=0, q_cmd=q)
    p1, R1 = kin.pose(q)
    np.testing.assert_allclose(p1 - p0, [0.05, -0.05, 0.025], atol=2e-3)
    assert np.linalg.norm(R1 - R0) < 1e-2 and g == 1.0
    q2, _ = ad.target(np.array([0, 0, 0, 0, 0, 1.0, -1.0]), slot=1, q_cmd=q)  # rotation about z
    assert np.linalg.norm(q2 - q) > 1e-3


def test_joint_space_passthrough(kin):
    ad = ActionAdapter(ActionConfig(space="joint"), 7, kin)
    q, g = ad.target(np.arange(8.0), slot=0, q_cmd=np.zeros(7))
    np.testing.assert_array_equal(q, np.arange(7.0))
    assert g == 1.0 and ad.interpolate


def test_event_log_writes_json_lines(tmp_path):
    path = tmp_path / "ev" / "events.jsonl"
    log = EventLog(path)
    log.emit("clamp", 3, 1.0, why=["clamp_pos"], q=np.array([np.nan, 1.0]))
    log.emit("hold", 4, 1.01, why=["obs_stale"])
    log.close()
    lines = [json.loads(x) for x in path.read_text().splitlines()]
    assert [x["kind"] for x in lines] == ["clamp", "hold"]
    assert lines[0]["q"] == ["nan", 1.0] and lines[1]["tick"] == 4

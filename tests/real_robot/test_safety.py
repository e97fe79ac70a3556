"""Safety filter: every output is within limits, whatever comes in."""

import numpy as np
import pytest
from rr_helpers import make_cfg

from robolearn.real_robot.safety import SafetyFilter, within_limits


@pytest.fixture
def cfg():
    return make_cfg()


def _filter(cfg, fk=None):
    f = SafetyFilter(cfg.joints, cfg.workspace, cfg.period, fk=fk, gripper_step=0.1)
    f.reset(cfg.joints.home, 0.0)
    return f


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nonfinite_rejected_and_previous_command_held(cfg, bad):
    f = _filter(cfg)
    q = cfg.joints.home.copy()
    q[2] = bad
    r = f.filter(q, 0.0)
    assert not r.ok and "reject_nonfinite" in r.interventions
    np.testing.assert_array_equal(r.q, cfg.joints.home)
    assert not f.filter(cfg.joints.home, np.nan).ok


def test_wrong_shape_rejected(cfg):
    assert not _filter(cfg).filter(np.zeros(3), 0.0).ok


def test_step_capped_by_velocity_and_ramped_by_acceleration(cfg):
    f = _filter(cfg)
    dt, j = cfg.period, cfg.joints
    target = j.home + 1.0  # far away: every tick is clamped
    steps = []
    prev = j.home.copy()
    for _ in range(30):  # ramps up to full speed, stays clear of the position limits
        r = f.filter(target, 0.0)
        assert r.ok and within_limits(r.q, prev, j, dt)
        steps.append(r.q - prev)
        prev = r.q
    steps = np.array(steps)
    cap = np.minimum(j.vel_max * dt, j.max_step)
    assert np.all(np.abs(steps) <= cap + 1e-12)
    dv = np.abs(np.diff(steps, axis=0)) / dt  # change of velocity per tick
    assert np.all(dv <= j.acc_max * dt + 1e-9)
    assert abs(steps[0, 0]) < cap[0]  # ramped up, not an instant jump to full speed
    assert np.allclose(np.abs(steps[-1]), cap)  # cruising at the velocity cap


def test_position_limits_clamp(cfg):
    f = _filter(cfg)
    j = cfg.joints
    q = j.home.copy()
    for _ in range(2000):
        r = f.filter(j.pos_max + 5.0, 1.0)
        assert within_limits(r.q, q, j, cfg.period)
        q = r.q
    np.testing.assert_allclose(q, j.pos_max)
    assert "clamp_pos" in r.interventions


def test_workspace_box_rejects(cfg, kin):
    f = _filter(cfg, fk=kin.fk)
    assert f.filter(cfg.joints.home, 0.0).ok
    f.ws.max = f.ws.max.copy()
    f.ws.max[2] = kin.fk(cfg.joints.home)[2] - 0.01  # the current pose is now above the box
    r = f.filter(cfg.joints.home, 0.0)
    assert not r.ok and "reject_workspace" in r.interventions


def test_gripper_clamped_to_range_and_rate(cfg):
    f = _filter(cfg)
    r = f.filter(cfg.joints.home, 7.0)
    assert r.gripper == pytest.approx(0.1) and "clamp_gripper" in r.interventions
    assert f.filter(cfg.joints.home, -3.0).gripper == pytest.approx(0.0)


def test_random_garbage_never_leaves_limits(cfg, kin):
    rng = np.random.default_rng(0)
    f = _filter(cfg, fk=kin.fk)
    j = cfg.joints
    prev = j.home.copy()
    for i in range(500):
        q = j.home + rng.normal(0, 2.0, j.dof)
        if i % 7 == 0:
            q[rng.integers(j.dof)] = rng.choice([np.nan, np.inf, 1e9])
        r = f.filter(q, float(rng.normal(0, 3)))
        assert within_limits(r.q, prev, j, cfg.period)
        assert cfg.workspace.contains(kin.fk(r.q))
        assert 0.0 <= r.gripper <= 1.0
        prev = r.q

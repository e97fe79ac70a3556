import numpy as np
import pytest

from robolearn.errors import UserError
from robolearn.real_robot.config import load_robot_config

from rr_helpers import SIM_PANDA


def test_sim_panda_config_loads():
    cfg = load_robot_config(SIM_PANDA)
    assert cfg.joints.dof == 7 and cfg.driver == "sim" and cfg.period == pytest.approx(0.01)
    assert np.all(cfg.joints.pos_min < cfg.joints.pos_max)
    assert cfg.scheduling.mode in ("receding", "ensemble", "rtc")


@pytest.mark.parametrize("override, field", [
    ({"joints.pos_min": [3.0, -1.7628, -2.8973, -3.0718, -2.8973, -0.0175, -2.8973]}, "pos_min/pos_max"),
    ({"joints.vel_max": [1.0, -1.0, 1.0, 1.0, 1.0, 1.0, 1.0]}, "vel_max"),
    ({"joints.acc_max": [1.0, 1.0, 1.0]}, "acc_max"),
    ({"joints.home": [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]}, "home"),  # joint4 upper limit is -0.0698
    ({"workspace.min": [0.5, -0.35, 0.81]}, "workspace"),
    ({"scheduling.mode": "yolo"}, "mode"),
    ({"scheduling.action_dt": 0.001}, "action_dt"),
    ({"safety.obs_stale_s": -1}, "obs_stale_s"),
    ({"safety.stop_after_s": 0.01}, "stop_after_s"),
    ({"control_hz": 0}, "control_hz"),
    ({"safety.bogus": 1}, "bogus"),
    ({"joints.max_step": [0.0] * 7}, "max_step"),
])
def test_inconsistent_config_refused_with_field_name(override, field):
    with pytest.raises(UserError, match=field):
        load_robot_config(SIM_PANDA, override)


def test_missing_or_broken_file(tmp_path):
    with pytest.raises(UserError, match="not found"):
        load_robot_config(tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("name = [")
    with pytest.raises(UserError, match="TOML"):
        load_robot_config(bad)

"""Fixtures for the real_robot tests (helpers live in rr_helpers.py)."""

import pytest
from rr_helpers import SIM_PANDA

from robolearn.real_robot.config import load_robot_config
from robolearn.real_robot.model import Kinematics


@pytest.fixture(scope="session")
def kin():
    cfg = load_robot_config(SIM_PANDA)
    return Kinematics(cfg.model, cfg.joints.names, base_pos=cfg.base_pos)

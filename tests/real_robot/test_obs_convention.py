"""The sim arm's observations use robosuite's conventions, so a policy trained in robosuite sees its own frames."""

import numpy as np
from rr_helpers import SIM_PANDA

from robolearn.real_robot.config import load_robot_config
from robolearn.real_robot.drivers.stepped import SteppedSimDriver
from robolearn.real_robot.lift import SimClock
from doubles import quat_xyzw_to_matrix
from robolearn.real_robot.worker import obs_from_state


def test_eef_quat_is_the_hand_body_like_robosuite(kin):
    """robosuite's `robot0_eef_quat` is the hand *body* (xyzw), not the grip site (turned 90 deg about z):
    at robosuite's Panda init_qpos it reads about (0.998, 0, 0.064, 0); the site frame would read (0.71, 0.71, ...)."""
    cfg = load_robot_config(SIM_PANDA, {"control_socket": "", "event_log": ""})
    clock = SimClock()
    drv = SteppedSimDriver(cfg, clock, seed=0)
    drv.connect()
    clock.t += 0.02
    obs = obs_from_state(drv.read_state())
    quat = obs["proprio"][3:7]  # (4,) xyzw
    assert abs(abs(float(np.dot(quat, [0.998, 0.0, 0.064, 0.0]))) - 1.0) < 1e-3
    # a fixed 90 deg turn about the tool z axis away from the grip site's orientation (what IK controls)
    _, R_site = kin.pose(drv.read_state().q)
    R_rel = R_site.T @ quat_xyzw_to_matrix(quat.astype(np.float64))
    assert abs(abs(R_rel[0, 1]) - 1.0) < 1e-2 and abs(R_rel[2, 2] - 1.0) < 1e-2
    drv.close()

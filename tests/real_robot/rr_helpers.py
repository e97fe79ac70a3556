"""Helpers for the real_robot tests: the sim Panda config, a fake clock, a daemon on a fake arm driven tick by tick."""

from __future__ import annotations

import time
from pathlib import Path

from doubles import FaultyFakeDriver

from robolearn.real_robot.config import load_robot_config
from robolearn.real_robot.daemon import Daemon
from robolearn.real_robot.lift import SimClock

ROOT = Path(__file__).resolve().parents[2]
SIM_PANDA = ROOT / "real_robot" / "sim_panda.toml"


FakeClock = SimClock  # a clock the test advances


def make_cfg(tmp_path=None, **overrides):
    ov = {"control_hz": 50, "scheduling.mode": "receding", "control_socket": ""}
    ov.update(overrides)
    return load_robot_config(SIM_PANDA, ov)


def fake_daemon(policy, kin, clock=None, goal=None, **overrides):
    """Daemon + fake arm (with fault switches) sharing one (fake) clock. Returns (daemon, driver, clock)."""
    clock = clock or FakeClock()
    cfg = make_cfg(**overrides)
    drv = FaultyFakeDriver(cfg, clock=clock, kinematics=kin)
    d = Daemon(cfg, drv, policy, kinematics=kin, clock=clock, sleep=clock.sleep, goal=goal)
    return d, drv, clock


def step(d: Daemon, clock: FakeClock, n: int, wait_worker: bool = True) -> None:
    """Advance n control periods; inference finishes 'instantly' in fake time (we wait for it in real time)."""
    for _ in range(n):
        clock.t += d.cfg.period
        d.tick(clock.t)
        if wait_worker:
            t_end = time.monotonic() + 5.0
            while d.worker.busy and time.monotonic() < t_end:
                time.sleep(0.0005)


def hold_ticks(d: Daemon) -> list[int]:
    return [e["tick"] for e in d.events.events if e["kind"] in ("hold", "stop")]


def tiny_checkpoint(path, method="diffusion"):
    """An untrained small diffusion checkpoint: state obs (19 = proprio 9 + lift object 10), 7-D eef_delta actions."""
    from robolearn.policies import POLICY_REGISTRY, make_policy

    cls = POLICY_REGISTRY[method].config_class
    kw = dict(down_dims=[16, 32], step_embed_dim=16, num_train_timesteps=20, num_inference_steps=5)
    cfg = cls(**kw, horizon=16, n_action_steps=8)
    cfg.obs_keys, cfg.image_keys, cfg.obs_shapes, cfg.action_dim = ["state"], [], {"state": [19]}, 7
    stats = {"state": {"min": [-2.0] * 19, "max": [2.0] * 19, "mean": [0.0] * 19, "std": [1.0] * 19},
             "action": {"min": [-0.2] * 7, "max": [0.2] * 7, "mean": [0.0] * 7, "std": [0.1] * 7}}
    make_policy(cfg, stats).save(path)
    return path

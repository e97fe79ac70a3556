"""`robolearn robot check` on the sim arm (a pass table, and a fail for limits beyond the datasheet), and
`serve --dry-run`: the whole loop runs while nothing reaches the arm. (franky-sim: test_franka.py.)"""

import numpy as np
from rr_helpers import SIM_PANDA

from robolearn.cli import main
from robolearn.real_robot.check import datasheet_problems, run_check
from robolearn.real_robot.config import load_robot_config
from robolearn.real_robot.drivers.fake import FakeDriver


def test_robot_check_passes_on_a_healthy_arm(capsys):
    """The whole table on the in-process kinematic arm (the MuJoCo sim arm process drops state reads on a
    loaded CPU; `robolearn robot check --robot real_robot/sim_panda.toml` passes on it when the machine is
    not saturated, and test_franka.py runs the check on franky-sim)."""
    cfg = load_robot_config(SIM_PANDA)
    driver = FakeDriver(cfg)
    assert run_check(cfg, driver=driver)
    out = capsys.readouterr().out
    assert driver.violations == [] and len(driver.commands) > 100 and driver.stops
    rows = {line.split()[0]: line.split()[1] for line in out.splitlines()[1:-1]}
    assert rows == {"limits": "PASS", "datasheet": "PASS", "connect": "PASS", "state": "PASS", "motion": "PASS",
                    "e-stop": "PASS"}, out
    assert out.strip().splitlines()[-1] == "PASS"


def test_limits_beyond_the_datasheet_fail_the_check_and_are_refused_by_serve(capsys):
    cfg = load_robot_config(SIM_PANDA, {"joints.vel_max": [3.0, 1, 1, 1, 1.3, 1.3, 1.3]})
    probs = datasheet_problems(cfg)
    assert len(probs) == 1 and "vel_max" in probs[0] and "joint1" in probs[0] and "panda" in probs[0]
    driver = FakeDriver(cfg)
    assert run_check(cfg, driver=driver) is False
    out = capsys.readouterr().out
    assert "datasheet  FAIL" in out and "connect    SKIP" in out and driver.commands == []  # arm not touched
    capsys.readouterr()
    code = main(["serve", "--robot", str(SIM_PANDA), "--checkpoint", "unused", "--set",
                 "joints.vel_max=[3.0,1,1,1,1.3,1.3,1.3]"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1 and "vel_max beyond the panda datasheet" in err[0]


def test_serve_dry_run_runs_the_loop_with_the_arm_held(monkeypatch, tmp_path, capsys):
    from rr_helpers import tiny_checkpoint  # noqa: F401  (the state-obs checkpoint needs the lift object)
    from test_policy_supervision import proprio_checkpoint

    from robolearn.real_robot import driver as driver_mod

    made = []

    def fake(name, cfg, **kw):
        made.append(FakeDriver(cfg))
        return made[-1]

    monkeypatch.setattr(driver_mod, "make_driver", fake)
    ck = proprio_checkpoint(tmp_path / "ck")
    log = tmp_path / "events.jsonl"
    code = main(["serve", "--robot", str(SIM_PANDA), "--checkpoint", ck, "--dry-run", "--duration", "1.5",
                 "--device", "cpu", "--set", 'control_socket=""', f'event_log="{log}"', 'scheduling.mode="receding"'])
    out = capsys.readouterr().out
    assert code == 0
    drv = made[0]
    assert drv.commands == [] and len(drv.holds) > 50  # held every tick, nothing sent
    n = int(out.split("dry run: ")[1].split()[0])
    assert n > 50 and "none sent" in out  # ... while the loop computed commands
    assert np.allclose(drv.q, drv.cfg.joints.home, atol=1e-9)

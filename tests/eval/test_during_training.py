"""`robolearn train ... eval_every=N`: sim evaluation of the EMA checkpoint during training."""

from __future__ import annotations

import json

from robolearn.cli import main
from robolearn.policies import load_policy
from robolearn.sim.collect import CollectConfig, collect


def test_eval_every_keeps_best_and_last(tmp_path):
    store = tmp_path / "lift.zarr"
    collect(CollectConfig(task="lift", episodes=2, out=str(store), cameras=[], progress=False))
    run = tmp_path / "run"
    code = main(["train", "--recipe", "policies/lift_bc.toml", f"dataset={store}", "train.steps=20",
                 "train.batch_size=8", "train.checkpoint_every=100", "eval_every=10", "eval_episodes=2",
                 "eval_workers=1", "eval_max_steps=4", "--out", str(run), "--no-progress"])
    assert code == 0
    log = [json.loads(line) for line in (run / "eval_log.jsonl").read_text().splitlines()]
    assert [e["step"] for e in log] == [10, 20]
    summary = json.loads((run / "eval_summary.json").read_text())
    assert summary["last"]["step"] == 20 and summary["max"]["step"] in (10, 20)
    assert [h["step"] for h in summary["history"]] == [10, 20]
    assert (run / "eval" / "step_10" / "report.json").is_file() and (run / "eval_success.png").is_file()
    best = load_policy(run / "checkpoints" / "best")  # the kept best checkpoint loads as a policy
    assert best.config.method == "bc"

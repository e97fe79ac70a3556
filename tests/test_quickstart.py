"""`robolearn quickstart --fast`: every stage of the main job runs and leaves what it promises."""

from __future__ import annotations

import json

import imageio.v2 as imageio

from robolearn.cli import main
from robolearn.policies import load_policy


def test_quickstart_fast_runs_every_stage_and_resumes(tmp_path, capsys):
    out = tmp_path / "qs"
    assert main(["quickstart", "--fast", "--out", str(out), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "Lift success rate:" in printed and "report:" in printed

    summary = json.loads((out / "quickstart.json").read_text())
    report = json.loads((out / "eval" / "report.json").read_text())
    assert report["episodes"] == 2 and report["errors"] == 0 and report["task"] == "lift"
    assert (out / "train" / "train_loss.png").stat().st_size > 1000
    assert summary["videos_skipped"] is None and len(imageio.mimread(summary["videos"][0])) > 1
    policy = load_policy(summary["checkpoint"])
    assert policy.config.obs_keys == ["state"] and policy.config.env["task"] == "lift"

    # a second run reuses the demos and the finished training run
    assert main(["quickstart", "--fast", "--out", str(out), "--no-progress"]) == 0
    again = json.loads((out / "quickstart.json").read_text())
    assert again["checkpoint"] == summary["checkpoint"]
    assert again["timings"]["train_s"] < summary["timings"]["train_s"]

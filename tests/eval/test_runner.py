"""The sim evaluation runner: determinism per seed, crashing/hanging workers, reports, bad input."""

from __future__ import annotations

import json
from functools import partial

import imageio.v2 as imageio
import numpy as np
import pytest
from eval_doubles import faulty_worker

from robolearn.cli import main
from robolearn.errors import UserError
from robolearn.eval import runner
from robolearn.eval.metrics import wilson_interval
from robolearn.eval.runner import EvalConfig, evaluate
from robolearn.policies import make_policy
from robolearn.policies.diffusion import DiffusionConfig

LIFT_STATE_DIM = 19


def lift_checkpoint(path, action_dim: int = 7, obs_key: str = "state", shape=(LIFT_STATE_DIM,)) -> str:
    """An untrained (random-weight) diffusion policy for lift: stochastic, so determinism means something."""
    cfg = DiffusionConfig(obs_keys=[obs_key], obs_shapes={obs_key: list(shape)}, action_dim=action_dim,
                          down_dims=[16, 32], step_embed_dim=16, num_inference_steps=3,
                          env={"task": "lift", "env": {"cameras": [], "image_size": 84}})
    dim = shape[-1]
    stats = {obs_key: {"min": [-1.0] * dim, "max": [1.0] * dim, "mean": [0.0] * dim, "std": [1.0] * dim},
             "action": {"min": [-1.0] * action_dim, "max": [1.0] * action_dim, "mean": [0.0] * action_dim,
                        "std": [1.0] * action_dim}}
    make_policy(cfg, stats).save(path)
    return str(path)


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return lift_checkpoint(tmp_path_factory.mktemp("ckpt") / "policy")


def test_wilson_interval():
    lo, hi = wilson_interval(50, 50)
    assert hi == 1.0 and 0.92 < lo < 0.93  # the known value 0.9287
    lo, hi = wilson_interval(0, 10)
    assert lo == 0.0 and hi == pytest.approx(1.959964**2 / (10 + 1.959964**2))  # z²/(n+z²)
    lo, hi = wilson_interval(5, 10)
    assert lo == pytest.approx(1 - hi)


def test_same_seeds_same_outcomes_whatever_the_workers(ckpt, tmp_path):
    common = dict(checkpoint=ckpt, episodes=3, max_steps=12, videos=0)
    one = evaluate(EvalConfig(**common, workers=1, out=str(tmp_path / "a")), progress=False)
    two = evaluate(EvalConfig(**common, workers=2, out=str(tmp_path / "b")), progress=False)
    assert [o["seed"] for o in one["per_episode"]] == [100000, 100001, 100002]
    assert one["per_episode"] == two["per_episode"]
    digests = [o["actions_sha1"] for o in one["per_episode"]]
    assert len(set(digests)) == 3  # different seeds really give different episodes
    assert one["errors"] == 0 and one["env_steps"] == 36
    here = evaluate(EvalConfig(**common, workers=0, out=str(tmp_path / "c")), progress=False)  # in this process
    assert here["per_episode"] == one["per_episode"] and here["workers"] == 0


@pytest.mark.parametrize("mode", ["receding", "ensemble", "rtc"])
def test_report_records_the_mode_and_boundary_jumps(ckpt, tmp_path, mode):
    r = evaluate(EvalConfig(checkpoint=ckpt, episodes=2, max_steps=10, workers=0, mode=mode, out=str(tmp_path)),
                 progress=False)
    saved = json.loads((tmp_path / "report.json").read_text())
    assert saved["mode"] == mode and saved["goal"] == [] and saved["latency_steps"] == 0
    jumps, per = saved["boundary_jumps"], [o["boundary_jumps"] for o in saved["per_episode"]]
    assert jumps["n_boundaries"] == sum(j["n_boundaries"] for j in per) > 0
    assert jumps["boundary_max"] == max(j["boundary_max"] for j in per) > 0
    # receding: a new chunk every n_action_steps (8) steps; ensemble: every step
    assert jumps["chunks"] == (20 if mode == "ensemble" else 4) == r["boundary_jumps"]["chunks"]


def test_report_plot_and_playable_video(ckpt, tmp_path):
    r = evaluate(EvalConfig(checkpoint=ckpt, episodes=2, max_steps=6, videos=1, workers=1, out=str(tmp_path)),
                 progress=False)
    saved = json.loads((tmp_path / "report.json").read_text())
    assert saved["episodes"] == 2 and saved["task"] == "lift" and len(saved["per_episode"]) == 2
    assert 0 <= saved["wilson95"][0] <= saved["success_rate"] <= saved["wilson95"][1] <= 1
    assert (tmp_path / "success.png").stat().st_size > 1000
    assert r["videos"] == [str(tmp_path / "episode_100000.mp4")]
    frames = imageio.mimread(r["videos"][0])
    assert len(frames) == 7 and frames[0].shape == (128, 128, 3)  # every step plus the final state
    assert np.std(frames[-1]) > 5  # a rendered scene, not a blank frame


def test_a_crashing_worker_costs_only_its_episode(ckpt, tmp_path, monkeypatch):
    monkeypatch.setattr(runner, "_worker", partial(faulty_worker, crash_seed=100001))  # dies taking seed 100001
    r = evaluate(EvalConfig(checkpoint=ckpt, episodes=3, max_steps=5, workers=1, out=str(tmp_path)), progress=False)
    errors = {o["seed"]: o.get("error") for o in r["per_episode"]}
    assert errors[100000] is None and errors[100002] is None
    assert "crashed" in errors[100001]
    assert r["errors"] == 1 and r["per_episode"][2]["length"] == 5


def test_a_hung_worker_is_killed_and_reported(ckpt, tmp_path, monkeypatch):
    monkeypatch.setattr(runner, "_worker", partial(faulty_worker, hang_seed=100000))  # hangs taking seed 100000
    r = evaluate(EvalConfig(checkpoint=ckpt, episodes=2, max_steps=5, workers=2, out=str(tmp_path),
                            episode_timeout=8), progress=False)
    assert "hung" in r["per_episode"][0]["error"] and r["per_episode"][1].get("error") is None


def test_strict_cli_exit_codes(ckpt, tmp_path, capsys):
    args = ["eval", ckpt, "--episodes", "1", "--max-steps", "3", "--workers", "1", "--videos", "0", "--strict",
            "--out", str(tmp_path)]
    assert main(args) == 0
    assert "success 0/1" in capsys.readouterr().out


def test_bad_input(ckpt, tmp_path, capsys):
    assert main(["eval", str(tmp_path / "missing"), "--episodes", "1"]) == 1
    assert "no such checkpoint" in capsys.readouterr().err
    assert main(["eval", ckpt, "--episodes", "0"]) == 1
    assert "--episodes: expected at least 1" in capsys.readouterr().err
    assert main(["eval", ckpt, "--task", "nope", "--episodes", "1"]) == 1
    assert "nope" in capsys.readouterr().err
    for args, marker in [(["--mode", "temporal"], "--mode: expected one of receding, ensemble, rtc, got 'temporal'"),
                         (["--goal", "language"], "--goal language: " + ckpt + " was trained without language goals"),
                         (["--goal", "image,state"], "trained without image goals"),
                         (["--goal", "smell"], "--goal: unknown goal modality 'smell'"),
                         (["--workers", "-1"], "--workers: expected 0"),
                         (["--latency-steps", "16"], "--latency-steps: expected 0 to 15 (below the policy's horizon)")]:
        out = tmp_path / "never"
        assert main(["eval", ckpt, "--episodes", "1", "--out", str(out), *args]) == 1
        err = capsys.readouterr().err
        assert marker in err and len(err.strip().splitlines()) == 1, err
        assert not out.exists()  # refused before anything was written or any worker started
    wrong_dim = lift_checkpoint(tmp_path / "six", action_dim=6)
    with pytest.raises(UserError, match="action_dim 6 but task 'lift' takes 7"):
        evaluate(EvalConfig(checkpoint=wrong_dim, episodes=1, max_steps=2, out=str(tmp_path / "o1")), progress=False)
    wrong_obs = lift_checkpoint(tmp_path / "obs", obs_key="state", shape=(12,))
    with pytest.raises(UserError, match="observation 'state' has shape"):
        evaluate(EvalConfig(checkpoint=wrong_obs, episodes=1, max_steps=2, out=str(tmp_path / "o2")), progress=False)

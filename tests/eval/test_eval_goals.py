"""Goals in `robolearn eval`: built from the env, passed at every prediction, refused when untrained."""

from __future__ import annotations

import json

import numpy as np
from eval_doubles import save_goal_lift_checkpoint

from robolearn.cli import main
from robolearn.eval.rollout import episode_goal
from robolearn.eval.runner import EvalConfig, evaluate
from robolearn.sim import make
from robolearn.sim.suite import get_spec


def test_a_goal_conditioned_policy_succeeds_only_when_its_goal_is_passed(tmp_path):
    """The toy lifts the cube from `proprio` alone plus the goal state `object` (the cube's pose at
    the end of the expert's demo from the same seed): the goal is its only way to find the cube."""
    ckpt = save_goal_lift_checkpoint(tmp_path / "policy")
    common = dict(checkpoint=ckpt, max_steps=120, workers=0, videos=0)  # in-process: the class is registered here
    with_goal = evaluate(EvalConfig(**common, episodes=2, out=str(tmp_path / "auto")), progress=False)
    assert with_goal["goal"] == ["state"]  # default auto: what the checkpoint was trained with
    assert [o["success"] for o in with_goal["per_episode"]] == [True, True]
    assert all(o["goal"] == ["state"] for o in with_goal["per_episode"])
    without = evaluate(EvalConfig(**common, episodes=1, goal="none", out=str(tmp_path / "none")), progress=False)
    assert without["goal"] == [] and without["successes"] == 0 and without["errors"] == 0


def test_cli_goal_flag_reaches_the_report(tmp_path, capsys):
    ckpt = save_goal_lift_checkpoint(tmp_path / "policy")
    out = tmp_path / "eval"
    assert main(["eval", ckpt, "--goal", "state", "--workers", "0", "--episodes", "1", "--max-steps", "120",
                 "--videos", "0", "--mode", "rtc", "--out", str(out)]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["goal"] == ["state"] and report["mode"] == "rtc" and report["successes"] == 1
    assert "goal state" in capsys.readouterr().out
    assert main(["eval", ckpt, "--goal", "image", "--workers", "0", "--out", str(tmp_path / "no")]) == 1
    assert "trained without image goals" in capsys.readouterr().err and not (tmp_path / "no").exists()


def test_episode_goal_comes_from_the_expert_and_the_reset_repeats(tmp_path):
    env = make("lift", cameras=["agentview"], image_size=32)
    try:
        first = env.reset(seed=7)[0]
        goal = episode_goal(env, 7, ["language", "image", "state"], ["agentview_image"], ["object"])
        again = env.reset(seed=7)[0]
    finally:
        env.close()
    assert goal.instruction == get_spec("lift").instruction == "lift the cube"
    img = goal.images["agentview_image"]
    assert img.dtype == np.uint8 and img.shape == (32, 32, 3) and not np.array_equal(img, first["agentview_image"])
    assert goal.state["object"].shape == (10,) and goal.state["object"][2] > first["object"][2] + 0.04  # lifted
    for k in first:  # after the expert's run, the same seed gives the same initial state
        np.testing.assert_array_equal(first[k], again[k])


def test_a_real_head_gets_image_and_state_goals_in_worker_processes(tmp_path):
    """A (tiny, untrained) diffusion head conditioned on a goal image and goal state runs in a
    spawned worker: the goal camera joins the env at the goal image size, rtc passes its prefix."""
    from robolearn.goal import GoalConfig
    from robolearn.nn.obs_encoder import EncoderConfig
    from robolearn.policies import make_policy
    from robolearn.policies.diffusion import DiffusionConfig

    goal = GoalConfig(modalities=["image", "state"], image_keys=["agentview_image"], state_keys=["object"],
                      image_shapes={"agentview_image": [32, 32, 3]}, state_dims={"object": 10})
    cfg = DiffusionConfig(obs_keys=["state"], obs_shapes={"state": [19]}, action_dim=7, down_dims=[16, 32],
                          step_embed_dim=16, num_inference_steps=3, goal=goal, goal_dim=8,
                          encoder=EncoderConfig(image_width=8, image_feature_dim=8, num_keypoints=4, crop_size=28),
                          env={"task": "lift", "env": {"cameras": []}})
    unit = lambda d: {"min": [-1.0] * d, "max": [1.0] * d, "mean": [0.0] * d, "std": [1.0] * d}  # noqa: E731
    make_policy(cfg, {"state": unit(19), "object": unit(10), "action": unit(7)}).save(tmp_path / "policy")
    r = evaluate(EvalConfig(checkpoint=str(tmp_path / "policy"), episodes=1, max_steps=10, workers=1, mode="rtc",
                            out=str(tmp_path / "eval")), progress=False)
    assert r["goal"] == ["image", "state"] and r["errors"] == 0, r["per_episode"]
    assert r["env_kwargs"]["cameras"] == ["agentview"] and r["env_kwargs"]["image_size"] == 32
    assert r["per_episode"][0]["goal"] == ["image", "state"] and r["boundary_jumps"]["chunks"] == 2

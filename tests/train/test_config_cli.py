"""Recipes, overrides and the `robolearn train` command end to end."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from train_helpers import make_toy_store, to_toml, toy_recipe

from robolearn.errors import UserError
from robolearn.policies.diffusion import DiffusionConfig
from robolearn.train.config import load_recipe

REPO = Path(__file__).resolve().parents[2]
# every shipped recipe (loading, includes, the dataset chain): test_recipes.py


def test_overrides_dotted_keys_and_types():
    recipe = REPO / "policies" / "lift_diffusion.toml"
    run = load_recipe(recipe, ["policy.horizon=32", "train.lr=3e-4", "dataset=/data/x.zarr", "policy.encoder.crop_size=60"])
    assert isinstance(run.policy, DiffusionConfig)
    assert (run.policy.horizon, run.train.lr, run.dataset, run.policy.encoder.crop_size) == (32, 3e-4, "/data/x.zarr", 60)
    with pytest.raises(UserError, match="unknown key 'policy.horizn'"):
        load_recipe(recipe, ["policy.horizn=16"])
    with pytest.raises(UserError, match="'train.lr' expected float"):
        load_recipe(recipe, ["train.lr=fast"])
    with pytest.raises(UserError, match="'policy.horizon' expected int"):
        load_recipe(recipe, ["policy.horizon=1.5"])
    with pytest.raises(UserError, match="unknown policy 'dp'"):
        load_recipe(recipe, ["method=dp"])
    with pytest.raises(UserError, match="unknown key 'policy.denoiser'"):
        load_recipe(recipe, ["method=act"])  # a diffusion-only key under another method


def _cli(args, cwd, timeout=300):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "robolearn.cli", "train", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


def test_cli_trains_and_writes_every_output(tmp_path):
    store = make_toy_store(tmp_path / "toy.zarr", n_episodes=4)
    recipe = toy_recipe("datasets/none.zarr", "diffusion", "unused", tensorboard=True, checkpoint_every=4)
    del recipe["out"], recipe["device"]
    (tmp_path / "toy_diffusion.toml").write_text(to_toml(recipe))
    res = _cli(["--recipe", "toy_diffusion.toml", f"dataset={store}", "--max-steps", "6", "--device", "cpu",
                "--out", "run", "policy.n_action_steps=2"], cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    run = tmp_path / "run"
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["dataset"] == store and cfg["policy"]["n_action_steps"] == 2 and cfg["train"]["steps"] == 6
    assert len((run / "train_log.jsonl").read_text().splitlines()) == 6
    assert (run / "train_loss.png").read_bytes()[:4] == b"\x89PNG"
    assert any(p.name.startswith("events.out.tfevents") for p in (run / "tensorboard").iterdir())
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["last", "step_4", "step_6"]
    # continue the finished run to 8 steps
    res = _cli(["--resume", "run", "train.steps=8"], cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert [json.loads(x)["step"] for x in (run / "train_log.jsonl").read_text().splitlines()] == list(range(1, 9))


def test_cli_bad_input_is_one_line_and_exit_1(tmp_path):
    store = make_toy_store(tmp_path / "toy.zarr", n_episodes=2)
    recipe = toy_recipe(store, "bc", tmp_path / "run")
    recipe["policy"]["hidden_sizes"] = [8]
    (tmp_path / "bad.toml").write_text(to_toml(recipe))
    res = _cli(["--recipe", "bad.toml"], cwd=tmp_path)
    assert res.returncode == 1
    assert res.stderr.strip().count("\n") == 0 and "policy.hidden_sizes" in res.stderr
    res = _cli(["--recipe", str(REPO / "policies" / "lift_bc.toml"), f"dataset={store}", "policy.action_dim=7"], cwd=tmp_path)
    assert res.returncode == 1 and "action_dim" in res.stderr and res.stderr.strip().count("\n") == 0

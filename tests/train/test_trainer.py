"""Trainer behaviour on tiny toy stores: learning, exact resume, NaN stop, weights, bad stores."""

from __future__ import annotations

import pytest
import torch
from train_helpers import make_toy_store, toy_recipe

from robolearn.errors import UserError
from robolearn.policies import load_policy
from robolearn.train.config import load_recipe
from robolearn.train.logs import read_log
from robolearn.train.run import resume_config, train
from robolearn.train.trainer import TrainingDiverged


def run_cfg(store, method, out, image=False, overrides=(), **train_kw):
    return load_recipe(None, list(overrides), base=toy_recipe(store, method, out, image, **train_kw))


@pytest.mark.parametrize("method", ["bc", "diffusion", "act"])
def test_each_head_loss_falls_on_a_tiny_store(unimodal_store, tmp_path, method):
    cfg = run_cfg(unimodal_store, method, tmp_path / "run", steps=50, checkpoint_every=50, lr=3e-3, batch_size=32)
    losses = train(cfg).losses
    assert sum(losses[-5:]) < 0.7 * sum(losses[:5]), losses
    policy = load_policy(tmp_path / "run" / "checkpoints" / "last")
    assert policy.config.env == {"task": "toy", "env": {"size": 16}}
    assert policy.config.action_dim == 2 and policy.config.obs_shapes == {"state": [2]}
    chunk = policy.predict_action_chunk({"state": torch.zeros(1, policy.config.obs_horizon, 2)})
    assert chunk.shape == (1, 8, 2)


def test_image_policy_trains_and_checkpoints(toy_image_store, tmp_path):
    result = train(run_cfg(toy_image_store, "diffusion", tmp_path / "run", image=True, steps=4, batch_size=8))
    assert result.step == 4 and all(torch.isfinite(torch.tensor(result.losses)))
    policy = load_policy(tmp_path / "run" / "checkpoints" / "last")
    assert policy.config.image_keys == ["agentview_image"]
    obs = {"state": torch.zeros(1, 2, 2), "agentview_image": torch.zeros(1, 2, 16, 16, 3, dtype=torch.uint8)}
    assert policy.predict_action_chunk(obs).shape == (1, 8, 2)


def test_resume_reproduces_the_uninterrupted_run(toy_store, tmp_path):
    full = train(run_cfg(toy_store, "diffusion", tmp_path / "full", steps=20, checkpoint_every=5))
    train(run_cfg(toy_store, "diffusion", tmp_path / "cut", steps=20, checkpoint_every=5), stop_at=12)  # "killed" at 12
    assert (tmp_path / "cut" / "checkpoints" / "last").resolve().name == "step_10"
    resumed = train(resume_config(tmp_path / "cut", []), resume=tmp_path / "cut")
    assert resumed.step == 20
    a = [r["loss"] for r in read_log(tmp_path / "full" / "train_log.jsonl")]
    b = [r["loss"] for r in read_log(tmp_path / "cut" / "train_log.jsonl")]
    assert [r["step"] for r in read_log(tmp_path / "cut" / "train_log.jsonl")] == list(range(1, 21))
    assert a == b  # bitwise identical loss sequence
    pa = load_policy(tmp_path / "full" / "checkpoints" / "last").state_dict()
    pb = load_policy(tmp_path / "cut" / "checkpoints" / "last").state_dict()
    assert all(torch.equal(pa[k], pb[k]) for k in pa)  # identical EMA weights


def test_nan_loss_stops_without_touching_the_last_checkpoint(toy_store, tmp_path, monkeypatch):
    from robolearn.policies.bc import BCPolicy

    calls = {"n": 0}
    original = BCPolicy.compute_loss

    def poisoned(self, batch):
        calls["n"] += 1
        out = original(self, batch)
        return {**out, "loss": out["loss"] * float("nan")} if calls["n"] > 7 else out

    monkeypatch.setattr(BCPolicy, "compute_loss", poisoned)
    with pytest.raises(TrainingDiverged, match="step 8"):
        train(run_cfg(toy_store, "bc", tmp_path / "run", steps=20, checkpoint_every=5))
    ckpts = tmp_path / "run" / "checkpoints"
    assert (ckpts / "last").resolve().name == "step_5"
    assert sorted(p.name for p in ckpts.iterdir()) == ["last", "step_5"]
    assert load_policy(ckpts / "last").config.method == "bc"


def test_per_episode_weights_reach_the_loss(tmp_path):
    # odd episodes (goal at x=-1) have weight 0: the weighted policy only learns to go to +x
    store = make_toy_store(tmp_path / "toy.zarr")
    obs = {"state": torch.zeros(1, 2, 2)}
    xs = {}
    for weights in ("", "weight"):
        cfg = run_cfg(store, "bc", tmp_path / f"run{weights}", steps=100, checkpoint_every=100, lr=3e-3, ema=False, overrides=[f'data.weights="{weights}"'])
        train(cfg)
        xs[weights] = load_policy(tmp_path / f"run{weights}" / "checkpoints" / "last").predict_action_chunk(obs)[0, 0, 0]
    assert xs["weight"] > 0.08  # toward the +x mode (its first step is +0.2)
    assert abs(xs[""]) < 0.03  # unweighted: the two modes average out


def test_store_mismatches_are_user_errors(toy_store, tmp_path):
    with pytest.raises(UserError, match="no data key 'proprio'"):
        train(run_cfg(toy_store, "bc", tmp_path / "a", overrides=['policy.obs_keys=["proprio"]']))
    with pytest.raises(UserError, match="policy.action_dim: recipe says 7"):
        train(run_cfg(toy_store, "bc", tmp_path / "b", overrides=["policy.action_dim=7"]))
    with pytest.raises(UserError, match="no episode meta field 'quality'"):
        train(run_cfg(toy_store, "bc", tmp_path / "c", overrides=['data.weights="quality"']))
    with pytest.raises(UserError, match="no such store"):
        train(run_cfg(str(tmp_path / "nope.zarr"), "bc", tmp_path / "d"))


def test_eval_every_needs_an_evaluator_passed_in(toy_store, tmp_path):
    """Sim evaluation is a layer above training: train() only runs the evaluator it is given."""
    with pytest.raises(UserError, match="^eval_every: evaluating during training needs an evaluator"):
        train(run_cfg(toy_store, "bc", tmp_path / "a", overrides=["eval_every=2"]))
    assert not (tmp_path / "a").exists()
    calls = []
    train(run_cfg(toy_store, "bc", tmp_path / "b", overrides=["eval_every=2"], steps=4),
          evaluator=lambda run, out: lambda step, ckpt, final: calls.append((step, ckpt.name, final, out)))
    assert calls == [(2, "step_2", False, tmp_path / "b"), (4, "step_4", True, tmp_path / "b")]


def test_old_checkpoints_are_pruned_and_last_points_at_the_newest(toy_store, tmp_path):
    train(run_cfg(toy_store, "bc", tmp_path / "run", steps=8, checkpoint_every=2, keep_checkpoints=2))
    ckpts = tmp_path / "run" / "checkpoints"
    assert sorted(p.name for p in ckpts.iterdir()) == ["last", "step_6", "step_8"]
    assert (ckpts / "last").is_symlink() and (ckpts / "last").resolve().name == "step_8"

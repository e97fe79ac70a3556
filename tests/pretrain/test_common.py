"""What every pretrainer shares: the registry contract, checkpoints, resume, recipes, and plugging an
exported encoder into a policy."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from torch.utils.data import default_collate

from robolearn.errors import UserError
from robolearn.pretrain.base import PRETRAINER_REGISTRY, load_pretrainer, pretrainer_class
from robolearn.train.pretrain_run import load_pretrain_recipe, open_pretrain_data, pretrain, window_dataset

REPO = Path(__file__).resolve().parents[2]
pretrainer_class("dynamo")  # fills the registry for parametrisation
METHODS = sorted(PRETRAINER_REGISTRY)


def build(run):
    """(pretrainer, dataset) for a loaded run config, as pretrain() builds them."""
    store, stats = open_pretrain_data(run)
    torch.manual_seed(0)
    pt = pretrainer_class(run.method)(run.pretrain, stats)
    return pt, window_dataset(run, store, pt.window)


def batch_of(dataset, n: int = 8, seed: int = 0) -> dict:
    idx = np.random.default_rng(seed).choice(len(dataset), n, replace=False)
    return default_collate([dataset[int(i)] for i in idx])


def test_registry_has_the_methods_of_this_issue():
    assert {"dynamo", "inverse_dynamics"} <= set(METHODS)


@pytest.mark.parametrize("method", METHODS)
def test_every_pretrainer_builds_from_defaults_and_round_trips(method, square_store, tiny_encoder, tmp_path):

    # a method that rolls out an imitator (OOD-IL, feasibility) names a suite task: the toy store's has no simulator
    sim = {"task": "lift"} if "task" in pretrainer_class(method).config_class.__dataclass_fields__ else {}
    run = load_pretrain_recipe(None, [], base={"dataset": square_store, "method": method,
                                               "pretrain": {"encoder": tiny_encoder, **sim}})
    pt, ds = build(run)
    obs_horizon, obs_future, action_horizon = pt.window
    assert min(obs_horizon, action_horizon) >= 1 and obs_future >= 0
    batch = batch_of(ds)
    out = pt.compute_loss(batch)
    assert out["loss"].ndim == 0 and torch.isfinite(out["loss"])
    out["loss"].backward()
    grads = [p.grad for p in pt.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)

    (tmp_path / "ckpt").mkdir()
    pt.write_files(tmp_path / "ckpt")
    loaded = load_pretrainer(tmp_path / "ckpt")
    assert type(loaded) is type(pt) and not loaded.training
    ref = pt.state_dict()
    assert set(loaded.state_dict()) == set(ref)
    assert all(torch.equal(v, ref[k]) for k, v in loaded.state_dict().items())
    pt.eval()
    torch.manual_seed(1)
    a = pt.compute_loss(batch)["loss"]
    torch.manual_seed(1)
    assert torch.equal(a, loaded.compute_loss(batch)["loss"])


def test_load_pretrainer_rejects_an_edited_config(square_store, tiny_encoder, tmp_path):
    run = load_pretrain_recipe(None, [], base={"dataset": square_store, "method": "dynamo", "pretrain": {"encoder": tiny_encoder}})
    pt, _ = build(run)
    (tmp_path / "ckpt").mkdir()
    pt.write_files(tmp_path / "ckpt")
    cfg = tmp_path / "ckpt" / "config.json"
    cfg.write_text(cfg.read_text().replace('"window_size": 5', '"window_size": 4'))
    with pytest.raises(UserError, match="do not match"):
        load_pretrainer(tmp_path / "ckpt")


def test_recipe_overrides_and_unknown_keys(square_store):
    recipe = REPO / "policies" / "lift_dynamo_pretrain.toml"
    run = load_pretrain_recipe(recipe, ["pretrain.window_size=3", "train.steps=7", f"dataset={square_store}"])
    assert (run.pretrain.window_size, run.train.steps, run.dataset, run.method) == (3, 7, square_store, "dynamo")
    with pytest.raises(UserError, match="unknown key 'pretrain.window_sise'"):
        load_pretrain_recipe(recipe, ["pretrain.window_sise=3"])
    with pytest.raises(UserError, match="unknown key 'pretrain.window_size'"):
        load_pretrain_recipe(recipe, ["method=inverse_dynamics"])  # a dynamo-only key under another method
    with pytest.raises(UserError, match="'train.steps' expected int"):
        load_pretrain_recipe(recipe, ["train.steps=many"])


@pytest.mark.parametrize("recipe", sorted((REPO / "policies").glob("*_pretrain.toml")), ids=lambda p: p.stem)
def test_every_pretrain_recipe_parses(recipe):
    run = load_pretrain_recipe(recipe)
    assert run.dataset and recipe.stem == f"{run.task}_{run.method}_pretrain"
    assert run.train.batch_size <= 64 and run.train.steps <= 10_000  # CPU-sized defaults


def test_plugging_recipe_matches_the_pretrain_recipes():
    from robolearn.train.config import load_recipe

    policy = load_recipe(REPO / "policies" / "lift_diffusion_image_pretrained.toml").policy
    for method in ("dynamo", "inverse_dynamics"):
        run = load_pretrain_recipe(REPO / "policies" / f"lift_{method}_pretrain.toml")
        a, b = run.pretrain.encoder, policy.encoder
        assert (a.image_width, a.image_feature_dim, a.image_pooling, a.num_keypoints, a.crop_size) == (
            b.image_width, b.image_feature_dim, b.image_pooling, b.num_keypoints, b.crop_size)
        assert set(run.pretrain.obs_keys) <= set(policy.obs_keys)
    assert policy.encoder.pretrained.endswith("/encoder") and policy.encoder.freeze_pretrained


def _policy_run(store: str, encoder: dict, out):
    """A tiny BC image recipe on ``store``, shapes and stats filled from it."""
    from robolearn.train.config import load_recipe
    from robolearn.train.data import open_training_data

    recipe = {"dataset": store, "method": "bc", "out": str(out), "device": "cpu",
              "policy": {"obs_keys": ["agentview_image", "proprio"], "horizon": 4, "n_action_steps": 2,
                         "hidden": [32], "encoder": encoder}}
    run = load_recipe(None, [], base=recipe)
    _, stats = open_training_data(run)
    return run, stats


def window_dataset_for_policy(run):
    from robolearn.datasets.sampler import WindowDataset

    c = run.policy
    return WindowDataset(run.dataset, obs_keys=c.obs_keys, obs_horizon=c.obs_horizon, action_horizon=c.horizon)


def test_exported_encoder_plugs_into_a_policy_frozen_or_not(square_store, tiny_recipe, tiny_encoder, tmp_path):
    from robolearn.policies.base import make_policy

    res = pretrain(load_pretrain_recipe(None, [], base=tiny_recipe(square_store, "dynamo", tmp_path / "pt",
                                                                     pretrain={"window_size": 3}, train={"steps": 3})))
    enc_dir = Path(res.outputs["encoder"])
    info = json.loads((enc_dir / "encoder.json").read_text())
    assert info["image_shape"] == [32, 32, 3] and info["cameras"] == ["agentview_image"] and info["method"] == "dynamo"
    exported = load_file(str(enc_dir / "encoder.safetensors"))

    run, stats = _policy_run(square_store, {**tiny_encoder, "pretrained": str(enc_dir), "freeze_pretrained": True}, tmp_path / "p")
    policy = make_policy(run.policy, stats)
    cam = policy.encoder.image_encoders["agentview_image"]
    assert all(torch.equal(v, exported[k]) for k, v in cam.state_dict().items())
    policy.train()
    assert not cam.training and not any(p.requires_grad for p in cam.parameters())  # frozen: eval mode, center crop
    ds = window_dataset_for_policy(run)
    policy.compute_loss(batch_of(ds))["loss"].backward()
    assert all(p.grad is None for p in cam.parameters())
    assert any(p.grad is not None for p in policy.head.parameters())

    run.policy.encoder.freeze_pretrained = False  # fine-tune: same start, trainable, augmented
    policy = make_policy(run.policy, stats)
    cam = policy.encoder.image_encoders["agentview_image"]
    policy.train()
    assert cam.training and all(p.requires_grad for p in cam.parameters())
    assert all(torch.equal(v, exported[k]) for k, v in cam.state_dict().items())


def test_mismatched_pretrained_encoder_is_one_clear_error(square_store, make_square_store, tiny_encoder, tmp_path):
    from robolearn.policies.base import make_policy

    small = make_square_store(tmp_path / "small.zarr", n_episodes=2, length=6, image_size=24)
    run = load_pretrain_recipe(None, [], base={"dataset": small, "method": "dynamo", "pretrain": {"encoder": tiny_encoder}})
    pt, _ = build(run)
    enc_24 = pt.export_encoder(tmp_path / "enc24", source=small)

    run, stats = _policy_run(square_store, {**tiny_encoder, "pretrained": str(enc_24)}, tmp_path / "p")
    with pytest.raises(UserError, match=r"^policy\.encoder\.pretrained: .*24x24x3 images, policy camera 'agentview_image' is 32x32x3"):
        make_policy(run.policy, stats)
    run, stats = _policy_run(square_store, {**tiny_encoder, "image_width": 16, "pretrained": str(enc_24)}, tmp_path / "p")
    run.policy.obs_shapes["agentview_image"] = [24, 24, 3]  # shapes agree; the architecture does not
    with pytest.raises(UserError, match=r"^policy\.encoder\.pretrained: .*image_width 8 \(policy 16\)"):
        make_policy(run.policy, stats)
    (tmp_path / "empty").mkdir()
    run, stats = _policy_run(square_store, {**tiny_encoder, "pretrained": str(tmp_path / "empty")}, tmp_path / "p")
    with pytest.raises(UserError, match=r"^policy\.encoder\.pretrained: .* has no encoder.safetensors"):
        make_policy(run.policy, stats)


def test_resume_continues_to_the_same_step_and_weights(square_store, tiny_recipe, tmp_path):
    def recipe(out):
        return load_pretrain_recipe(None, [], base=tiny_recipe(square_store, "inverse_dynamics", out, train={"steps": 6, "checkpoint_every": 3}))

    straight = pretrain(recipe(tmp_path / "a"))
    first = pretrain(recipe(tmp_path / "b"), stop_at=3)
    assert first.step == 3 and first.outputs == {}  # interrupted: nothing exported yet
    assert not (tmp_path / "b" / "encoder").exists()
    from robolearn.train.pretrain_run import resume_pretrain_config

    resumed = pretrain(resume_pretrain_config(tmp_path / "b"), resume=tmp_path / "b")
    assert straight.step == resumed.step == 6
    assert resumed.losses == pytest.approx(straight.losses[3:], rel=1e-5)
    a = load_file(str(tmp_path / "a" / "checkpoints" / "last" / "model.safetensors"))
    b = load_file(str(tmp_path / "b" / "checkpoints" / "last" / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    for name in ("train_log.jsonl", "train_loss.png", "config.json", "encoder/encoder.safetensors", "encoder/encoder.json"):
        assert (tmp_path / "b" / name).is_file(), name
    assert load_pretrainer(tmp_path / "b").method == "inverse_dynamics"  # a run dir -> checkpoints/last

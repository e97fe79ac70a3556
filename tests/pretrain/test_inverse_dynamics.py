"""Inverse dynamics: the action MSE decreases on the tiny square store (and the exported EMA
checkpoint predicts the actions); the last step of an episode (no real o_{t+1}) does not count;
low-dim keys join at step t only."""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import default_collate

from robolearn.datasets.store import EpisodeStore
from robolearn.pretrain.base import load_pretrainer, pretrainer_class
from robolearn.train.pretrain_run import load_pretrain_recipe, open_pretrain_data, pretrain, window_dataset


def test_inverse_dynamics_loss_decreases_and_the_checkpoint_predicts_actions(square_store, tiny_recipe, tmp_path):
    # crop "center": on 32x32 frames a random crop shifts the square as far as one step moves it, which
    # slows this short run several-fold; the default ("frame", the paper's) is covered by test_common.
    # (Held-out episodes are not checked: this width-8 encoder with a 1x1 final feature map memorises
    # 6 episodes long before it generalises; the probe benchmark measures representations.)
    recipe = tiny_recipe(square_store, "inverse_dynamics", tmp_path / "run", pretrain={"crop": "center"}, train={"steps": 200})
    run = load_pretrain_recipe(None, [], base=recipe)
    res = pretrain(run)
    first, last = np.mean(res.losses[:10]), np.mean(res.losses[-10:])
    assert last < 0.3 * first, (first, last)

    pt = load_pretrainer(tmp_path / "run")  # the EMA weights, eval mode
    run.data.episodes = [0]
    ds = window_dataset(run, EpisodeStore.open(square_store), pt.window)
    batch = default_collate([ds[i] for i in range(len(ds) - 1)])  # every real (o_t, o_t+1) pair
    with torch.no_grad():
        target = pt.normalized_actions(batch)[:, 0]
        mse = (pt.predict(batch["obs"]) - target).square().mean().item()
    baseline = (target - target.mean(0)).square().mean().item()  # the best constant guess
    assert mse < 0.3 * baseline, (mse, baseline)


def test_inverse_dynamics_ignores_the_step_without_a_next_frame(square_store, tiny_encoder):
    run = load_pretrain_recipe(None, [], base={"dataset": square_store, "method": "inverse_dynamics",
                                               "pretrain": {"encoder": tiny_encoder}})
    store, stats = open_pretrain_data(run)
    assert run.pretrain.action_dim == 2
    pt = pretrainer_class("inverse_dynamics")(run.pretrain, stats).eval()
    ds = window_dataset(run, store, pt.window)
    ends = EpisodeStore.open(square_store).episode_ends
    batch = default_collate([ds[int(i)] for i in [ends[0] - 1, ends[1] - 1, 3, 10, 25]])
    assert batch["obs_is_pad"][:, 1].tolist() == [True, True, False, False, False]
    with torch.no_grad():
        before = pt.compute_loss(batch)["loss"]
        action = batch["action"].clone()
        action[:2] = -action[:2] + 0.7  # change the targets of the two padded windows only
        after = pt.compute_loss({**batch, "action": action})["loss"]
        action[2] = -action[2] + 0.7
        changed = pt.compute_loss({**batch, "action": action})["loss"]
    assert torch.allclose(before, after) and not torch.allclose(before, changed)


def test_inverse_dynamics_uses_low_dim_keys_at_step_t(square_store, tiny_encoder):
    run = load_pretrain_recipe(None, [], base={"dataset": square_store, "method": "inverse_dynamics",
                                               "pretrain": {"encoder": tiny_encoder, "obs_keys": ["agentview_image", "proprio"]}})
    store, stats = open_pretrain_data(run)
    pt = pretrainer_class("inverse_dynamics")(run.pretrain, stats).eval()
    assert "proprio" in pt.normalizer and pt.head[0].in_features == 2 * 16 + 2
    batch = default_collate([window_dataset(run, store, pt.window)[i] for i in range(4)])
    with torch.no_grad():
        a = pt.predict(batch["obs"])
        obs = dict(batch["obs"], proprio=batch["obs"]["proprio"].clone())
        obs["proprio"][:, 1] += 5.0  # o_{t+1}'s proprio is not an input
        assert torch.equal(a, pt.predict(obs))
        obs["proprio"][:, 0] += 5.0
        assert not torch.equal(a, pt.predict(obs))

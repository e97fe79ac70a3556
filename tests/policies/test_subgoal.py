"""Sub-goal conditioning on key states (InfoCon's labels): the sampler hands out the state at the next
key state, BC and diffusion heads learn to predict it from their observations and act on that
prediction, and a policy trained this way needs nothing but observations at run time."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from policy_helpers import tiny_policy

from robolearn.datasets.sampler import WindowDataset
from robolearn.datasets.store import EpisodeStore
from robolearn.errors import UserError
from robolearn.policies import load_policy, make_policy
from robolearn.policies.bc import BCConfig

CORNERS = np.array([[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]], np.float32)


def square_store(path, n_episodes: int = 24, seed: int = 0) -> str:
    """A point walks corner 0 -> 1 -> 2 -> 3 of a jittered unit square, 0.2 per step; the step that
    reaches a corner is flagged in key_state (what InfoCon writes). state (2,), action (2,)."""
    rng = np.random.default_rng(seed)
    store = EpisodeStore.create(str(path), attrs={"task": "toy", "env": {}})
    for _ in range(n_episodes):
        corners = CORNERS + rng.uniform(-0.1, 0.1, CORNERS.shape).astype(np.float32)
        pos, states, actions, keys = corners[0].copy(), [], [], []
        for goal in corners[1:]:
            while True:
                act = np.clip(goal - pos, -0.2, 0.2).astype(np.float32)
                states.append(pos.copy())
                actions.append(act)
                pos = pos + act
                keys.append(bool(np.allclose(pos, goal, atol=1e-6)))
                if keys[-1]:
                    break
        # the key state is the step at which the corner is reached: the state *after* that action
        states.append(pos.copy())
        actions.append(np.zeros(2, np.float32))
        keys.append(True)
        key_state = np.r_[False, np.array(keys[:-1])]  # flag the step whose state is a corner
        store.append_episode({"state": np.stack(states), "action": np.stack(actions), "key_state": key_state})
    store.compute_stats()
    return str(path)


def test_sampler_gives_each_step_the_state_at_its_next_key_state(tmp_path):
    store = EpisodeStore.create(str(tmp_path / "s.zarr"))
    store.append_episode({"state": np.arange(5, dtype=np.float32)[:, None], "action": np.zeros((5, 1), np.float32),
                          "key_state": np.array([0, 0, 1, 0, 0], bool)})
    store.append_episode({"state": 10 + np.arange(4, dtype=np.float32)[:, None], "action": np.zeros((4, 1), np.float32),
                          "key_state": np.zeros(4, bool)})  # no key state: the episode's end is its sub-goal
    ds = WindowDataset(store, ["state"], obs_horizon=2, action_horizon=2, subgoal_keys=["state"])
    got = [float(ds[i]["subgoal"]["state"][0]) for i in range(len(ds))]
    assert got == [2, 2, 2, 4, 4, 13, 13, 13, 13]  # never the next episode's
    assert "subgoal" not in WindowDataset(store, ["state"])[0]
    with pytest.raises(UserError, match="no data key 'phase'"):
        WindowDataset(store, ["state"], subgoal_keys=["state"], subgoal_label="phase")


def _train(policy, ds, steps: int, seed: int = 0) -> list[float]:
    torch.manual_seed(seed)
    loader = torch.utils.data.DataLoader(ds, batch_size=64, shuffle=True, drop_last=True)
    opt = torch.optim.Adam(policy.parameters(), lr=2e-3)
    policy.train()
    sub_losses, step = [], 0
    while step < steps:
        for batch in loader:
            out = policy.compute_loss(batch)
            opt.zero_grad()
            out["loss"].backward()
            opt.step()
            sub_losses.append(out["subgoal_loss"].item())
            step += 1
            if step == steps:
                break
    return sub_losses


def test_bc_learns_to_predict_the_next_key_state_and_acts_from_observations_alone(tmp_path):
    train_store = EpisodeStore.open(square_store(tmp_path / "train.zarr", seed=0))
    test_store = EpisodeStore.open(square_store(tmp_path / "test.zarr", n_episodes=6, seed=1))
    cfg = BCConfig(hidden=[64, 64], horizon=4, n_action_steps=2, obs_keys=["state"], subgoal_keys=["state"],
                   obs_shapes={"state": [2]}, action_dim=2, env={"task": "toy", "env": {}})
    policy = make_policy(cfg, train_store.stats)
    ds = WindowDataset(train_store, ["state"], obs_horizon=2, action_horizon=4, subgoal_keys=["state"])
    losses = _train(policy, ds, steps=600)
    assert np.mean(losses[-50:]) < 0.2 * np.mean(losses[:10])

    policy.eval()
    held = WindowDataset(test_store, ["state"], obs_horizon=2, action_horizon=4, subgoal_keys=["state"])
    batch = torch.utils.data.default_collate([held[i] for i in range(len(held))])
    true = batch["subgoal"]["state"].numpy()
    pred = policy.predict_subgoal(batch["obs"])["state"].numpy()  # in the store's units
    err = np.mean(np.sum((pred - true) ** 2, -1))
    spread = np.mean(np.sum((true - true.mean(0)) ** 2, -1))  # predicting the average corner
    assert err < 0.1 * spread, (err, spread)  # it knows which corner comes next, on unseen episodes

    policy.save(tmp_path / "ckpt")
    again = load_policy(tmp_path / "ckpt")
    obs = {"state": batch["obs"]["state"][:5]}  # observations only: no labels at run time
    assert torch.equal(again.predict_action_chunk(obs), policy.predict_action_chunk(obs))
    assert again.config.subgoal_keys == ["state"]


def test_diffusion_unet_trains_with_subgoals_and_other_heads_refuse_them(tmp_path):
    store = EpisodeStore.open(square_store(tmp_path / "s.zarr", n_episodes=4))
    ds = WindowDataset(store, ["state"], obs_horizon=2, action_horizon=8, subgoal_keys=["state"])
    batch = torch.utils.data.default_collate([ds[i] for i in range(8)])
    stats = {k: store.stats[k] for k in ("state", "action")}
    diff = tiny_policy("diffusion", subgoal_keys=["state"])
    diff = make_policy(_retarget(diff.config), stats)
    out = diff.compute_loss(batch)
    assert set(out) == {"loss", "action_loss", "subgoal_loss"} and torch.isfinite(out["loss"])
    assert out["loss"].item() == pytest.approx(out["action_loss"].item() + out["subgoal_loss"].item(), rel=1e-5)
    assert diff.predict_action_chunk({"state": batch["obs"]["state"]}).shape == (8, 8, 2)
    assert diff.predict_subgoal({"state": batch["obs"]["state"]})["state"].shape == (8, 2)
    with pytest.raises(UserError, match="denoiser = 'unet'"):
        tiny_policy("diffusion", denoiser="transformer", subgoal_keys=["state"])
    with pytest.raises(UserError, match="'act' head has no sub-goal"):
        tiny_policy("act", subgoal_keys=["state"])
    with pytest.raises(UserError, match="without policy.subgoal_keys"):
        tiny_policy("bc").predict_subgoal({"state": torch.zeros(1, 2, 5)})


def _retarget(cfg):
    """tiny_policy's config, on the square store's 2-D state and action."""
    cfg.obs_shapes, cfg.action_dim = {"state": [2]}, 2
    return cfg


def test_training_a_store_without_key_states_is_one_clear_error(tmp_path):
    from robolearn.train.config import RunConfig
    from robolearn.train.data import open_training_data

    path = tmp_path / "plain.zarr"
    store = EpisodeStore.create(str(path), attrs={"task": "toy"})
    store.append_episode({"state": np.zeros((6, 2), np.float32), "action": np.zeros((6, 2), np.float32)})
    store.compute_stats()
    run = RunConfig(dataset=str(path), method="bc", policy=BCConfig(obs_keys=["state"], subgoal_keys=["state"]))
    with pytest.raises(UserError, match="no sub-goal label 'key_state'.*infocon"):
        open_training_data(run)

"""OOD-IL: the contrastive encoder clusters demos by mode, the adversarial score ranks demos that need
actions the imitator cannot produce below the feasible ones, the scores land in the store's episode
metadata (atomically) and reach a policy's loss as per-episode weights; bad inputs are one line and
write nothing. A toy point-mass world stands in for the simulator (no robosuite)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import robolearn.pretrain.oodil as oodil
from robolearn.datasets.sampler import WindowDataset
from robolearn.datasets.store import EpisodeStore
from robolearn.errors import UserError
from robolearn.pretrain.infocon import adjusted_rand_index
from robolearn.train.pretrain_run import load_pretrain_recipe, pretrain

LENGTH, STEP = 30, 0.05  # steps per demo; the imitator's dynamics: pos += STEP * clip(a, -1, 1)


class PointEnv:
    """The imitator's world: a 2-D point, obs {"state": position}, never succeeds."""

    def reset(self, seed=None):
        self.pos = np.random.default_rng(seed).uniform(-0.3, 0.3, 2)
        return {"state": self.pos.astype(np.float32)}, {"success": False}

    def step(self, action):
        self.pos = self.pos + STEP * np.clip(np.asarray(action, np.float64), -1, 1)
        return {"state": self.pos.astype(np.float32)}, 0.0, False, False, {"success": False}


def make_mode_store(path, n_episodes: int = 24, seed: int = 0) -> str:
    """Demos from (0,0)+-0.3 towards +x by a detour: mode 0 via +y, mode 1 via -y. Every other pair of
    demos comes from a demonstrator whose robot moves twice as far per action (gain 2): the imitator
    would need actions of 2 to follow it, beyond its limit of 1."""
    rng = np.random.default_rng(seed)
    store = EpisodeStore.create(str(path), attrs={"task": "toy"})
    for e in range(n_episodes):
        mode, gain = e % 2, 2.0 if (e // 2) % 2 else 1.0
        pos, states, actions = rng.uniform(-0.3, 0.3, 2), [], []
        for t in range(LENGTH):
            up = 1.0 if t < LENGTH // 2 else -1.0
            a = np.array([0.6, 0.8 * up * (1 if mode == 0 else -1)]) + rng.normal(0, 0.05, 2)
            states.append(pos.copy()), actions.append(a)
            pos = pos + gain * STEP * a
        store.append_episode({"state": np.asarray(states, np.float32), "action": np.asarray(actions, np.float32)},
                             {"mode": mode, "feasible": gain == 1.0})
    return str(path)


SMALL = {"obs_keys": ["state"], "window_len": 16, "hidden": 32, "embed_dim": 16, "n_clusters": 2, "rounds": 2,
         "rollouts": 4, "imitator_steps": 200, "imitator_hidden": 64, "disc_steps": 200, "disc_hidden": 32}


def auroc(score: np.ndarray, positive: np.ndarray) -> float:
    pos, neg = score[positive], score[~positive]
    return float(((pos[:, None] > neg[None]) + 0.5 * (pos[:, None] == neg[None])).mean())


@pytest.fixture
def toy_sim(monkeypatch):
    monkeypatch.setattr(oodil, "imitator_env", lambda task: (PointEnv, LENGTH))


def run_recipe(tmp_path, store, tiny_recipe, to_toml, method="oodil", steps=150, **pretrain_cfg):
    recipe = tiny_recipe(store, method, tmp_path / f"run_{method}", pretrain={**SMALL, **pretrain_cfg},
                         train={"steps": steps, "batch_size": 32})
    recipe["pretrain"].pop("encoder")
    (tmp_path / f"{method}.toml").write_text(to_toml(recipe))
    return pretrain(load_pretrain_recipe(tmp_path / f"{method}.toml"))


def test_modes_are_clustered_and_infeasible_demos_ranked_below_feasible_ones(tmp_path, toy_sim, tiny_recipe, to_toml):
    store = make_mode_store(tmp_path / "toy.zarr")
    res = run_recipe(tmp_path, store, tiny_recipe, to_toml)
    assert res.outputs["labels"] == store
    s = EpisodeStore.open(store)
    score, cluster = s.meta_column("transferability"), s.meta_column("mode_cluster")
    assert score.dtype == np.float64 and cluster.dtype == np.int64
    assert np.all((score >= 0) & (score <= 1))
    assert adjusted_rand_index(cluster, s.meta_column("mode")) > 0.8  # floor: the modes are told apart
    assert auroc(score, s.meta_column("feasible").astype(bool)) > 0.9  # floor: infeasible demos rank lower
    summary = (tmp_path / "run_oodil" / "oodil_scores.json").read_text()
    assert '"env_steps"' in summary  # the interaction budget is reported

    # the feasibility baseline: the same score without modes, into its own field
    run_recipe(tmp_path, store, tiny_recipe, to_toml, method="feasibility", steps=5)
    s = EpisodeStore.open(store)
    assert auroc(s.meta_column("feasibility"), s.meta_column("feasible").astype(bool)) > 0.9
    assert np.array_equal(s.meta_column("mode_cluster"), cluster)  # untouched by the baseline

    # the scores are the per-episode weights of a policy's loss
    ds = WindowDataset(s, obs_keys=["state"], action_key="action", obs_horizon=1, action_horizon=4, weights="transferability")
    weights = np.array([ds[i]["weight"] for i in range(len(ds))])
    episodes = np.array([ds[i]["episode"] for i in range(len(ds))])
    assert np.allclose(weights, score[episodes])


def test_weighted_recipes_name_the_score_as_the_episode_weight(tmp_path):
    """policies/<task>_<head>_oodil.toml: data.weights = "transferability" -> each window's `weight`
    (the per-episode loss weight every head applies, tests/policies/test_contract.py)."""
    from pathlib import Path

    from robolearn.train.config import load_recipe
    from robolearn.train.data import open_training_data

    store = make_mode_store(tmp_path / "toy.zarr", n_episodes=4)
    EpisodeStore.open(store, mode="a").write_episode_meta({"transferability": np.array([1.0, 0.0, 0.5, 0.25])})
    root = Path(__file__).resolve().parents[2] / "policies"
    for name in ("lift_bc_oodil", "lift_diffusion_oodil", "stack_bc_oodil", "stack_diffusion_oodil"):
        run = load_recipe(root / f"{name}.toml", [f"dataset={store}", "policy.obs_horizon=1"])
        assert run.data.weights == "transferability"
        dataset, _ = open_training_data(run)
        item = dataset[40]
        assert item["weight"] == [1.0, 0.0, 0.5, 0.25][int(item["episode"])]


def test_write_episode_meta_adds_and_replaces_fields_whole(tmp_path):
    store = make_mode_store(tmp_path / "toy.zarr", n_episodes=4)
    s = EpisodeStore.open(store, mode="a")
    s.write_episode_meta({"transferability": np.array([0.1, 0.2, 0.3, 0.4]), "mode_cluster": np.array([0, 1, 0, 1])})
    s.write_episode_meta({"transferability": np.array([1.0, 0.0, 1.0, 0.0])})  # replaced whole
    r = EpisodeStore.open(store)
    assert r.meta_column("transferability").tolist() == [1.0, 0.0, 1.0, 0.0]
    assert r.meta_column("mode_cluster").tolist() == [0, 1, 0, 1]
    assert not (tmp_path / "toy.zarr" / ".meta_tmp").exists()
    with pytest.raises(UserError, match=r"needs shape \(4,\)"):
        s.write_episode_meta({"ok": np.zeros(4), "transferability": np.zeros(3)})  # checked before anything is written
    r = EpisodeStore.open(store)
    assert "ok" not in r.meta_fields and r.meta_column("transferability").tolist() == [1.0, 0.0, 1.0, 0.0]
    # appending an episode afterwards still works: the field gets its fill value
    s.append_episode({"state": np.zeros((3, 2), np.float32), "action": np.zeros((3, 2), np.float32)}, {"mode": 0})
    assert np.isnan(EpisodeStore.open(store).meta_column("transferability")[-1])


def test_bad_inputs_are_one_line_and_write_nothing(tmp_path, tiny_recipe, to_toml):
    def attempt(store, match, **cfg):
        out = tmp_path / "run_oodil"
        with pytest.raises(UserError, match=match):
            run_recipe(tmp_path, store, tiny_recipe, to_toml, steps=2, **cfg)
        assert not out.exists()
        assert "transferability" not in EpisodeStore.open(store).meta_fields

    one = make_mode_store(tmp_path / "one.zarr", n_episodes=1)
    EpisodeStore.open(one, mode="a").update_attrs(task="lift")
    attempt(one, "needs at least 2 episodes")
    nosim = make_mode_store(tmp_path / "nosim.zarr", n_episodes=4)  # task "toy": no simulator
    attempt(nosim, "the imitator needs a simulator")
    attempt(nosim, "no data key 'proprio'", obs_keys=["proprio"])

"""InfoCon: the objectives decrease, the store gets monotone concept labels and key states, and on a
store with three clearly separable phases the segments match them better than fixed-length cuts."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest

from robolearn.datasets.store import EpisodeStore
from robolearn.errors import UserError
from robolearn.pretrain.infocon import (
    InfoCon,
    InfoConConfig,
    adjusted_rand_index,
    fixed_length_segments,
    monotone_decode,
    segmentation_scores,
)
from robolearn.train.pretrain_run import load_pretrain_recipe, pretrain

DIRECTIONS = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]]) * 0.05  # +x, then +y, then -x


def make_phase_store(path, n_episodes: int = 12, seed: int = 0) -> str:
    """Low-dim demos with three phases told apart by their motion (not by the position alone):
    state = 2-D position (random start), action = the phase's direction + noise, random durations."""
    rng = np.random.default_rng(seed)
    store = EpisodeStore.create(str(path), attrs={"task": "phases"})
    for _ in range(n_episodes):
        pos, rows = rng.uniform(-1, 1, 2), {"state": [], "action": [], "phase": []}
        for phase, direction in enumerate(DIRECTIONS):
            for _ in range(rng.integers(8, 41)):
                action = direction + rng.normal(0, 0.01, 2)
                rows["state"].append(pos.copy()), rows["action"].append(action), rows["phase"].append(phase)
                pos = pos + action
        store.append_episode({"state": np.asarray(rows["state"], np.float32), "action": np.asarray(rows["action"], np.float32),
                              "phase": np.asarray(rows["phase"], np.int16)})
    return str(path)


SMALL = {"obs_keys": ["state"], "window_len": 8, "n_concepts": 3, "d_model": 32, "n_heads": 2, "n_layers": 1,
         "hidden": 64, "vq_warmup": 100}


def test_infocon_labels_the_store_with_monotone_concepts_that_match_the_phases(tmp_path, tiny_recipe, to_toml):
    store = make_phase_store(tmp_path / "phases.zarr")
    recipe = tiny_recipe(store, "infocon", tmp_path / "run", pretrain=SMALL, train={"steps": 400, "batch_size": 32})
    (tmp_path / "r.toml").write_text(to_toml(recipe))
    res = pretrain(load_pretrain_recipe(tmp_path / "r.toml"))

    assert np.mean(res.losses[-20:]) < 0.5 * np.mean(res.losses[:10])
    assert res.outputs["labels"] == store
    s = EpisodeStore.open(store)
    concept, key_state, phase = s.get("concept"), s.get("key_state"), s.get("phase")
    assert concept.dtype == np.int64 and key_state.dtype == np.bool_ and len(concept) == len(key_state) == s.n_steps
    for i in range(s.n_episodes):
        c, k = concept[s.episode_slice(i)], key_state[s.episode_slice(i)]
        assert np.all(np.diff(c) >= 0)  # monotone in time within a demo
        assert np.array_equal(k, np.r_[c[1:] != c[:-1], True])  # True exactly at the last step of each segment

    ours = segmentation_scores(concept, phase, s.episode_lengths)
    baseline = segmentation_scores(fixed_length_segments(s.episode_lengths, 3), phase, s.episode_lengths)
    assert ours["ari"] > 0.9 and ours["ari"] > baseline["ari"] + 0.2, (ours, baseline)
    assert ours["key_state_error_steps"] < baseline["key_state_error_steps"]
    summary = json.loads((tmp_path / "run" / "infocon_labels.json").read_text())
    assert summary["infocon"]["ari"] == pytest.approx(ours["ari"]) and summary["fixed_length"]["k"] == 3


def test_a_policy_trains_on_infocon_key_states_as_sub_goals(tmp_path, tiny_recipe, to_toml):
    """The labels InfoCon writes are what policy.subgoal_keys consumes: label a store, then train BC
    conditioned on the predicted next key state, through the same trainer as any policy."""
    from robolearn.policies import load_policy
    from robolearn.policies.bc import BCConfig
    from robolearn.train.config import RunConfig, TrainConfig
    from robolearn.train.run import train

    store = make_phase_store(tmp_path / "phases.zarr", n_episodes=8)
    recipe = tiny_recipe(store, "infocon", tmp_path / "infocon", pretrain=SMALL, train={"steps": 150, "batch_size": 32})
    (tmp_path / "r.toml").write_text(to_toml(recipe))
    pretrain(load_pretrain_recipe(tmp_path / "r.toml"))

    run = RunConfig(dataset=store, method="bc", out=str(tmp_path / "bc"), device="cpu",
                    policy=BCConfig(obs_keys=["state"], subgoal_keys=["state"], hidden=[32, 32], horizon=8, n_action_steps=4),
                    train=TrainConfig(steps=200, batch_size=32, lr=1e-3, warmup_steps=5, log_every=1, checkpoint_every=200,
                                      progress=False, tensorboard=False))
    train(run)
    log = [json.loads(line) for line in (tmp_path / "bc" / "train_log.jsonl").read_text().splitlines()]
    sub = [r["subgoal_loss"] for r in log]
    assert np.mean(sub[-20:]) < 0.5 * np.mean(sub[:10])
    policy = load_policy(tmp_path / "bc" / "checkpoints" / "last")
    s = EpisodeStore.open(store)
    obs = {"state": np.stack([s.get("state")[:2]])}  # the first two steps of episode 0: observations only
    assert policy.predict_action_chunk(obs).shape == (1, 8, 2)
    assert policy.predict_subgoal(obs)["state"].shape == (1, 2)


def test_infocon_refuses_cameras():
    with pytest.raises(UserError, match="low-dim"):
        InfoConConfig(obs_keys=["cam", "state"], image_keys=["cam"]).validate()


def test_monotone_decode_is_the_best_non_decreasing_path():
    rng = np.random.default_rng(0)
    for _ in range(20):
        scores = rng.normal(size=(6, 3))
        path = monotone_decode(scores)
        best = max((p for p in itertools.product(range(3), repeat=6) if all(np.diff(p) >= 0)),
                   key=lambda p: scores[np.arange(6), list(p)].sum())
        assert np.all(np.diff(path) >= 0)
        assert scores[np.arange(6), path].sum() == pytest.approx(scores[np.arange(6), list(best)].sum())


def test_segmentation_metrics():
    a = np.array([0, 0, 0, 1, 1, 2, 2, 2])
    assert adjusted_rand_index(a, a + 5) == pytest.approx(1.0)  # ids are arbitrary names
    assert adjusted_rand_index(a, np.zeros(8)) == pytest.approx(0.0)
    b = np.array([0, 0, 1, 1, 1, 1, 2, 2])
    # by hand: contingency [[2,1,0],[0,2,0],[0,1,2]] -> index 3, rows 3+1+3, cols 1+6+1, total 28
    expected = (3 - 7 * 8 / 28) / (0.5 * (7 + 8) - 7 * 8 / 28)
    assert adjusted_rand_index(a, b) == pytest.approx(expected)
    sklearn = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(1)
    for _ in range(5):
        x, y = rng.integers(0, 4, 50), rng.integers(0, 3, 50)
        assert adjusted_rand_index(x, y) == pytest.approx(sklearn.adjusted_rand_score(x, y))


def test_fixed_length_baseline_and_key_state_error():
    assert fixed_length_segments([6, 3], 3).tolist() == [0, 0, 1, 1, 2, 2, 0, 1, 2]
    truth = np.array([0, 0, 0, 0, 1, 1, 2, 2, 2, 0, 0, 1, 1])  # two episodes: 9 and 4 steps
    pred = np.array([0, 0, 0, 1, 1, 1, 1, 2, 2, 0, 0, 0, 1])
    scores = segmentation_scores(pred, truth, [9, 4])
    # true ends at steps 3, 5 (episode 0) and 1 (episode 1); predicted ends at 2, 6, 8 and 2, 3
    assert scores["key_state_error_steps"] == pytest.approx((1 + 1 + 1) / 3)
    assert scores["ari"] == pytest.approx(np.mean([adjusted_rand_index(pred[:9], truth[:9]),
                                                   adjusted_rand_index(pred[9:], truth[9:])]))


def test_compute_loss_on_sampler_windows(tmp_path):
    """A batch straight from the sampler; concepts_used is logged, every term finite."""
    import torch
    from torch.utils.data import default_collate

    from robolearn.datasets.sampler import WindowDataset
    from robolearn.nn.normalizer import select_stats

    s = EpisodeStore.open(make_phase_store(tmp_path / "p.zarr", n_episodes=2))
    cfg = InfoConConfig(**{**SMALL, "vq_warmup": 0}, action_dim=2, obs_shapes={"state": [2]})
    model = InfoCon(cfg, select_stats(s.stats, {"state": "meanstd", "action": "minmax"}))
    ds = WindowDataset(s, ["state"], obs_horizon=1, obs_future=7, action_horizon=8)
    out = model.compute_loss(default_collate([ds[i] for i in range(0, len(ds), 5)]))
    assert all(torch.isfinite(v) for v in out.values()) and 1 <= out["concepts_used"] <= 3

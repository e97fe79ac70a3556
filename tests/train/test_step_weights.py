"""Per-step labels become loss weights through `data.step_weight_key`: a step of weight 0 is removed
from the loss exactly (whatever its action says), per-episode weights keep working beside it."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from robolearn.datasets.store import EpisodeStore
from robolearn.errors import UserError
from robolearn.policies import make_policy
from robolearn.policies.bc import BCConfig
from robolearn.train.config import DataConfig, RunConfig
from robolearn.train.data import open_training_data

LENGTH = 12


def _store(path, garbage: float, keep_all: bool = False) -> str:
    """Two episodes whose steps 4..7 are 'extraneous' (keep = 0) with action `garbage` there."""
    rng = np.random.default_rng(0)
    store = EpisodeStore.create(str(path), attrs={"task": "toy"})
    for e in range(2):
        action = rng.uniform(-1, 1, size=(LENGTH, 2)).astype(np.float32)
        keep = np.ones(LENGTH, np.float32)
        keep[4:8] = 1.0 if keep_all else 0.0
        action[4:8] = garbage
        store.append_episode({"state": rng.normal(size=(LENGTH, 3)).astype(np.float32), "action": action, "keep": keep},
                             meta={"w": 1.0 + e})
    # the same normalisation for every variant, so only the actions at weight-0 steps differ
    store.update_attrs(stats={"state": {"min": [-3.0] * 3, "max": [3.0] * 3, "mean": [0.0] * 3, "std": [1.0] * 3, "count": 24},
                              "action": {"min": [-9.0] * 2, "max": [9.0] * 2, "mean": [0.0] * 2, "std": [1.0] * 2, "count": 24}})
    return str(path)


def _loss(path: str, step_weight_key: str, weights: str = "") -> torch.Tensor:
    run = RunConfig(dataset=path, method="bc", policy=BCConfig(obs_keys=["state"], horizon=4, n_action_steps=2, hidden=[16]),
                    data=DataConfig(step_weight_key=step_weight_key, weights=weights))
    dataset, stats = open_training_data(run)
    torch.manual_seed(0)
    policy = make_policy(run.policy, stats)
    items = [dataset[i] for i in range(len(dataset))]
    batch = torch.utils.data.default_collate(items)
    return policy.compute_loss(batch)["loss"]


def test_zero_step_weights_remove_steps_from_the_loss_exactly(tmp_path):
    clean = _store(tmp_path / "clean.zarr", garbage=0.5)
    noisy = _store(tmp_path / "noisy.zarr", garbage=8.0)
    with_keep = _loss(clean, "keep"), _loss(noisy, "keep")
    assert torch.equal(with_keep[0], with_keep[1])  # the garbage actions at weight-0 steps never count
    without = _loss(clean, ""), _loss(noisy, "")
    assert not torch.allclose(without[0], without[1])  # ... while without the weights they do
    # per-episode weights still apply beside step weights
    assert not torch.allclose(_loss(noisy, "keep", weights="w"), with_keep[1])
    assert torch.equal(_loss(noisy, "keep", weights="w"), _loss(clean, "keep", weights="w"))


def test_all_ones_step_weights_change_nothing(tmp_path):
    path = _store(tmp_path / "ones.zarr", garbage=0.5, keep_all=True)
    assert torch.equal(_loss(path, "keep"), _loss(path, ""))


def test_a_missing_or_malformed_step_weight_label_is_one_line(tmp_path):
    path = _store(tmp_path / "s.zarr", garbage=0.0)
    with pytest.raises(UserError, match="no per-step label 'kept' for data.step_weight_key"):
        _loss(path, "kept")
    store = EpisodeStore.open(path, mode="a")
    store.write_labels({"bad": -np.ones(2 * LENGTH, np.float32)})
    with pytest.raises(UserError, match="step-weight label 'bad' must be one finite weight >= 0 per step"):
        _loss(path, "bad")

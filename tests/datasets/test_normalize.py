"""Normalisers: ranges, constant channels, exact save/load round trip, numpy and torch alike."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from robolearn.datasets.normalize import Normalizer
from robolearn.datasets.store import EpisodeStore
from robolearn.errors import UserError


@pytest.fixture
def stats(tmp_path):
    rng = np.random.default_rng(0)
    store = EpisodeStore.create(tmp_path / "s.zarr")
    for T in (30, 50):
        action = rng.uniform(-3, 7, size=(T, 3)).astype(np.float32)
        action[:, 2] = 0.25  # a constant channel (e.g. a gripper never used)
        store.append_episode({"action": action, "state": rng.normal(5, 2, size=(T, 4)).astype(np.float64)})
    return store.stats, store.get("action"), store.get("state")


def test_minmax_maps_into_unit_range_and_back(stats):
    s, action, _ = stats
    norm = Normalizer.from_stats(s, {"action": "minmax"})
    z = norm.normalize("action", action)
    assert z[:, :2].min() == pytest.approx(-1) and z[:, :2].max() == pytest.approx(1)
    assert np.all(z[:, 2] == 0)  # constant channel: no division by zero
    assert np.allclose(norm.unnormalize("action", z), action, atol=1e-6)


@pytest.mark.parametrize("mode", ["minmax", "meanstd"])
def test_a_channel_that_only_jitters_is_centred_not_blown_up(mode, tmp_path):
    """A float32 channel that moves by 1e-7 in the demos (a quaternion component, say) must not be
    scaled by 1e7: a 0.01 deviation at deployment would reach the network as 1e5."""
    rng = np.random.default_rng(1)
    x = np.c_[rng.uniform(-1, 1, 200), 0.7 + 1e-7 * rng.normal(size=200)].astype(np.float32)
    store = EpisodeStore.create(tmp_path / "j.zarr")
    store.append_episode({"x": x})
    norm = Normalizer.from_stats(store.stats, {"x": mode})
    z = norm.normalize("x", x)
    assert np.abs(z[:, 1]).max() < 1e-5  # centred
    assert abs(norm.normalize("x", np.array([[0.0, 0.71]], np.float32))[0, 1]) < 0.02  # not amplified
    assert np.allclose(norm.unnormalize("x", z), x, atol=1e-6)
    assert np.abs(z[:, 0]).max() > 0.5  # the channel that varies is still scaled


def test_meanstd_whitens(stats):
    s, _, state = stats
    norm = Normalizer.from_stats(s, {"state": "meanstd"})
    z = norm.normalize("state", state)
    assert np.allclose(z.mean(0), 0, atol=1e-9) and np.allclose(z.std(0), 1, atol=1e-9)


def test_save_load_round_trip_is_exact(stats, tmp_path):
    s, action, state = stats
    norm = Normalizer.from_stats(s, {"action": "minmax", "state": "meanstd"})
    norm.save(tmp_path / "stats.json")
    again = Normalizer.load(tmp_path / "stats.json")
    for key, x in (("action", action), ("state", state)):
        assert np.array_equal(again.normalize(key, x), norm.normalize(key, x))
        assert np.array_equal(again.unnormalize(key, x), norm.unnormalize(key, x))


def test_torch_tensors_keep_dtype_and_match_numpy(stats):
    s, action, _ = stats
    norm = Normalizer.from_stats(s, {"action": "minmax"})
    t = norm.normalize("action", torch.from_numpy(action))
    assert t.dtype == torch.float32
    assert np.allclose(t.numpy(), norm.normalize("action", action), atol=1e-6)
    assert torch.equal(norm.normalize("unknown", t), t)  # keys without stats pass through


def test_bad_stats_are_refused(stats, tmp_path):
    s, _, _ = stats
    with pytest.raises(UserError, match="no statistics"):
        Normalizer.from_stats(s, {"missing": "minmax"})
    with pytest.raises(UserError, match="expected one of"):
        Normalizer.from_stats(s, {"action": "zscore"})
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(UserError, match="bad.json: not valid JSON"):
        Normalizer.load(tmp_path / "bad.json")

"""Window sampler: padding at both episode edges, masks, weights, DataLoader workers."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from robolearn.datasets.sampler import WindowDataset
from robolearn.datasets.store import EpisodeStore
from robolearn.errors import UserError

LENGTHS = (6, 3, 9)


@pytest.fixture
def store(tmp_path):
    """Episode e, step k: state = 100 e + k, action = -(100 e + k), image pixels = 10 e + k."""
    s = EpisodeStore.create(tmp_path / "s.zarr", image_codecs="blosc")  # exact pixel values
    for e, T in enumerate(LENGTHS):
        k = np.arange(T)
        s.append_episode(
            {
                "state": np.stack([100 * e + k, 100 * e + k], 1).astype(np.float32),
                "cam": np.broadcast_to((10 * e + k).astype(np.uint8)[:, None, None, None], (T, 4, 4, 3)).copy(),
                "action": -(100 * e + k)[:, None].astype(np.float32),
                "extraneous": (k % 2).astype(np.uint8),
            },
            {"quality": float(e + 1), "instruction": f"task {e}"},
        )
    return s


def window(ds: WindowDataset, episode: int, t: int) -> dict:
    return ds[sum(LENGTHS[:episode]) + t]


@pytest.mark.parametrize("in_ram", [False, True])
def test_windows_pad_by_repeating_edge_frames(store, in_ram):
    ds = WindowDataset(store, obs_keys=["state", "cam"], obs_horizon=3, action_horizon=4, in_ram=in_ram)
    assert len(ds) == sum(LENGTHS)

    first = window(ds, 1, 0)  # episode start: obs before t=0 repeat frame 0
    assert first["obs"]["state"][:, 0].tolist() == [100, 100, 100]
    assert first["obs"]["cam"][:, 0, 0, 0].tolist() == [10, 10, 10]
    assert first["action"][:, 0].tolist() == [-100, -101, -102, -102]  # episode 1 has 3 steps
    assert first["action_is_pad"].tolist() == [False, False, False, True]

    middle = window(ds, 2, 4)
    assert middle["obs"]["state"][:, 1].tolist() == [202, 203, 204]
    assert middle["action"][:, 0].tolist() == [-204, -205, -206, -207]
    assert not middle["action_is_pad"].any()

    last = window(ds, 2, 8)  # episode end: the last action repeats, flagged as padding
    assert last["action"][:, 0].tolist() == [-208] * 4
    assert last["action_is_pad"].tolist() == [False, True, True, True]
    assert last["obs"]["cam"][:, 0, 0, 0].tolist() == [26, 27, 28]
    assert last["episode"] == 2 and last["t"] == 8


def test_masks_weights_and_meta_pass_through(store):
    ds = WindowDataset(store, obs_keys=["state"], obs_horizon=1, action_horizon=3, mask_keys=["extraneous"],
                       weights="quality", meta_fields=["instruction"])
    w = window(ds, 2, 1)
    assert w["masks"]["extraneous"].tolist() == [1.0, 0.0, 1.0]
    assert w["weight"] == pytest.approx(3.0) and w["meta"]["instruction"] == "task 2"
    explicit = WindowDataset(store, obs_keys=["state"], weights=np.array([0.0, 0.5, 2.0]))
    assert window(explicit, 1, 0)["weight"] == pytest.approx(0.5)
    with pytest.raises(UserError, match="shape"):
        WindowDataset(store, obs_keys=["state"], weights=np.ones(2))
    with pytest.raises(UserError, match="no data key 'nope'"):
        WindowDataset(store, obs_keys=["nope"])


def test_episode_subset(store):
    ds = WindowDataset(store, obs_keys=["state"], episodes=[2, 0])
    assert len(ds) == LENGTHS[2] + LENGTHS[0]
    assert {int(ds[i]["episode"]) for i in range(len(ds))} == {0, 2}


def test_dataloader_with_workers_matches_single_process(store):
    ds = WindowDataset(store.path, obs_keys=["state", "cam"], obs_horizon=2, action_horizon=4,
                       mask_keys=["extraneous"], meta_fields=["instruction"])

    def collect(workers: int) -> list[dict]:
        loader = torch.utils.data.DataLoader(ds, batch_size=5, num_workers=workers, shuffle=False)
        return list(loader)

    single, multi = collect(0), collect(2)
    assert len(single) == len(multi) == int(np.ceil(sum(LENGTHS) / 5))
    for a, b in zip(single, multi):
        assert torch.equal(a["obs"]["cam"], b["obs"]["cam"]) and torch.equal(a["action"], b["action"])
        assert a["obs"]["cam"].dtype == torch.uint8 and a["obs"]["state"].shape[1:] == (2, 2)
        assert a["meta"]["instruction"] == b["meta"]["instruction"]


def test_batched_fetch_equals_single_windows(store):
    """DataLoader's batched path (__getitems__) returns exactly the windows of __getitem__."""
    ds = WindowDataset(store, obs_keys=["cam", "state"], obs_horizon=3, action_horizon=2)
    indices = [0, 5, 6, 7, 17, 3, 3]
    for batched, i in zip(ds.__getitems__(indices), indices):
        single = ds[i]
        assert np.array_equal(batched["obs"]["cam"], single["obs"]["cam"])
        assert np.array_equal(batched["obs"]["state"], single["obs"]["state"])
        assert np.array_equal(batched["action"], single["action"]) and batched["t"] == single["t"]


def test_obs_future_appends_future_steps_and_flags_padding(tmp_path):
    store = EpisodeStore.create(tmp_path / "s.zarr")
    store.append_episode({"state": np.arange(5, dtype=np.float32)[:, None], "action": np.zeros((5, 1), np.float32)})
    ds = WindowDataset(store, obs_keys=["state"], obs_horizon=2, action_horizon=1, obs_future=3)
    first, last = ds[0], ds[4]
    assert first["obs"]["state"][:, 0].tolist() == [0, 0, 1, 2, 3]
    assert first["obs_is_pad"].tolist() == [False] * 5
    assert last["obs"]["state"][:, 0].tolist() == [3, 4, 4, 4, 4]
    assert last["obs_is_pad"].tolist() == [False, False, True, True, True]
    assert "obs_is_pad" not in WindowDataset(store, obs_keys=["state"], obs_horizon=2, action_horizon=1)[0]


def test_no_action_key_gives_observation_windows_only(tmp_path):
    store = EpisodeStore.create(tmp_path / "s.zarr")
    store.append_episode({"state": np.arange(4, dtype=np.float32)[:, None]})  # a store without actions
    item = WindowDataset(store, obs_keys=["state"], action_key=None, obs_horizon=1, obs_future=2)[3]
    assert item["obs"]["state"][:, 0].tolist() == [3, 3, 3]
    assert "action" not in item and "action_is_pad" not in item
    with pytest.raises(UserError):
        WindowDataset(store, obs_keys=["state"])  # the default action key must exist

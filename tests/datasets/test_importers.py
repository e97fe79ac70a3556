"""Importers: diffusion_policy zarr (v2, via zarr and by hand, dir and zip) and robomimic HDF5 round trips."""

from __future__ import annotations

import zipfile

import numpy as np
import pytest

from robolearn.datasets.importers import detect_format, import_dataset, import_diffusion_policy, import_robomimic
from robolearn.datasets.store import EpisodeStore
from robolearn.datasets.validate import validate_store
from robolearn.errors import UserError


def _leftovers(directory):
    return sorted(p.name for p in directory.iterdir() if p.name.startswith(".robolearn-tmp-"))


def _assert_same_episodes(store: EpisodeStore, episodes: list[dict[str, np.ndarray]]) -> None:
    assert store.n_episodes == len(episodes)
    np.testing.assert_array_equal(store.episode_ends, np.cumsum([len(ep["action"]) for ep in episodes]))
    assert store.keys == sorted(episodes[0])
    for i, ep in enumerate(episodes):
        got = store.get_episode(i)
        for key, value in ep.items():
            assert got[key].dtype == value.dtype, key
            np.testing.assert_array_equal(got[key], value, err_msg=f"episode {i} {key}")


@pytest.mark.parametrize("writer", ["zarr_api", "by_hand"])
def test_diffusion_policy_round_trip(tmp_path, datagen, writer):
    episodes = datagen.episodes_data()
    src = tmp_path / "replay.zarr"
    (datagen.write_dp_zarr if writer == "zarr_api" else datagen.write_dp_by_hand)(src, episodes)
    assert (src / ".zgroup").is_file() and (src / "data" / "action" / ".zarray").is_file()  # the v2 on-disk format

    dst = tmp_path / "out.zarr"
    assert detect_format(src) == "diffusion_policy"
    import_diffusion_policy(src, dst, image_codecs="blosc")  # lossless: the frames come back exactly
    store = EpisodeStore.open(dst)
    _assert_same_episodes(store, episodes)
    assert store.attrs["source"] == {"format": "diffusion_policy", "path": str(src.resolve())}
    assert store.stats["action"]["min"] == pytest.approx(np.concatenate([e["action"] for e in episodes]).min(0))
    assert validate_store(dst) == []
    assert _leftovers(tmp_path) == []


def test_diffusion_policy_zip_and_meta_columns(tmp_path, datagen):
    """ReplayBuffers are often shipped zipped; extra per-episode meta arrays become metadata."""
    import zarr

    episodes = datagen.episodes_data(lengths=(2, 3))
    src = datagen.write_dp_zarr(tmp_path / "replay.zarr", episodes)
    seeds = zarr.open_group(str(src), mode="r+")["meta"].create_array("seed", shape=(2,), dtype=np.int64)
    seeds[:] = [11, 12]
    archive = tmp_path / "replay.zarr.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for f in sorted(src.rglob("*")):
            if f.is_file():
                zf.write(f, f.relative_to(src).as_posix())

    import_dataset(archive, tmp_path / "out.zarr", image_codecs="blosc")  # format guessed from the .zip
    store = EpisodeStore.open(tmp_path / "out.zarr")
    _assert_same_episodes(store, episodes)
    np.testing.assert_array_equal(store.meta_column("seed"), [11, 12])


def test_robomimic_round_trip(tmp_path, datagen):
    src = tmp_path / "lift.hdf5"
    demos = datagen.write_robomimic(src)
    dst = tmp_path / "out.zarr"
    import_robomimic(src, dst, image_codecs="blosc")
    store = EpisodeStore.open(dst)

    order = ["demo_0", "demo_1", "demo_2", "demo_10"]  # numeric, not lexicographic
    assert list(store.meta_column("demo")) == order
    assert store.keys == sorted(["action", "states", "reward", "done", "agentview_image", "robot0_eef_pos"])
    np.testing.assert_array_equal(store.episode_lengths, [len(demos[n]["actions"]) for n in order])
    renames = {"actions": "action", "states": "states", "rewards": "reward", "dones": "done",
               "obs/agentview_image": "agentview_image", "obs/robot0_eef_pos": "robot0_eef_pos"}
    for i, name in enumerate(order):
        got = store.get_episode(i)
        for old, new in renames.items():
            assert got[new].dtype == demos[name][old].dtype
            np.testing.assert_array_equal(got[new], demos[name][old], err_msg=f"{name} {old}")
        meta = store.episode_meta(i)
        assert meta["num_samples"] == len(demos[name]["actions"])
        assert meta["mask_valid"] == (name == "demo_1") and meta["mask_train"] == (name != "demo_1")
    assert store.attrs["env_args"]["env_name"] == "Lift"
    assert store.attrs["source"]["format"] == "robomimic"
    assert validate_store(dst) == []


@pytest.mark.parametrize(
    "damage, expected",
    [
        ("missing_actions", "data/demo_1/actions: missing; expected"),
        ("length_mismatch", "expected equal lengths"),
        ("nan", "data/demo_10: action"),
    ],
)
def test_robomimic_failure_leaves_nothing(tmp_path, datagen, damage, expected):
    """A bad demo late in the file fails the import after earlier demos were written: nothing remains."""
    import h5py

    src = tmp_path / "bad.hdf5"
    datagen.write_robomimic(src, drop_actions="demo_1" if damage == "missing_actions" else None)
    with h5py.File(src, "r+") as f:
        if damage == "length_mismatch":
            del f["data/demo_2/obs/robot0_eef_pos"]
            f["data/demo_2/obs/robot0_eef_pos"] = np.zeros((1, 3), np.float32)
        if damage == "nan":
            f["data/demo_10/actions"][2, 3] = np.nan
    dst = tmp_path / "out.zarr"
    with pytest.raises(UserError, match=expected) as info:
        import_robomimic(src, dst)
    assert str(src) in str(info.value)
    assert not dst.exists()
    assert _leftovers(tmp_path) == []


def test_import_refuses_existing_destination_and_bad_env_args(tmp_path, datagen):
    import h5py

    src = tmp_path / "lift.hdf5"
    datagen.write_robomimic(src)
    dst = tmp_path / "out.zarr"
    dst.mkdir()
    (dst / "keep.txt").write_text("mine")
    with pytest.raises(UserError, match="already exists"):
        import_robomimic(src, dst)
    assert (dst / "keep.txt").read_text() == "mine"

    import_robomimic(src, dst, overwrite=True)
    assert EpisodeStore.open(dst).n_episodes == 4

    with h5py.File(src, "r+") as f:
        f["data"].attrs["env_args"] = "{not json"
    with pytest.raises(UserError, match=r"env_args.*not valid JSON"):
        import_robomimic(src, tmp_path / "other.zarr")
    assert not (tmp_path / "other.zarr").exists()


def test_empty_or_foreign_sources(tmp_path, datagen):
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    with pytest.raises(UserError, match="cannot tell its format"):
        import_dataset(text, tmp_path / "a.zarr")
    with pytest.raises(UserError, match="not an HDF5 file"):
        import_robomimic(text, tmp_path / "a.zarr")
    with pytest.raises(UserError, match="not a zarr store"):
        import_diffusion_policy(text, tmp_path / "a.zarr")
    src = datagen.write_dp_zarr(tmp_path / "empty.zarr", datagen.episodes_data(lengths=(2,)))
    import zarr

    group = zarr.open_group(str(src), mode="r+")
    for arr in [group["meta/episode_ends"], *group["data"].array_values()]:
        arr.resize((0,) + arr.shape[1:])
    with pytest.raises(UserError, match="episode_ends: empty"):
        import_diffusion_policy(src, tmp_path / "a.zarr")
    assert not (tmp_path / "a.zarr").exists() and _leftovers(tmp_path) == []


def test_robolearn_store_as_zarr_source_keeps_meta_and_attrs(tmp_path, small_store):
    """Our own layout is a superset of diffusion_policy's: importing it keeps meta/episodes and attrs."""
    dst = tmp_path / "copy.zarr"
    import_diffusion_policy(small_store, dst, image_codecs="blosc")
    src, out = EpisodeStore.open(small_store), EpisodeStore.open(dst)
    assert out.attrs["task"] == "lift" and out.attrs["source"]["format"] == "diffusion_policy"
    assert [out.episode_meta(i) for i in range(3)] == [src.episode_meta(i) for i in range(3)]
    _assert_same_episodes(out, list(src.iter_episodes()))

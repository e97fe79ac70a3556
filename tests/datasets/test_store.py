"""The episode store: round trips, crash safety, concurrent readers, backends."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import zarr

from robolearn.datasets.store import AtomicStoreWriter, EpisodeStore, copy_episodes
from robolearn.errors import UserError

DTYPES = [np.bool_, np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32, np.uint64,
          np.float16, np.float32, np.float64]

# The writer used by the subprocess tests: episode e has length 5 + e % 7 and every value
# equals e, so a reader can tell a whole episode from part of one.
WRITER = textwrap.dedent(
    """
    import sys, time, numpy as np
    from robolearn.datasets.store import EpisodeStore
    path, n, delay = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    store = EpisodeStore.open(path, mode="a")
    for e in range(store.n_episodes, n):
        T = 5 + e % 7
        store.append_episode(
            {"action": np.full((T, 3), e, np.float32), "cam": np.full((T, 16, 16, 3), e % 256, np.uint8),
             "step": np.full(T, e, np.int64)},
            {"index": e},
        )
        print(e, flush=True)
        time.sleep(delay)
    """
)


def expected_length(e: int) -> int:
    return 5 + e % 7


def assert_whole_episodes(store: EpisodeStore) -> None:
    """Every visible episode is complete: right length, right values, in every key."""
    for e in range(store.n_episodes):
        ep = store.get_episode(e)
        assert len(ep["action"]) == expected_length(e), f"episode {e} has the wrong length"
        assert np.all(ep["action"] == e) and np.all(ep["step"] == e) and np.all(ep["cam"] == e % 256)
        assert store.episode_meta(e)["index"] == e


def make_episode(rng: np.random.Generator, T: int) -> dict[str, np.ndarray]:
    data = {f"x_{np.dtype(dt).name}": (rng.normal(size=(T, 3)) * 100).astype(dt) for dt in DTYPES}
    data["image"] = rng.integers(0, 256, size=(T, 12, 10, 3), dtype=np.uint8)
    data["matrix"] = rng.normal(size=(T, 2, 4)).astype(np.float32)
    data["scalar"] = rng.normal(size=T).astype(np.float64)
    return data


def test_append_reopen_round_trip_all_dtypes(tmp_path):
    rng = np.random.default_rng(0)
    episodes = [make_episode(rng, T) for T in (4, 9, 1)]
    metas = [{"task": "lift", "seed": 7, "success": True, "score": 0.5},
             {"task": "can", "seed": 8, "success": False, "score": 1.5, "instruction": "pick the can"},
             {"task": "", "seed": -3, "success": True, "score": -2.0}]
    with EpisodeStore.create(tmp_path / "s.zarr", attrs={"task": "lift", "env": {"image_size": 84}}, image_codecs="blosc") as store:
        for ep, meta in zip(episodes, metas):
            store.append_episode(ep, meta)

    store = EpisodeStore.open(tmp_path / "s.zarr")
    assert store.n_episodes == 3 and store.n_steps == 14
    assert list(store.episode_ends) == [4, 13, 14]
    assert store.attrs["env"] == {"image_size": 84} and store.attrs["format"] == "robolearn.episodes"
    for i, ep in enumerate(episodes):
        got = store.get_episode(i)
        assert set(got) == set(ep)
        for key, value in ep.items():
            assert got[key].dtype == value.dtype and np.array_equal(got[key], value), key
    assert store.episode_meta(1) == metas[1]
    assert store.episode_meta(0)["instruction"] == ""  # a field that appeared later is back-filled
    assert store.array("image").chunks == (1, 12, 10, 3)  # one frame per chunk
    assert store.array("x_float32").chunks[0] > 1  # low-dim data chunked along time


def test_stats_track_appends_and_match_recompute(tmp_path):
    rng = np.random.default_rng(1)
    store = EpisodeStore.create(tmp_path / "s.zarr")
    actions = [rng.normal(size=(T, 4)).astype(np.float32) for T in (10, 20, 5)]
    for a in actions:
        store.append_episode({"action": a})
    all_a = np.concatenate(actions).astype(np.float64)
    running = store.stats["action"]
    assert np.allclose(running["mean"], all_a.mean(0)) and np.allclose(running["std"], all_a.std(0))
    assert running["min"] == all_a.min(0).tolist() and running["max"] == all_a.max(0).tolist()
    recomputed = store.compute_stats()["action"]
    assert np.allclose(recomputed["mean"], running["mean"]) and np.allclose(recomputed["std"], running["std"])


def test_bad_episodes_are_refused_and_leave_the_store_unchanged(tmp_path):
    store = EpisodeStore.create(tmp_path / "s.zarr")
    store.append_episode({"action": np.zeros((3, 2), np.float32), "obs": np.zeros((3, 5), np.float32)})
    with pytest.raises(UserError, match="different lengths"):
        store.append_episode({"action": np.zeros((3, 2), np.float32), "obs": np.zeros((4, 5), np.float32)})
    with pytest.raises(UserError, match="missing"):
        store.append_episode({"action": np.zeros((3, 2), np.float32)})
    with pytest.raises(UserError, match="data/obs expects"):
        store.append_episode({"action": np.zeros((3, 2), np.float32), "obs": np.zeros((3, 6), np.float32)})
    with pytest.raises(UserError, match="already exists"):
        EpisodeStore.create(tmp_path / "s.zarr")
    with pytest.raises(UserError, match="no such store"):
        EpisodeStore.open(tmp_path / "missing.zarr")
    (tmp_path / "plain").mkdir()
    with pytest.raises(UserError, match="not an episode store"):
        EpisodeStore.open(tmp_path / "plain")
    assert EpisodeStore.open(tmp_path / "s.zarr").n_episodes == 1


def test_open_trims_an_interrupted_append(tmp_path):
    """Simulate a writer that died after writing data but before the commit."""
    path = tmp_path / "s.zarr"
    store = EpisodeStore.create(path)
    for e in range(2):
        store.append_episode({"action": np.full((5, 3), e, np.float32)}, {"index": e})
    raw = zarr.open_group(str(path), mode="r+")
    raw["data/action"].resize((13, 3))
    raw["data/action"][10:13] = 99
    raw["meta/episodes/index"].resize((3,))
    raw["meta/episode_ends"].resize((3,))  # resized, value never written: reads as 0

    reader = EpisodeStore.open(path)  # read-only: hides the tail, changes nothing
    assert reader.n_episodes == 2 and raw["data/action"].shape[0] == 13
    writer = EpisodeStore.open(path, mode="a")  # append: trims it
    assert writer.n_episodes == 2 and writer.array("action").shape[0] == 10
    writer.append_episode({"action": np.full((4, 3), 2, np.float32)}, {"index": 2})
    again = EpisodeStore.open(path)
    assert list(again.episode_ends) == [5, 10, 14] and np.all(again.get_episode(2)["action"] == 2)
    assert list(again.meta_column("index")) == [0, 1, 2]


@pytest.mark.parametrize("kill_after_s", [0.4, 0.9, 1.7])
def test_writer_killed_mid_append_keeps_every_committed_episode(tmp_path, kill_after_s):
    path = tmp_path / "s.zarr"
    EpisodeStore.create(path, frames_per_shard=4, image_codecs="blosc")  # many shard boundaries: appends rewrite and start shards
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path), "100000", "0"], stdout=subprocess.PIPE, text=True)
    first = proc.stdout.readline()  # at least one episode committed before the kill
    assert first.strip() == "0"
    time.sleep(kill_after_s)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()

    store = EpisodeStore.open(path, mode="a")
    assert store.n_episodes >= 1
    assert_whole_episodes(store)
    for key in store.keys:  # nothing beyond the commit point survives the trim
        assert store.array(key).shape[0] == store.n_steps
    assert store.stats["action"]["count"] == store.n_steps
    n = store.n_episodes
    store.close()
    # the store stays appendable: a new writer continues where the killed one stopped
    subprocess.run([sys.executable, "-c", WRITER, str(path), str(n + 2), "0"], check=True, capture_output=True)
    store = EpisodeStore.open(path)
    assert store.n_episodes == n + 2
    assert_whole_episodes(store)


def test_concurrent_reader_never_sees_a_partial_episode(tmp_path, watch_while_writing):
    path = tmp_path / "s.zarr"
    EpisodeStore.create(path, frames_per_shard=4, image_codecs="blosc")  # many shard boundaries: appends rewrite and start shards
    seen = set()

    def check(reader: EpisodeStore) -> None:
        assert_whole_episodes(reader)
        if reader.n_episodes:  # the fast frame path too, through the tail shard the writer keeps replacing
            last = reader.episode_slice(-1)
            assert np.all(reader.read_frames("cam", np.arange(last.start, last.stop)) == (reader.n_episodes - 1) % 256)
        seen.add(reader.n_episodes)

    reader, _ = watch_while_writing(path, [WRITER, str(path), "60", "0.005"], check, stdout=subprocess.DEVNULL)
    reader.refresh()
    assert_whole_episodes(reader)
    assert len(seen) > 3  # the reader really watched the store grow


def test_fsspec_memory_url_round_trip():
    url = f"memory://robolearn-test-{os.getpid()}-{time.time_ns()}/s.zarr"
    store = EpisodeStore.create(url, attrs={"task": "lift"}, image_codecs="blosc")
    store.append_episode({"action": np.arange(6, dtype=np.float32).reshape(3, 2), "cam": np.ones((3, 4, 4, 3), np.uint8)},
                         {"instruction": "lift the cube"})
    again = EpisodeStore.open(url)
    assert again.n_episodes == 1 and again.attrs["task"] == "lift"
    assert np.array_equal(again.get_episode(0)["action"], np.arange(6, dtype=np.float32).reshape(3, 2))
    assert again.episode_meta(0) == {"instruction": "lift the cube"}


def test_zip_store_export_and_read(tmp_path):
    rng = np.random.default_rng(2)
    store = EpisodeStore.create(tmp_path / "s.zarr", attrs={"task": "lift"}, image_codecs="blosc")
    eps = [make_episode(rng, T) for T in (3, 6)]
    for ep in eps:
        store.append_episode(ep, {"seed": 1})
    store.export_zip(tmp_path / "s.zarr.zip")
    z = EpisodeStore.open(tmp_path / "s.zarr.zip")
    assert z.n_episodes == 2 and z.attrs["task"] == "lift"
    for i, ep in enumerate(eps):
        got = z.get_episode(i)
        assert all(np.array_equal(got[k], v) for k, v in ep.items())
    with pytest.raises(UserError, match="read-only"):
        EpisodeStore.open(tmp_path / "s.zarr.zip", mode="a")
    assert [p.name for p in tmp_path.iterdir()] != [] and not any(p.name.startswith(".robolearn-tmp") for p in tmp_path.iterdir())


def test_atomic_writer_leaves_nothing_on_failure_and_moves_into_place_on_success(tmp_path):
    dst = tmp_path / "out.zarr"
    with pytest.raises(RuntimeError):
        with AtomicStoreWriter(dst) as store:
            store.append_episode({"action": np.zeros((2, 2), np.float32)})
            raise RuntimeError("importer failed half way")
    assert list(tmp_path.iterdir()) == []
    with AtomicStoreWriter(dst, attrs={"task": "lift"}) as store:
        store.append_episode({"action": np.zeros((2, 2), np.float32)})
    assert EpisodeStore.open(dst).n_episodes == 1 and [p.name for p in tmp_path.iterdir()] == ["out.zarr"]
    copy = copy_episodes(EpisodeStore.open(dst), tmp_path / "copy.zarr")
    assert copy.n_episodes == 1 and copy.attrs["task"] == "lift"

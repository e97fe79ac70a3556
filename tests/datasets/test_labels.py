"""EpisodeStore.write_labels: per-step label arrays written into data/, atomically per key."""

from __future__ import annotations

import textwrap
import time

import numpy as np
import pytest

from robolearn.datasets.store import EpisodeStore
from robolearn.errors import UserError


def make_store(path, lengths=(5, 7, 4)) -> EpisodeStore:
    store = EpisodeStore.create(path)
    for t in lengths:
        store.append_episode({"action": np.ones((t, 2), np.float32), "state": np.zeros((t, 3), np.float32)})
    return store


def test_labels_round_trip_overwrite_and_reopen(tmp_path):
    store = make_store(tmp_path / "s.zarr")
    concept = np.array([0, 0, 1, 1, 2, 0, 0, 0, 1, 1, 1, 2, 0, 1, 1, 2], np.int64)
    key_state = np.r_[np.diff(concept) != 0, True] | np.isin(np.arange(16), store.episode_ends - 1)
    store.write_labels({"concept": concept, "key_state": key_state})
    assert {"concept", "key_state"} <= set(store.keys)
    assert np.array_equal(store.get("concept"), concept) and store.get("concept").dtype == np.int64
    assert np.array_equal(store.get("key_state"), key_state) and store.get("key_state").dtype == np.bool_

    store.write_labels({"concept": concept + 1})  # same shape/dtype: rewritten in place
    store.write_labels({"key_state": key_state.astype(np.int8)})  # new dtype: replaced whole
    again = EpisodeStore.open(tmp_path / "s.zarr")
    assert np.array_equal(again.get("concept"), concept + 1)
    assert again.get("key_state").dtype == np.int8
    assert np.array_equal(again.get_episode(1)["concept"], concept[5:12] + 1)
    assert not (tmp_path / "s.zarr" / ".labels_tmp").exists()
    # label keys get statistics, so opening for append does not recompute them all
    assert again.stats["concept"]["count"] == 16
    assert EpisodeStore.open(tmp_path / "s.zarr", mode="a").get("action").shape == (16, 2)


def test_bad_labels_and_read_only_stores_are_refused(tmp_path):
    store = make_store(tmp_path / "s.zarr")
    with pytest.raises(UserError, match="16 rows"):
        store.write_labels({"concept": np.zeros(15, np.int64)})
    with pytest.raises(UserError, match="plain name"):
        store.write_labels({"a/b": np.zeros(16, np.int64)})
    with pytest.raises(UserError, match="read-only"):
        EpisodeStore.open(tmp_path / "s.zarr").write_labels({"concept": np.zeros(16, np.int64)})
    store.export_zip(tmp_path / "s.zip")
    with pytest.raises(UserError):
        EpisodeStore.open(tmp_path / "s.zip").write_labels({"concept": np.zeros(16, np.int64)})
    with pytest.raises(UserError):
        EpisodeStore.open(tmp_path / "s.zip", mode="a")
    assert "concept" not in EpisodeStore.open(tmp_path / "s.zarr").keys


def test_fsspec_memory_store_labels():
    url = f"memory://robolearn-labels-{time.time_ns()}/s.zarr"
    store = make_store(url)
    store.write_labels({"concept": np.arange(16)})
    store.write_labels({"concept": np.arange(16, dtype=np.int32)})
    assert np.array_equal(EpisodeStore.open(url).get("concept"), np.arange(16))


WRITER = textwrap.dedent(
    """
    import sys, numpy as np
    from robolearn.datasets.store import EpisodeStore
    store = EpisodeStore.open(sys.argv[1], mode="a")
    for v in range(1, int(sys.argv[2]) + 1):   # every write: one constant value over all steps
        store.write_labels({"concept": np.full(store.n_steps, v, np.int64)})
    """
)


def test_concurrent_reader_never_sees_a_half_written_label(tmp_path, watch_while_writing):
    path = tmp_path / "s.zarr"
    store = EpisodeStore.create(path)
    store.append_episode({"action": np.zeros((200_000, 1), np.float32)})  # a label of 1.6 MB
    seen = set()

    def check(reader: EpisodeStore) -> None:
        if "concept" in reader.keys:
            values = np.unique(reader.get("concept"))
            assert len(values) == 1 and values[0] >= 1, values  # one whole write, never a mix or a gap
            seen.add(int(values[0]))

    reader, returncode = watch_while_writing(path, [WRITER, str(path), "80"], check)
    assert returncode == 0
    reader.refresh()
    assert np.all(reader.get("concept") == 80)
    assert len(seen) > 2  # the reader really watched the label change

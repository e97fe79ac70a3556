"""Store format 2: checksummed chunks, every chunk written, sharded camera arrays, fast frame reads."""

from __future__ import annotations

import json

import numpy as np
import pytest
import zarr

from robolearn.datasets.store import FORMAT_VERSION, EpisodeStore


def codec_names(meta: dict) -> list[str]:
    """Every codec name in an array's zarr.json, inner (shard) chains included."""
    names = []
    for c in meta["codecs"]:
        names.append(c["name"])
        if c["name"] == "sharding_indexed":
            names += [f"inner:{x['name']}" for x in c["configuration"]["codecs"]]
            names += [f"index:{x['name']}" for x in c["configuration"]["index_codecs"]]
    return names


def test_every_array_is_checksummed_and_cameras_are_sharded(tmp_path):
    path = tmp_path / "s.zarr"
    store = EpisodeStore.create(path, frames_per_shard=4, image_codecs="blosc")
    for e in range(2):
        store.append_episode({"cam": np.zeros((6, 8, 8, 3), np.uint8), "action": np.zeros((6, 2), np.float32)},
                             {"instruction": f"task {e}", "seed": e})
    store.write_labels({"flag": np.zeros(12, np.uint8)})
    assert store.attrs["format_version"] == FORMAT_VERSION == 2
    assert store.attrs["image_codecs"] == {"cam": "blosc"} and store.attrs["frames_per_shard"] == 4
    metas = {p.parent.relative_to(path).as_posix(): json.loads(p.read_text()) for p in path.rglob("zarr.json")}
    arrays = {k: m for k, m in metas.items() if m["node_type"] == "array"}
    assert set(arrays) == {"data/cam", "data/action", "data/flag", "meta/episode_ends", "meta/episodes/instruction",
                           "meta/episodes/seed"}
    for name, meta in arrays.items():
        codecs = codec_names(meta)
        if name == "data/cam":
            inner = [c for c in codecs if c.startswith("inner:")]
            assert codecs[0] == "sharding_indexed" and inner[-1] == "inner:crc32c" and codecs[-1] == "index:crc32c", codecs
            assert meta["chunk_grid"]["configuration"]["chunk_shape"] == [4, 8, 8, 3]
        else:
            assert codecs[-1] == "crc32c", (name, codecs)
    # all-zero data is still written: 12 frames / 4 per shard = 3 shard files; a missing file is damage, not zeros
    assert sorted(p.name for p in (path / "data/cam/c").iterdir()) == ["0", "1", "2"]
    assert (path / "data/action/c/0/0").is_file()
    again = EpisodeStore.open(path)
    assert again.array("cam").chunks == (1, 8, 8, 3) and again.array("cam").shards == (4, 8, 8, 3)
    assert again.episode_meta(1) == {"instruction": "task 1", "seed": 1}


def frames_store(path, lengths=(7, 5, 9), frames_per_shard=4) -> EpisodeStore:
    """Episode e, step k: every pixel of camera frame = 20 e + k (+1 in channel 1)."""
    store = EpisodeStore.create(path, frames_per_shard=frames_per_shard, image_codecs="blosc")  # exact pixels
    for e, T in enumerate(lengths):
        v = (20 * e + np.arange(T)).astype(np.uint8)[:, None, None, None]
        cam = np.broadcast_to(v, (T, 6, 5, 3)).copy()
        cam[..., 1] += 1
        store.append_episode({"cam": cam, "action": np.full((T, 2), e, np.float32)})
    return store


def test_read_frames_matches_zarr_in_any_order_with_repeats(tmp_path):
    store = frames_store(tmp_path / "s.zarr")
    rows = np.array([20, 0, 3, 4, 4, 12, 7, 20, 11, 15])  # across shards, repeats, out of order
    got = store.read_frames("cam", rows)
    assert got.shape == (10, 6, 5, 3) and got.dtype == np.uint8
    assert np.array_equal(got, store.array("cam").oindex[rows])
    assert store.read_frames("cam", []).shape == (0, 6, 5, 3)
    reader = store._frame_readers["cam"]  # bounded: at most max_open shard files held open
    reader.max_open = 2
    assert np.array_equal(store.read_frames("cam", np.arange(21)), store.get("cam")) and len(reader._cache) <= 2
    with pytest.raises(IndexError):
        store.read_frames("cam", [21])  # beyond the committed steps


def test_read_frames_sees_appends_through_the_rewritten_tail_shard(tmp_path):
    path = tmp_path / "s.zarr"
    reader = frames_store(path, lengths=(6,))
    assert reader.read_frames("cam", [4, 5])[:, 0, 0, 0].tolist() == [4, 5]  # caches the tail shard (rows 4..7)
    writer = EpisodeStore.open(path, mode="a")
    writer.append_episode({"cam": np.full((3, 6, 5, 3), 77, np.uint8), "action": np.zeros((3, 2), np.float32)})
    reader.refresh()
    assert reader.read_frames("cam", [5, 6, 7, 8])[:, 0, 0, 0].tolist() == [5, 77, 77, 77]
    assert writer.read_frames("cam", [8])[0, 0, 0, 0] == 77  # the writer caches shard 2 as its tail ...
    writer.append_episode({"cam": np.full((4, 6, 5, 3), 88, np.uint8), "action": np.zeros((4, 2), np.float32)})
    assert writer.read_frames("cam", [8, 9, 12])[:, 0, 0, 0].tolist() == [77, 88, 88]  # ... which its append filled


def test_damaged_frame_raises_store_damaged_naming_array_chunk_and_episode(tmp_path):
    from robolearn.datasets.store import StoreDamaged

    path = tmp_path / "s.zarr"
    frames_store(path)  # shards of 4 frames: episode 1 = rows 7..11, in shards 1 and 2
    shard = path / "data/cam/c/2/0/0/0"
    raw = bytearray(shard.read_bytes())
    raw[10] ^= 0xFF  # inside the first frame of shard 2 (row 8)
    shard.write_bytes(bytes(raw))
    store = EpisodeStore.open(path)
    assert store.read_frames("cam", [0, 7]).shape == (2, 6, 5, 3)  # other shards still read
    with pytest.raises(StoreDamaged, match=r"data/cam chunk c/2/0/0/0 \(frame 8, episode 1\): .*crc32c"):
        store.read_frames("cam", [7, 8])
    with pytest.raises(StoreDamaged, match=r"data/cam steps 7-11 \(episodes 1\): a chunk fails its crc32c"):
        store.get_episode(1)  # the zarr path too
    shard.unlink()
    with pytest.raises(StoreDamaged, match=r"data/cam chunk c/2/0/0/0 .*missing"):
        EpisodeStore.open(path).read_frames("cam", [9])
    (path / "data/action/c/0/0").unlink()  # a deleted low-dim chunk is damage, not zeros
    with pytest.raises(StoreDamaged, match=r"data/action chunk c/0/0 .*missing"):
        EpisodeStore.open(path).get("action")


def test_damage_found_in_a_dataloader_worker_is_one_line(tmp_path):
    import torch

    from robolearn.datasets.sampler import WindowDataset
    from robolearn.datasets.store import StoreDamaged

    path = tmp_path / "s.zarr"
    frames_store(path)
    shard = path / "data/cam/c/0/0/0/0"
    shard.write_bytes(shard.read_bytes()[:-30] + bytes(30))  # the shard index is gone
    ds = WindowDataset(str(path), obs_keys=["cam"], obs_horizon=1, action_horizon=1)
    with pytest.raises(StoreDamaged) as info:
        list(torch.utils.data.DataLoader(ds, batch_size=4, num_workers=1))
    assert "\n" not in str(info.value) and "data/cam chunk c/0/0/0/0" in str(info.value), str(info.value)
    assert "shard index fails its crc32c checksum" in str(info.value)


def test_sampler_reads_frames_through_the_fast_path(tmp_path):
    from robolearn.datasets.sampler import WindowDataset

    store = frames_store(tmp_path / "s.zarr")
    calls = []
    original = EpisodeStore.read_frames

    def spy(self, key, rows):
        calls.append(key)
        return original(self, key, rows)

    EpisodeStore.read_frames = spy
    try:
        ds = WindowDataset(store, obs_keys=["cam"], obs_horizon=2, action_horizon=3)
        batch = ds.__getitems__([0, 8, 20])
    finally:
        EpisodeStore.read_frames = original
    assert calls == ["cam"]  # one read for the whole batch
    assert [w["obs"]["cam"][:, 0, 0, 0].tolist() for w in batch] == [[0, 0], [20, 21], [47, 48]]


def write_format1_store(path, episodes: list[dict], metas: list[dict]) -> None:
    """A store as robolearn wrote it before format 2: one frame per chunk, Blosc, no checksums, no sharding."""
    from zarr.codecs import BloscCodec

    g = zarr.open_group(str(path), mode="w")
    for name in ("data", "meta", "meta/episodes"):
        g.create_group(name)
    for key in episodes[0]:
        value = np.concatenate([ep[key] for ep in episodes])
        image = value.dtype == np.uint8 and value.ndim == 4
        arr = g.create_array(f"data/{key}", shape=value.shape, chunks=((1 if image else 4096),) + value.shape[1:],
                             dtype=value.dtype, fill_value=0,
                             compressors=BloscCodec(cname="zstd", clevel=3 if image else 5, shuffle="bitshuffle" if image else "shuffle"))
        arr[:] = value
    ends = np.cumsum([len(next(iter(ep.values()))) for ep in episodes])
    g.create_array("meta/episode_ends", shape=ends.shape, chunks=(4096,), dtype=np.int64, fill_value=0)[:] = ends
    for field in metas[0]:
        col = np.array([m[field] for m in metas], dtype=object if isinstance(metas[0][field], str) else None)
        arr = g.create_array(f"meta/episodes/{field}", shape=col.shape, chunks=(4096,),
                             dtype=str if col.dtype == object else col.dtype, fill_value="" if col.dtype == object else 0)
        arr[:] = col
    g.attrs.update({"format": "robolearn.episodes", "format_version": 1, "stats": {}, "task": "lift"})


def old_episodes(lengths=(5, 3, 6)) -> tuple[list[dict], list[dict]]:
    rng = np.random.default_rng(3)
    eps = [{"cam": rng.integers(0, 256, (T, 6, 5, 3), dtype=np.uint8), "action": rng.normal(size=(T, 2)).astype(np.float32)}
           for T in lengths]
    return eps, [{"instruction": f"lift {i}", "seed": i} for i in range(len(lengths))]


def test_format1_store_opens_reads_and_appends_in_its_own_layout(tmp_path):
    from robolearn.datasets.sampler import WindowDataset

    path = tmp_path / "old.zarr"
    eps, metas = old_episodes()
    write_format1_store(path, eps, metas)
    store = EpisodeStore.open(path, mode="a")
    assert store.format_version == 1 and store.n_episodes == 3
    assert np.array_equal(store.read_frames("cam", [9, 0, 9]), np.concatenate([e["cam"] for e in eps])[[9, 0, 9]])
    store.append_episode(eps[0], metas[0])  # still format 1: no sharding added behind its back
    assert store.array("cam").shards is None and store.attrs["format_version"] == 1
    ds = WindowDataset(path, obs_keys=["cam"], obs_horizon=2, action_horizon=2)
    assert np.array_equal(ds.__getitems__([15])[0]["obs"]["cam"], eps[0]["cam"][[0, 1]])  # episode 3, t=1


def test_rechunk_rewrites_a_format1_store_atomically(tmp_path, capsys):
    from robolearn.cli import main

    path = tmp_path / "old.zarr"
    eps, metas = old_episodes()
    write_format1_store(path, eps, metas)
    assert main(["data", "rechunk", str(path), "--out", str(tmp_path / "new.zarr"), "--frames-per-shard", "2"]) == 0
    assert "3 episodes, 14 steps in format 2 (cam=blosc; 2 frames per shard)" in capsys.readouterr().out
    assert EpisodeStore.open(path).format_version == 1  # --out leaves the source alone
    assert main(["data", "rechunk", str(path)]) == 0  # in place
    assert sorted(p.name for p in tmp_path.iterdir()) == ["new.zarr", "old.zarr"]  # no temp dirs left
    for where, shard in ((path, 64), (tmp_path / "new.zarr", 2)):
        store = EpisodeStore.open(where)
        assert store.format_version == 2 and store.array("cam").shards == (shard, 6, 5, 3)
        assert store.attrs["task"] == "lift" and store.attrs["image_codecs"] == {"cam": "blosc"}
        for i, ep in enumerate(eps):
            got = store.get_episode(i)
            assert all(np.array_equal(got[k], v) for k, v in ep.items()) and store.episode_meta(i) == metas[i]


def test_rechunk_changes_nothing_on_error(tmp_path):
    from robolearn.datasets.store import StoreDamaged, rechunk
    from robolearn.errors import UserError

    path = tmp_path / "s.zarr"
    frames_store(path)
    shard = path / "data/cam/c/1/0/0/0"
    raw = bytearray(shard.read_bytes())
    raw[10] ^= 0xFF
    shard.write_bytes(bytes(raw))
    before = {p: p.read_bytes() for p in path.rglob("*") if p.is_file()}
    with pytest.raises(UserError, match="--image-codec.*unknown camera codec"):
        rechunk(path, image_codecs=["nope:3"])
    with pytest.raises(StoreDamaged, match="data/cam"):
        rechunk(path, frames_per_shard=2)
    with pytest.raises(StoreDamaged):
        rechunk(path, out=tmp_path / "out.zarr")
    assert {p: p.read_bytes() for p in path.rglob("*") if p.is_file()} == before
    assert [p.name for p in tmp_path.iterdir()] == ["s.zarr"]


def test_rechunk_with_another_camera_codec_reads_through_the_fast_path(tmp_path):
    from robolearn.datasets.store import rechunk

    path = tmp_path / "s.zarr"
    src = frames_store(path)
    want = src.get("cam")
    done = rechunk(path, out=tmp_path / "webp.zarr", image_codecs=["cam=webp:90"])
    assert done["image_codecs"] == {"cam": "webp:90"}
    store = EpisodeStore.open(tmp_path / "webp.zarr")
    assert store.attrs["image_codecs"] == {"cam": "webp:90"} and store.array("cam").attrs["image_codec"] == "webp:90"
    fast = store.read_frames("cam", np.arange(store.n_steps))
    assert np.array_equal(fast, store.get("cam"))  # the fast path decodes exactly what zarr decodes
    assert np.abs(fast.astype(int) - want).max() <= 12  # lossy, close


def test_torn_tail_shard_of_an_interrupted_append_is_trimmed_not_damage(tmp_path, capsys):
    """A writer died during an append: the tail shard was rewritten (atomically, by rename) with
    uncommitted frames, the next shard file is torn, and a temp file was left behind."""
    from robolearn.cli import main

    path = tmp_path / "s.zarr"
    frames_store(path, lengths=(6,))  # shards of 4 frames: shard 1 holds committed rows 4, 5
    raw = zarr.open_group(str(path), mode="r+")
    for key, value in (("cam", np.full((5, 6, 5, 3), 99, np.uint8)), ("action", np.full((5, 2), 99, np.float32))):
        raw[f"data/{key}"].resize((11,) + value.shape[1:])
        raw[f"data/{key}"][6:11] = value  # beyond the commit point
    torn = path / "data/cam/c/2/0/0/0"
    torn.write_bytes(torn.read_bytes()[:37])  # died half way through writing shard 2
    (path / "data/cam/c/1/0/0/0.3f2a.partial").write_bytes(b"half a shard")

    reader = EpisodeStore.open(path)  # readers see the committed episode only, intact
    assert reader.n_episodes == 1 and reader.read_frames("cam", [4, 5])[:, 0, 0, 0].tolist() == [4, 5]
    main(["data", "validate", str(path)])  # validate names the uncommitted tail, no damaged chunk
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines and all("uncommitted" in line and "crc" not in line and "chunk" not in line for line in lines), lines
    writer = EpisodeStore.open(path, mode="a")  # the append handle trims the tail
    assert writer.array("cam").shape[0] == 6 and not torn.exists() and not list(path.rglob("*.partial"))
    writer.append_episode({"cam": np.full((3, 6, 5, 3), 7, np.uint8), "action": np.zeros((3, 2), np.float32)})
    again = EpisodeStore.open(path)
    assert again.read_frames("cam", np.arange(9))[:, 0, 0, 0].tolist() == [0, 1, 2, 3, 4, 5, 7, 7, 7]
    assert main(["data", "validate", str(path)]) == 0

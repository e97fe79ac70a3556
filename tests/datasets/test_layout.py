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
    store = EpisodeStore.create(path, frames_per_shard=4)
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

"""Small source datasets for the importer and `robolearn data` tests, written by our own code
(test modules get these functions from the `datagen` fixture).

    episodes_data()       three short episodes: action (T, 2) f32, obs (T, 3) f64, cam_image (T, 8, 10, 3) u8
    write_dp_zarr()       a diffusion_policy ReplayBuffer store in zarr v2 format via zarr's API (Blosc)
    write_dp_by_hand()    the same layout written byte by byte: .zgroup / .zarray JSON, zlib and raw chunks
    write_robomimic()     a robomimic HDF5 file (demos out of numeric order, env_args, filter masks)
    corrupt()             damage a store in place (truncate, mismatch, decreasing ends, NaN)

The `watch_while_writing` fixture runs a writer process while a reader checks the store.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pytest

LENGTHS = (5, 7, 4)


def episodes_data(lengths=LENGTHS, seed: int = 0) -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    return [
        {
            "action": rng.uniform(-1, 1, (t, 2)).astype(np.float32),
            "obs": rng.normal(size=(t, 3)),
            "cam_image": rng.integers(0, 256, (t, 8, 10, 3), dtype=np.uint8),
        }
        for t in lengths
    ]


def concat(episodes: list[dict[str, np.ndarray]]) -> tuple[dict[str, np.ndarray], np.ndarray]:
    data = {k: np.concatenate([ep[k] for ep in episodes]) for k in episodes[0]}
    ends = np.cumsum([len(ep["action"]) for ep in episodes]).astype(np.int64)
    return data, ends


def write_dp_zarr(path: Path, episodes: list[dict[str, np.ndarray]]) -> Path:
    """What diffusion_policy's ReplayBuffer leaves on disk (zarr_format=2, numcodecs Blosc)."""
    import numcodecs
    import zarr

    data, ends = concat(episodes)
    root = zarr.open_group(str(path), mode="w", zarr_format=2)
    group = root.create_group("data")
    for i, (key, value) in enumerate(data.items()):
        chunks = (1,) + value.shape[1:] if value.ndim == 4 else (4,) + value.shape[1:]
        cname = ("lz4", "zstd")[i % 2]
        arr = group.create_array(
            key, shape=value.shape, chunks=chunks, dtype=value.dtype,
            compressors=numcodecs.Blosc(cname=cname, clevel=5, shuffle=numcodecs.Blosc.SHUFFLE),
        )
        arr[:] = value
    meta = root.create_group("meta")
    arr = meta.create_array("episode_ends", shape=ends.shape, chunks=ends.shape, dtype=np.int64, compressors=None)
    arr[:] = ends
    return path


def _write_v2_array(path: Path, value: np.ndarray, chunk_steps: int, compressor: str | None) -> None:
    """One zarr v2 array as zarr 2.x writes it: .zarray JSON + one file per chunk ("i.j" names)."""
    path.mkdir(parents=True)
    chunks = (chunk_steps,) + value.shape[1:]
    meta = {
        "zarr_format": 2, "shape": list(value.shape), "chunks": list(chunks), "dtype": value.dtype.str,
        "compressor": {"id": "zlib", "level": 1} if compressor == "zlib" else None,
        "fill_value": 0, "order": "C", "filters": None,
    }
    if compressor:  # zarr < 2.8 wrote no dimension_separator ("." implied); newer versions write it
        meta["dimension_separator"] = "."
    (path / ".zarray").write_text(json.dumps(meta, indent=4))
    for i, start in enumerate(range(0, len(value), chunk_steps)):
        chunk = np.zeros(chunks, dtype=value.dtype)  # edge chunks are stored full size
        part = value[start : start + chunk_steps]
        chunk[: len(part)] = part
        raw = chunk.tobytes(order="C")
        name = ".".join([str(i)] + ["0"] * (value.ndim - 1))
        (path / name).write_bytes(zlib.compress(raw, 1) if compressor == "zlib" else raw)


def write_dp_by_hand(path: Path, episodes: list[dict[str, np.ndarray]]) -> Path:
    data, ends = concat(episodes)
    for group in (path, path / "data", path / "meta"):
        group.mkdir(parents=True, exist_ok=True)
        (group / ".zgroup").write_text(json.dumps({"zarr_format": 2}))
    (path / ".zattrs").write_text("{}")
    for i, (key, value) in enumerate(data.items()):
        _write_v2_array(path / "data" / key, value, chunk_steps=3, compressor=("zlib", None)[i % 2])
    _write_v2_array(path / "meta" / "episode_ends", ends, chunk_steps=len(ends), compressor=None)
    return path


def write_robomimic(path: Path, names=("demo_0", "demo_10", "demo_2", "demo_1"), drop_actions: str | None = None,
                    seed: int = 0) -> dict[str, dict[str, np.ndarray]]:
    """A robomimic-layout HDF5 file; returns each demo's arrays by demo name."""
    import h5py

    rng = np.random.default_rng(seed)
    demos = {}
    with h5py.File(path, "w") as f:
        data = f.create_group("data")
        data.attrs["env_args"] = json.dumps({"env_name": "Lift", "type": 1, "env_kwargs": {"control_freq": 20}})
        data.attrs["total"] = 0
        for j, name in enumerate(names):
            t = 3 + j
            d = {
                "actions": rng.uniform(-1, 1, (t, 7)),
                "states": rng.normal(size=(t, 5)),
                "rewards": np.zeros(t),
                "dones": (np.arange(t) == t - 1).astype(np.int64),
                "obs/agentview_image": rng.integers(0, 256, (t, 8, 8, 3), dtype=np.uint8),
                "obs/robot0_eef_pos": rng.normal(size=(t, 3)).astype(np.float32),
            }
            if name == drop_actions:
                del d["actions"]
            g = data.create_group(name)
            g.attrs["num_samples"] = t
            for key, value in d.items():
                g.create_dataset(key, data=value)
                if key.startswith("obs/"):
                    g.create_dataset("next_" + key, data=value)
            demos[name] = d
        mask = f.create_group("mask")
        mask.create_dataset("train", data=np.array([n.encode() for n in names[:-1]]))
        mask.create_dataset("valid", data=np.array([names[-1].encode()]))
    return demos


def corrupt(path: Path, kind: str) -> None:
    """Damage a store (robolearn v3 or diffusion_policy v2) through the raw zarr API."""
    import zarr

    g = zarr.open_group(str(path), mode="r+")
    ends = g["meta/episode_ends"]
    n = int(ends[-1])
    if kind == "truncated":
        action = g["data/action"]
        action.resize((n - 2,) + action.shape[1:])
    elif kind == "mismatched":
        obs = g["data/obs"]
        obs.resize((n + 3,) + obs.shape[1:])
    elif kind == "decreasing":
        values = ends[:]
        values[1] = values[0] - 1
        ends[:] = values
    elif kind == "nan":
        action = g["data/action"]
        values = action[:]
        values[6, 1] = np.nan
        action[:] = values
    else:
        raise ValueError(kind)


@pytest.fixture
def small_store(tmp_path):
    """A valid robolearn store built from `episodes_data()` (with episode metadata and attrs)."""
    from robolearn.datasets.store import EpisodeStore

    path = tmp_path / "small.zarr"
    store = EpisodeStore.create(path, attrs={"task": "lift"})
    for i, ep in enumerate(episodes_data()):
        store.append_episode(ep, {"seed": i, "instruction": f"lift {i}"})
    return path


@pytest.fixture(scope="session")
def datagen():
    """The writers above, for test modules (importing from a conftest is fragile)."""
    from types import SimpleNamespace

    return SimpleNamespace(
        episodes_data=episodes_data, concat=concat, write_dp_zarr=write_dp_zarr, write_dp_by_hand=write_dp_by_hand,
        write_robomimic=write_robomimic, corrupt=corrupt,
    )


def _watch_while_writing(path: Path, argv: list[str], check, timeout: float = 60.0, **popen_kw):
    """Run ``python -c *argv`` (a writer of the store at ``path``) while a reader refreshes and calls
    ``check(reader)`` until the writer exits or ``timeout`` s pass; the writer is killed on the way
    out. -> (reader, the writer's return code)."""
    from robolearn.datasets.store import EpisodeStore

    proc = subprocess.Popen([sys.executable, "-c", *argv], **popen_kw)
    reader = EpisodeStore.open(path)
    try:
        deadline = time.time() + timeout
        while proc.poll() is None and time.time() < deadline:
            reader.refresh()
            check(reader)
    finally:
        proc.kill()
        proc.wait()
    return reader, proc.returncode


@pytest.fixture(scope="session")
def watch_while_writing():
    return _watch_while_writing

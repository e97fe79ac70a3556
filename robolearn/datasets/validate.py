"""Check an episode store on disk, without trusting (or repairing) what it says.

`EpisodeStore.open` only exposes the valid committed prefix of a store and `mode="a"`
trims whatever lies beyond it, which is right for a crashed append but hides damage.
The checks here read the raw zarr group instead and report every problem they find:

    structure   data/ and meta/episode_ends exist, are a group and a 1-d integer array
    ends        episode_ends strictly increasing and positive (every episode has >= 1 step)
    lengths     every data/<key> has exactly episode_ends[-1] steps (shorter: truncated;
                longer: an uncommitted tail); every meta/episodes/<field> one value per episode
    values      no NaN / inf in float arrays (committed steps only)
    stats       attrs["stats"] holds an entry per numeric key, computed over all n_steps

Each problem is one string `"<key>: <problem>"` (the key is a path inside the store,
e.g. `data/action`); `validate_store` returns the list, empty when the store is sound.
The same checks work on diffusion_policy's ReplayBuffer stores (zarr v2), which have
no robolearn attrs: pass `robolearn=False` to skip the format and stats checks.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import zarr

from robolearn.datasets.store import FORMAT_NAME, FORMAT_VERSION, _open_zarr_store, store_exists
from robolearn.errors import UserError

SCAN_BYTES = 64 << 20  # read float arrays in blocks of about this many bytes


def open_raw_group(path: str | os.PathLike) -> zarr.Group:
    """The root zarr group at `path` (v2 or v3, directory, .zip or fsspec URL), read-only."""
    path = str(path)
    if not store_exists(path):
        raise UserError(f"{path}: no such file or directory (expected a zarr episode store)")
    try:
        group = zarr.open_group(_open_zarr_store(path, read_only=True), mode="r")
    except UserError:
        raise
    except Exception as exc:  # zarr raises several types for "not a group here"
        raise UserError(f"{path}: not a zarr store (expected a zarr group with data/ and meta/episode_ends)") from exc
    return group


def _child(group: zarr.Group, name: str) -> Any:
    try:
        return group[name]
    except KeyError:
        return None


def _arrays(group: zarr.Group | None) -> dict[str, zarr.Array]:
    if not isinstance(group, zarr.Group):
        return {}
    return {name: arr for name, arr in sorted(group.arrays())}


def read_episode_ends(group: zarr.Group) -> tuple[np.ndarray | None, list[str]]:
    """meta/episode_ends as int64 plus the problems with it (None if unusable)."""
    ends = _child(group, "meta/episode_ends")
    if ends is None:
        return None, ["meta/episode_ends: missing (expected a 1-d int array of cumulative episode ends)"]
    if not isinstance(ends, zarr.Array) or len(ends.shape) != 1 or not np.issubdtype(ends.dtype, np.integer):
        return None, ["meta/episode_ends: expected a 1-d integer array of cumulative episode ends"]
    values = np.asarray(ends[:], dtype=np.int64)
    problems = []
    if len(values) and values[0] <= 0:
        problems.append(f"meta/episode_ends: first end is {values[0]}; expected > 0 (episode 0 has no steps)")
    bad = np.flatnonzero(np.diff(values) <= 0)
    if len(bad):
        i = int(bad[0]) + 1
        problems.append(
            f"meta/episode_ends: not strictly increasing at episode {i} ({values[i - 1]} then {values[i]}); "
            f"expected cumulative ends"
        )
    return values, problems


def structure_problems(group: zarr.Group) -> list[str]:
    """Layout, episode_ends and per-key length problems of a raw store group."""
    data = _child(group, "data")
    if not isinstance(data, zarr.Group):
        return ["data: missing (expected a group of per-step arrays)"]
    ends, problems = read_episode_ends(group)
    arrays = _arrays(data)
    for name, _ in sorted(data.groups()):
        problems.append(f"data/{name}: is a group; expected an array of per-step values")
    for key, arr in arrays.items():
        if len(arr.shape) == 0:
            problems.append(f"data/{key}: 0-d array; expected steps along axis 0")
    if ends is None:
        return problems
    n_steps = int(ends[-1]) if len(ends) else 0
    for key, arr in arrays.items():
        if len(arr.shape) and arr.shape[0] != n_steps:
            what = "truncated" if arr.shape[0] < n_steps else "uncommitted steps past the last episode"
            problems.append(f"data/{key}: {arr.shape[0]} steps, expected {n_steps} (episode_ends[-1]); {what}")
    for field, arr in _arrays(_child(group, "meta/episodes")).items():
        if arr.shape[:1] != (len(ends),):
            problems.append(f"meta/episodes/{field}: shape {arr.shape}, expected ({len(ends)},) (one value per episode)")
    return problems


def _float_blocks(arr: zarr.Array, n_steps: int):
    row_bytes = max(1, int(np.prod(arr.shape[1:], dtype=np.int64)) * arr.dtype.itemsize)
    step = max(1, SCAN_BYTES // row_bytes)
    if arr.chunks[0] > 0:  # whole chunks per block
        step = max(arr.chunks[0], step // arr.chunks[0] * arr.chunks[0])
    for start in range(0, n_steps, step):
        yield start, arr[start : min(n_steps, start + step)]


def value_problems(group: zarr.Group, n_steps: int) -> list[str]:
    """NaN / inf in the committed steps of float data arrays."""
    problems = []
    for key, arr in _arrays(_child(group, "data")).items():
        if not np.issubdtype(arr.dtype, np.floating) or not len(arr.shape):
            continue
        for start, block in _float_blocks(arr, min(n_steps, arr.shape[0])):
            finite = np.isfinite(block).reshape(len(block), -1).all(axis=1)
            if not finite.all():
                step = start + int(np.argmin(finite))
                kind = "NaN" if np.isnan(block[step - start]).any() else "inf"
                problems.append(f"data/{key}: {kind} at step {step}; expected finite values")
                break
    return problems


def stats_problems(group: zarr.Group, n_steps: int) -> list[str]:
    """attrs["stats"] missing or stale for some numeric data key."""
    stats = group.attrs.get("stats")
    if not isinstance(stats, dict):
        return ["attrs/stats: missing (run `robolearn data stats STORE`)"]
    problems = []
    arrays = _arrays(_child(group, "data"))
    for key, arr in arrays.items():
        if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == np.bool_):
            continue
        entry = stats.get(key)
        if not isinstance(entry, dict) or not all(s in entry for s in ("min", "max", "mean", "std")):
            problems.append(f"attrs/stats/{key}: missing (run `robolearn data stats STORE`)")
        elif entry.get("count") != n_steps:
            problems.append(
                f"attrs/stats/{key}: computed over {entry.get('count')} steps, expected {n_steps} "
                f"(stale; run `robolearn data stats STORE`)"
            )
    for key in sorted(set(stats) - set(arrays)):
        problems.append(f"attrs/stats/{key}: statistics for a key that is not in data/")
    return problems


def format_problems(group: zarr.Group) -> list[str]:
    fmt, version = group.attrs.get("format"), group.attrs.get("format_version")
    if fmt != FORMAT_NAME:
        return [f"attrs/format: {fmt!r}, expected {FORMAT_NAME!r} (import peer formats with `robolearn data import`)"]
    if not isinstance(version, int) or version > FORMAT_VERSION:
        return [f"attrs/format_version: {version!r}, expected an int <= {FORMAT_VERSION}"]
    return []


def check_group(group: zarr.Group, robolearn: bool = True, values: bool = True, stats: bool = True) -> list[str]:
    """Every problem with a raw store group; see the module docstring for what is checked."""
    problems = format_problems(group) if robolearn else []
    structure = structure_problems(group)
    problems += structure
    if structure:  # lengths are unreliable: value/stat checks would only repeat the damage
        return problems
    ends, _ = read_episode_ends(group)
    n_steps = int(ends[-1]) if len(ends) else 0
    if values:
        problems += value_problems(group, n_steps)
    if robolearn and stats:
        problems += stats_problems(group, n_steps)
    return problems


def validate_store(path: str | os.PathLike, robolearn: bool = True, values: bool = True, stats: bool = True) -> list[str]:
    """All problems with the store at `path` as `"<key>: <problem>"` strings ([] when sound).

    Raises UserError if `path` does not exist or is not a zarr group at all.
    """
    return check_group(open_raw_group(path), robolearn=robolearn, values=values, stats=stats)


def require_valid(path: str | os.PathLike, robolearn: bool = True, values: bool = True, stats: bool = False) -> None:
    """Raise UserError naming the first problem (and how many more) unless the store is sound."""
    problems = validate_store(path, robolearn=robolearn, values=values, stats=stats)
    if problems:
        more = f" (and {len(problems) - 1} more problem(s); run `robolearn data validate`)" if len(problems) > 1 else ""
        raise UserError(f"{path}: {problems[0]}{more}")

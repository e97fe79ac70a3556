"""`robolearn data repair STORE --out NEW`: recover the intact episodes of a damaged store.

The damaged store is only read. `validate.scan` reads and decodes every chunk of every array;
each problem it finds spoils some rows (steps, or episodes for meta columns) of one key, a
whole key, or the episode boundaries. Then:

    an episode is kept   when its boundaries are sound (it starts where the previous sound
                         end left off, ends after it starts, within the data of every kept
                         key and the meta columns) and no problem touches its rows in a kept key
    a whole key is left out  when it cannot be read at all (unreadable metadata, a file or a
                         group in its place, deleted, a camera that is not uint8 frames, values
                         unlike its statistics): every episode would be lost to it otherwise,
                         so the copy goes without that key and says so. `--drop-key KEY` leaves
                         out a key whose damage would otherwise cost episodes.

Nothing is guessed: episode boundaries come only from meta/episode_ends, so a store whose
episode_ends is missing or unreadable cannot be repaired (no episode can be told apart). The
copy is written with `AtomicStoreWriter` (beside NEW, then renamed), keeps the source's camera
codecs and attrs (minus the statistics, recomputed), is validated before it is moved into
place, and records `repaired_from`. Each dropped episode and key is listed with its reason.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable

import numpy as np

from robolearn.datasets.store import LAYOUT_ATTRS, AtomicStoreWriter, _to_python, is_image_array, store_exists
from robolearn.datasets.validate import Problem, Report, scan, validate_store
from robolearn.errors import UserError


def _drop_names(report: Report, drop_keys: Iterable[str], src: str) -> set[str]:
    """--drop-key values as problem keys: "cam_image" (data/ prefix optional) or "meta/episodes/<field>"."""
    names = set()
    for name in drop_keys:
        key = name.removeprefix("data/")
        if key in report.data or key.removeprefix("meta/episodes/") in report.meta or key == name and any(
                p.key == key for p in report.problems):
            names.add(key)
        else:
            fields = [f"meta/episodes/{m}" for m in report.meta]
            raise UserError(f"--drop-key {name}: not a key of {src}; expected one of {', '.join([*report.data, *fields])}")
    return names


def _whole_key_problems(report: Report) -> dict[str, Problem]:
    """Keys that cannot be read at all: the first such problem of each."""
    lost: dict[str, Problem] = {}
    for p in report.problems:
        if p.key and p.key != "meta/episode_ends" and p.rows is None and not p.tail:
            lost.setdefault(p.key, p)
    return lost


def _episodes(ends: np.ndarray, n_data: int, n_meta: int) -> tuple[list[tuple[int, int, int]], dict[int, str]]:
    """(index, start, end) of every episode with sound boundaries, and why each other one is not."""
    sound, bad = [], {}
    reach = 0  # the furthest end so far: an episode must start exactly there
    for i, end in enumerate(int(e) for e in ends):
        start = int(ends[i - 1]) if i else 0
        if start != reach:
            bad[i] = f"meta/episode_ends: starts at step {start}, inside or before an earlier episode (which ends at {reach})"
        elif end <= start:
            bad[i] = f"meta/episode_ends: ends at step {end}, not after its start {start}"
        elif end > n_data:
            bad[i] = f"meta/episode_ends: ends at step {end}, past the {n_data} steps of data"
        elif i >= n_meta:
            bad[i] = f"meta/episodes: no metadata for episode {i} (the columns hold {n_meta})"
        else:
            sound.append((i, start, end))
        reach = max(reach, end)
    return sound, bad


def _layout(report: Report, keys: list[str]) -> dict:
    """EpisodeStore.create kwargs that keep the source's camera codecs and shard size."""
    attrs = report.attrs
    codecs = {}
    for key in keys:
        arr = report.data[key]
        if is_image_array(arr):
            spec = arr.attrs.get("image_codec") or (attrs.get("image_codecs") or {}).get(key) or attrs.get("image_codec_default")
            if spec:
                codecs[key] = spec
    layout = {"image_codecs": codecs} if codecs else {}
    if isinstance(attrs.get("frames_per_shard"), int):
        layout["frames_per_shard"] = attrs["frames_per_shard"]
    return layout


def repair_store(src: str | os.PathLike, out: str | os.PathLike, drop_keys: Iterable[str] = ()) -> list[str]:
    """Write the intact episodes of `src` to a new store `out`; returns the lines to print."""
    src, out = str(src), str(out)
    if store_exists(out):
        raise UserError(f"{out}: already exists; expected a new path for the repaired store (the damaged one is never modified)")
    report = scan(src)
    drop = _drop_names(report, drop_keys, src)
    ends = report.raw_ends
    if ends is None:
        why = next((str(p) for p in report.problems if p.key == "meta/episode_ends" or p.where == "data"), "unreadable")
        raise UserError(f"{src}: {why}; cannot tell where episodes start and end, so none can be recovered; nothing written")
    lost = {k: p for k, p in _whole_key_problems(report).items() if k not in drop}
    data_keys = [k for k in report.data if k not in drop and k not in lost]
    fields = [f for f in report.meta if f"meta/episodes/{f}" not in drop and f"meta/episodes/{f}" not in lost]
    if not data_keys:
        raise UserError(f"{src}: no data key can be read ({next(iter(lost.values()), 'none left')}); nothing written")
    n_data = min(report.data[k].shape[0] for k in data_keys)
    n_meta = min([report.meta[f].shape[0] for f in fields], default=len(ends))
    sound, dropped = _episodes(ends, n_data, n_meta)

    kept_keys = set(data_keys) | {f"meta/episodes/{f}" for f in fields}
    for p in report.problems:
        if p.key not in kept_keys or p.rows is None:
            continue
        spans = [p.rows] + [(r, r + 1) for r in p.more_rows]
        for i, start, end in sound:
            a, b = (i, i + 1) if p.key.startswith("meta/") else (start, end)
            if i not in dropped and any(lo < b and a < hi for lo, hi in spans):
                dropped[i] = str(p)
    kept = [(i, start, end) for i, start, end in sound if i not in dropped]
    if not kept:
        first = dropped[min(dropped)] if dropped else "no episodes"
        raise UserError(f"{src}: no episode verifies ({first}); nothing written (`--drop-key KEY` recovers the episodes "
                        f"without a damaged key)")

    attrs = {k: v for k, v in report.attrs.items() if k not in LAYOUT_ATTRS}
    attrs["repaired_from"] = str(Path(src).resolve()) if "://" not in src else src
    with AtomicStoreWriter(out, attrs=attrs, **_layout(report, data_keys)) as store:
        for i, start, end in kept:
            data = {k: np.asarray(report.data[k][start:end]) for k in data_keys}
            meta = {f: _to_python(report.meta[f][i : i + 1][0]) for f in fields}
            store.append_episode(data, meta)
        problems = validate_store(store.path)
        if problems:
            raise UserError(f"{out}: the repaired copy fails validation ({problems[0]}); nothing written")
        n_steps = store.n_steps

    lines = [f"{out}: kept {len(kept)} of {len(ends)} episodes ({n_steps} steps; keys {', '.join(data_keys)}) from {src}"]
    for i in sorted(dropped):
        start, end = (int(ends[i - 1]) if i else 0), int(ends[i])
        span = f" (steps {start}-{end - 1})" if end > start else ""
        lines.append(f"{out}: dropped episode {i}{span}: {dropped[i]}")
    for key, p in lost.items():
        lines.append(f"{out}: left out {key if key.startswith('meta/') else 'data/' + key}, unreadable in every episode: {p}")
    for key in sorted(drop):
        lines.append(f"{out}: left out {key if key.startswith('meta/') else 'data/' + key} (--drop-key)")
    if not report.attrs:
        lines.append(f"{out}: note: the source's root metadata was unreadable: the copy has no task/env attrs")
    return lines

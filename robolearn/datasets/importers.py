"""Importers from peers' dataset formats into a robolearn episode store.

diffusion_policy   a ReplayBuffer zarr store (a directory or a .zip; usually the v2 format
                   zarr 2.x writes: `.zgroup` / `.zarray` JSON plus Blosc-compressed chunk
                   files): `data/<key>` concatenated along time and `meta/episode_ends`.
                   Every data key is kept as is; 1-d arrays in `meta/` (and robolearn's
                   `meta/episodes/`) with one value per episode become episode metadata.
robomimic          an HDF5 file: `data/demo_<N>/{obs/<k>, actions, states, rewards, dones}`,
                   demos in numeric order of N, the env kwargs as a JSON string in
                   `data.attrs["env_args"]` and train/valid filter keys in `mask/<name>`.
                   Keys become `obs/<k> -> <k>`, `actions -> action`, `states -> states`,
                   `rewards -> reward`, `dones -> done`; `next_obs` is dropped (it is `obs`
                   shifted by one). Episode metadata: `demo` (its name), `num_samples` (if
                   the demo has the attribute) and `mask_<name>` (membership of each filter key).

Both check the source before writing anything, build the store beside the destination
with `AtomicStoreWriter` and validate it before moving it into place, so a failure leaves
nothing at the destination. `image_codecs` (one camera codec spec, or {key | "*": spec}; see
robolearn/datasets/codecs.py) writes the imported frames straight in that codec, no lossless
copy in between; None = the store default. Store attrs record `source` ({"format", "path"}) and, for
robomimic, the parsed `env_args`.
"""

from __future__ import annotations

import json
import logging
import os
import re
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from robolearn.datasets.store import AtomicStoreWriter, _is_url, _to_python, store_exists
from robolearn.datasets.validate import open_raw_group, read_episode_ends, read_failure_reason, scan, validate_store
from robolearn.errors import UserError

log = logging.getLogger(__name__)

FORMATS = ("diffusion_policy", "robomimic")
ROBOMIMIC_KEYS = {"actions": "action", "states": "states", "rewards": "reward", "dones": "done"}
IN_RAM_BYTES = 256 << 20  # diffusion_policy arrays up to this size are read once, larger ones per episode

Episode = tuple[dict[str, np.ndarray], dict[str, Any]]


def _source_path(src: str | os.PathLike) -> str:
    return str(src) if _is_url(src) else str(Path(src).resolve())


def detect_format(src: str | os.PathLike) -> str:
    """Guess the format of `src`: an HDF5 file is robomimic, a zarr directory/zip is diffusion_policy."""
    path = Path(src)
    if not _is_url(src) and not path.exists():
        raise UserError(f"{src}: no such file or directory")
    if path.suffix.lower() in (".hdf5", ".h5"):
        return "robomimic"
    if _is_url(src) or path.is_dir() or path.suffix.lower() == ".zip":
        return "diffusion_policy"
    import h5py

    if h5py.is_hdf5(str(path)):
        return "robomimic"
    raise UserError(f"{src}: cannot tell its format; expected a zarr store or an HDF5 file (pass --format)")


def import_dataset(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    fmt: str | None = None,
    overwrite: bool = False,
    progress: bool = False,
    image_codecs: str | dict[str, str] | None = None,
) -> str:
    """Import `src` (format `fmt`, guessed if None) into a new store at `dst`; returns `dst`."""
    fmt = fmt or detect_format(src)
    importers: dict[str, Callable[..., str]] = {
        "diffusion_policy": import_diffusion_policy,
        "robomimic": import_robomimic,
    }
    if fmt not in importers:
        raise UserError(f"--format {fmt}: unknown format; expected one of {', '.join(FORMATS)}")
    if image_codecs is None:
        return importers[fmt](src, dst, overwrite=overwrite, progress=progress)
    return importers[fmt](src, dst, overwrite=overwrite, progress=progress, image_codecs=image_codecs)


def append_labelled(store, episodes, src, image_codecs) -> None:
    """Append `(label, (data, meta))` pairs from an importer; an episode the store refuses names its
    source and label, and the first one is checked against the --image-codec keys (a codec named for a
    key the source lacks, or a lossy one for a key that is not an RGB camera)."""
    from robolearn.datasets.codecs import check_codec_keys

    for label, (data, meta) in episodes:
        if not store.n_episodes:
            check_codec_keys(image_codecs, data, f"{src}: --image-codec")
        try:
            store.append_episode(data, meta)
        except UserError as exc:
            raise UserError(f"{src}: {label}: {str(exc).replace(store.path + ': ', '')}") from exc


def _write_store(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    attrs: dict[str, Any],
    episodes: Iterator[tuple[str, Episode]],
    n_episodes: int,
    overwrite: bool,
    progress: bool,
    image_codecs: str | dict[str, str] | None = None,
) -> str:
    """Append `episodes` ((label, (data, meta)) pairs) to a store built atomically at `dst`."""
    from robolearn.datasets.codecs import parse_image_codec_options

    from tqdm.auto import tqdm

    if store_exists(dst) and not overwrite:  # fail before reading any of the source
        raise UserError(f"{dst}: already exists; refusing to overwrite (pass --overwrite)")
    image_codecs = parse_image_codec_options(image_codecs, "--image-codec")
    with AtomicStoreWriter(dst, attrs=attrs, overwrite=overwrite, image_codecs=image_codecs) as store:
        bar = tqdm(episodes, total=n_episodes, desc=f"import {Path(str(src)).name}", unit="ep", disable=None if progress else True)
        append_labelled(store, bar, src, image_codecs)
        problems = validate_store(store.path)
        if problems:
            raise UserError(f"{src}: imported store fails validation: {problems[0]}")
        log.info("%s: imported %d episodes, %d steps into %s", src, store.n_episodes, store.n_steps, dst)
    return str(dst)


# ---------------------------------------------------------------------- diffusion_policy
def _dp_meta_columns(group, n_episodes: int) -> dict[str, np.ndarray]:
    """1-d arrays with one value per episode under meta/ and meta/episodes/."""
    columns = {}
    for prefix in ("meta", "meta/episodes"):
        try:
            sub = group[prefix]
        except KeyError:
            continue
        for name, arr in sorted(sub.arrays()):
            if name == "episode_ends" and prefix == "meta":
                continue
            if arr.shape != (n_episodes,) or not (np.issubdtype(arr.dtype, np.number) or arr.dtype.kind in "bUTO"):
                log.warning("%s/%s: shape %s %s is not one value per episode; not imported", prefix, name, arr.shape, arr.dtype)
                continue
            columns[name] = arr[:]
    return columns


def _dp_episodes(src, group, ends: np.ndarray, columns: dict[str, np.ndarray]) -> Iterator[tuple[str, Episode]]:
    arrays = dict(sorted(group["data"].arrays()))

    def read(k: str, rows: slice, what: str) -> np.ndarray:
        try:
            return arrays[k][rows]
        except Exception as exc:  # a chunk the open-time check did not decode (cameras: only first and last frame)
            raise UserError(f"{src}: data/{k}: {what}: {read_failure_reason(exc)}; expected intact chunks "
                            f"(`robolearn data validate {src}` lists every damaged chunk)") from exc

    def whole(k: str) -> np.ndarray:
        try:
            return arrays[k][:]
        except Exception:  # name the first episode whose steps do not read
            for i, (a, b) in enumerate(zip(np.concatenate([[0], ends[:-1]]), ends)):
                read(k, slice(int(a), int(b)), f"steps {a}-{b - 1} (episode {i})")
            return read(k, slice(None), "reading the array")

    small = [k for k, arr in arrays.items() if int(np.prod(arr.shape, dtype=np.int64)) * arr.dtype.itemsize <= IN_RAM_BYTES]
    in_ram = {k: whole(k) for k in small}
    start = 0
    for i, end in enumerate(ends):
        end = int(end)
        data = {k: (in_ram[k][start:end] if k in in_ram else read(k, slice(start, end), f"steps {start}-{end - 1} (episode {i})"))
                for k in arrays}
        meta = {name: _to_python(col[i]) for name, col in columns.items()}
        yield f"episode {i}", (data, meta)
        start = end


def import_diffusion_policy(
    src: str | os.PathLike, dst: str | os.PathLike, overwrite: bool = False, progress: bool = False,
    image_codecs: str | dict[str, str] | None = None,
) -> str:
    """Import a diffusion_policy ReplayBuffer zarr store (v2 or v3, directory or .zip) into `dst`."""
    problems = [str(p) for p in scan(src, robolearn=False, stats=False, all_frames=False).problems]
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise UserError(f"{src}: {problems[0]}{more}")
    group = open_raw_group(src)
    ends, _ = read_episode_ends(group)
    if not len(ends):
        raise UserError(f"{src}: meta/episode_ends: empty; expected at least one episode to import")
    columns = _dp_meta_columns(group, len(ends))
    attrs = {k: v for k, v in group.attrs.asdict().items() if k not in ("format", "format_version", "stats", "source")}
    attrs["source"] = {"format": "diffusion_policy", "path": _source_path(src)}
    return _write_store(src, dst, attrs, _dp_episodes(src, group, ends, columns), len(ends), overwrite, progress,
                        image_codecs)


# ---------------------------------------------------------------------- robomimic
def _demo_number(name: str) -> int | None:
    match = re.fullmatch(r"demo_(\d+)", name)
    return int(match.group(1)) if match else None


def _robomimic_attrs(src: str | os.PathLike, data) -> dict[str, Any]:
    attrs: dict[str, Any] = {"source": {"format": "robomimic", "path": _source_path(src)}}
    raw = data.attrs.get("env_args")
    if raw is not None:
        raw = raw.decode() if isinstance(raw, bytes) else str(raw)
        try:
            attrs["env_args"] = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise UserError(f"{src}: data.attrs['env_args']: not valid JSON ({exc.msg}); expected a JSON object") from exc
    return attrs


def _robomimic_masks(f) -> dict[str, set[str]]:
    """Filter keys: mask/<name> lists the demos in each split (e.g. train, valid)."""
    if "mask" not in f:
        return {}
    masks = {}
    for name, ds in f["mask"].items():
        masks[name] = {(v.decode() if isinstance(v, bytes) else str(v)) for v in np.asarray(ds[()]).ravel()}
    return masks


def _read_demo(src: str | os.PathLike, demo, name: str) -> dict[str, np.ndarray]:
    import h5py

    where = f"{src}: data/{name}"
    if "actions" not in demo or not isinstance(demo["actions"], h5py.Dataset):
        raise UserError(f"{where}/actions: missing; expected a (T, action_dim) dataset")
    data = {new: np.asarray(demo[old][()]) for old, new in ROBOMIMIC_KEYS.items() if old in demo}
    obs = demo.get("obs")
    if isinstance(obs, h5py.Group):
        for key, ds in obs.items():
            if not isinstance(ds, h5py.Dataset):
                log.warning("%s/obs/%s: not a dataset; skipped", where, key)
                continue
            if key in data:
                raise UserError(f"{where}/obs/{key}: clashes with the imported key {key!r}; expected distinct names")
            data[key] = np.asarray(ds[()])
    lengths = {k: (v.shape[0] if v.ndim else 0) for k, v in data.items()}
    if lengths["action"] == 0:
        raise UserError(f"{where}/actions: 0 steps; expected at least one")
    for key, n in lengths.items():
        if n != lengths["action"]:
            raise UserError(f"{where}: {key} has {n} steps, actions has {lengths['action']}; expected equal lengths")
    for key, value in data.items():
        if np.issubdtype(value.dtype, np.floating) and not np.isfinite(value).all():
            step = int(np.argmin(np.isfinite(value).reshape(len(value), -1).all(axis=1)))
            raise UserError(f"{where}: {key}: NaN/inf at step {step}; expected finite values")
    return data


def _robomimic_episodes(src, data_group, demos: list[str], masks: dict[str, set[str]]) -> Iterator[tuple[str, Episode]]:
    for name in demos:
        demo = data_group[name]
        meta: dict[str, Any] = {"demo": name}
        if "num_samples" in demo.attrs:
            meta["num_samples"] = int(demo.attrs["num_samples"])
        meta.update({f"mask_{m}": name in members for m, members in masks.items()})
        yield f"data/{name}", (_read_demo(src, demo, name), meta)


def import_robomimic(src: str | os.PathLike, dst: str | os.PathLike, overwrite: bool = False, progress: bool = False,
                     image_codecs: str | dict[str, str] | None = None) -> str:
    """Import a robomimic HDF5 dataset into a new store at `dst`."""
    import h5py

    if not Path(src).is_file():
        raise UserError(f"{src}: no such file (expected a robomimic HDF5 file)")
    try:
        f = h5py.File(src, "r")
    except OSError as exc:
        raise UserError(f"{src}: not an HDF5 file (expected a robomimic dataset)") from exc
    with f:
        data = f.get("data")
        if not isinstance(data, h5py.Group):
            raise UserError(f"{src}: data: missing; expected a group of demo_<N> groups (robomimic layout)")
        demos = sorted((k for k in data if _demo_number(k) is not None), key=_demo_number)
        if not demos:
            raise UserError(f"{src}: data: no demo_<N> groups; expected at least one demo")
        skipped = [k for k in data if _demo_number(k) is None]
        if skipped:
            log.warning("%s: data: ignoring non-demo entries %s", src, skipped)
        for name in demos:  # check cheap structure before writing anything
            if not isinstance(data[name], h5py.Group):
                raise UserError(f"{src}: data/{name}: not a group; expected obs/, actions, ... inside")
            if "actions" not in data[name]:
                raise UserError(f"{src}: data/{name}/actions: missing; expected a (T, action_dim) dataset")
        attrs = _robomimic_attrs(src, data)
        episodes = _robomimic_episodes(src, data, demos, _robomimic_masks(f))
        return _write_store(src, dst, attrs, episodes, len(demos), overwrite, progress, image_codecs)

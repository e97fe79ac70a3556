"""LeRobot v3.0 datasets in and out of robolearn episode stores.

LeRobot's dataset format (codebase_version "v3.0": `LeRobotDataset` of huggingface/lerobot, Cadene et al. 2024,
as its standalone `lerobot-dataset` 0.4.4 package writes and reads it; tested against that package):

    meta/info.json                  fps, features {name: {dtype, shape, names, info}}, path templates, totals
    meta/stats.json                 per feature: min, max, mean, std, count, q01/q10/q50/q90/q99
    meta/tasks.parquet              one row per task string (the pandas index) -> task_index
    meta/episodes/chunk-*/file-*.parquet
                                    one row per episode: episode_index, tasks, length, dataset_from/to_index,
                                    data/chunk_index + file_index, videos/<key>/chunk_index, file_index,
                                    from_timestamp, to_timestamp, stats/<feature>/<stat>
    data/chunk-*/file-*.parquet     one row per frame: every non-video feature (fixed-size lists for vectors,
                                    {bytes, path} PNG structs for "image" features) plus timestamp,
                                    frame_index, episode_index, index, task_index; many episodes per file
    videos/<key>/chunk-*/file-*.mp4 one stream per camera, many episodes back to back; episode e's frame at
                                    `timestamp` t is the one shown at from_timestamp(e) + t

Import (`import_lerobot`): numeric features become data keys, "video" features are decoded to uint8
frames (T, H, W, 3) with PyAV, "image" features from their PNG bytes; LeRobot's bookkeeping columns are
dropped. Names: `observation.images.<cam>` -> `<cam>`, `observation.<name>` -> `<name>`, anything else as
is (so `observation.state` -> `state`, `action` -> `action`); a feature of shape (1,) becomes a (T,) key.
Each episode's task strings become its `instruction` (several joined by "; "), its LeRobot index
`lerobot_episode`. fps, robot_type and each key's feature name and dimension names go into the store's attrs;
statistics are recomputed from the data by the store (LeRobot's stats.json is not copied). Checked before
anything is kept (the store is built beside DST and moved into place only when complete): meta/info.json
present and of codebase_version v3.x (v2.1 is refused: LeRobot converts it with convert_dataset_v21_to_v30),
every data file's row count equal to the lengths meta/episodes gives it, every episode's video frames present
(a video shorter than its episode is named with the missing frames).

Export (`export_lerobot`): the reverse, readable by LeRobot's own LeRobotDataset. RGB cameras with even
height and width become "video" features encoded as LeRobot encodes them by default (libsvtav1, yuv420p,
GOP 2, CRF 30, preset 12 - `encode_video_frames` in lerobot/datasets/video_utils.py; `vcodec` picks h264 or
hevc instead, as LeRobot's `vcodec` does, hevc without B-frames so LeRobot's PyAV seek finds every frame);
other camera arrays (1, 2 or 4 channels, odd sizes) become "image" features (PNG in the parquet rows),
which are lossless. The action key stays `action`, other keys become `observation.<key>` (cameras
`observation.images.<key>`); per-step arrays of more than one dimension are flattened to a vector
(LeRobot's hf schema handles vectors everywhere). Instructions become tasks (an
episode without one gets the store's `task` attr, else ""). fps comes from the store's `fps` attr or the
`fps` argument: a store without either is refused. info.json also carries a "robolearn" entry (the key
names, original shapes, the store's attrs) and meta/episodes a `robolearn/<field>` column per episode
metadata field, which LeRobot ignores and `import_lerobot` uses to give back the same store.

Both directions write into a temp directory beside DST and rename it into place, so a bad input leaves
nothing at DST; both show a progress bar per episode.
"""

from __future__ import annotations

import io
import json
import logging
import os
from fractions import Fraction
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from robolearn.errors import UserError

log = logging.getLogger(__name__)

CODEBASE_VERSION = "v3.0"
BOOKKEEPING = ("timestamp", "frame_index", "episode_index", "index", "task_index")
CAMERA_PREFIX = "observation.images."
OBS_PREFIX = "observation."
DATA_PATH = "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
VIDEO_PATH = "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
EPISODES_PATH = "meta/episodes/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
CHUNKS_SIZE = 1000  # files per chunk directory (LeRobot's DEFAULT_CHUNK_SIZE)
DATA_FILE_MB = 100  # LeRobot's DEFAULT_DATA_FILE_SIZE_IN_MB
VIDEO_FILE_MB = 200  # LeRobot's DEFAULT_VIDEO_FILE_SIZE_IN_MB
# LeRobot's default video encoding (encode_video_frames): the codec's options by codec
VIDEO_CODECS = {
    "libsvtav1": {"g": "2", "crf": "30", "preset": "12"},
    "h264": {"g": "2", "crf": "30"},
    # + no B-frames: with x265's default B-frames, FFmpeg's backward keyframe seek (LeRobot's pyav path) can land
    # after the asked-for time, and LeRobot's reader then refuses the frame as out of tolerance
    "hevc": {"g": "2", "crf": "30", "x265-params": "bframes=0:log-level=error"},
}
QUANTILES = (0.01, 0.10, 0.50, 0.90, 0.99)
NUMERIC_DTYPES = ("bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
                  "float16", "float32", "float64")  # fmt: skip


def is_lerobot_dir(path: str | os.PathLike) -> bool:
    """A directory with meta/info.json (what `robolearn data import` takes for a LeRobot dataset)."""
    return (Path(path) / "meta" / "info.json").is_file()


# ====================================================================== reading a LeRobot dataset
def read_info(root: Path) -> dict[str, Any]:
    """meta/info.json, checked: codebase_version v3.x, fps, features, data_path (and video_path for videos)."""
    if not root.is_dir():
        raise UserError(f"{root}: no such directory; expected a LeRobot v3.0 dataset directory")
    path = root / "meta" / "info.json"
    if not path.is_file():
        raise UserError(f"{path}: missing; expected a LeRobot v3.0 dataset (meta/info.json, data/, meta/episodes/)")
    try:
        info = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise UserError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
    if not isinstance(info, dict):
        raise UserError(f"{path}: expected a JSON object")
    version = info.get("codebase_version")
    if not isinstance(version, str) or not version.startswith("v3."):
        hint = " (convert it with LeRobot's convert_dataset_v21_to_v30 first)" if str(version).startswith("v2") else ""
        raise UserError(f"{path}: codebase_version {version}: unsupported; expected {CODEBASE_VERSION}{hint}")
    fps = info.get("fps")
    if isinstance(fps, bool) or not isinstance(fps, (int, float)) or not fps > 0:
        raise UserError(f"{path}: fps: {fps!r}; expected a positive number")
    features = info.get("features")
    if not isinstance(features, dict) or not features:
        raise UserError(f"{path}: features: missing or empty; expected {{name: {{dtype, shape, names}}}}")
    for name, ft in features.items():
        if not isinstance(ft, dict) or "dtype" not in ft or not isinstance(ft.get("shape"), (list, tuple)):
            raise UserError(f"{path}: features.{name}: expected {{dtype, shape, names}}")
    if not isinstance(info.get("data_path"), str):
        raise UserError(f"{path}: data_path: missing; expected a template like {DATA_PATH}")
    if any(ft["dtype"] == "video" for ft in features.values()) and not isinstance(info.get("video_path"), str):
        raise UserError(f"{path}: video_path: missing; expected a template like {VIDEO_PATH} (the dataset has video features)")
    return info


def _parquet_files(directory: Path) -> list[Path]:
    return sorted(directory.glob("*/*.parquet"))


def read_episodes(root: Path, video_keys: list[str]) -> list[dict[str, Any]]:
    """meta/episodes/*/*.parquet as one dict per episode (without the stats/ columns), by episode_index."""
    import pyarrow.parquet as pq

    files = _parquet_files(root / "meta" / "episodes")
    if not files:
        raise UserError(f"{root / 'meta' / 'episodes'}: no parquet files; expected meta/episodes/chunk-*/file-*.parquet")
    need = ["episode_index", "length", "data/chunk_index", "data/file_index", "tasks"]
    for key in video_keys:
        need += [f"videos/{key}/{c}" for c in ("chunk_index", "file_index", "from_timestamp")]
    episodes = []
    for f in files:
        try:
            schema = pq.read_schema(f)
        except Exception as exc:  # pyarrow raises several types for a damaged file
            raise UserError(f"{f}: not a readable parquet file ({exc})") from None
        missing = [c for c in need if c not in schema.names]
        if missing:
            raise UserError(f"{f}: column {missing[0]} missing; expected LeRobot v3.0 episode metadata ({', '.join(need)})")
        columns = [c for c in schema.names if not c.startswith("stats/")]
        episodes += pq.read_table(f, columns=columns).to_pylist()
    episodes.sort(key=lambda e: e["episode_index"])
    indices = [e["episode_index"] for e in episodes]
    if len(set(indices)) != len(indices):
        raise UserError(f"{root / 'meta' / 'episodes'}: episode_index values repeat; expected each episode once")
    for e in episodes:
        if not isinstance(e["length"], int) or e["length"] <= 0:
            raise UserError(f"{root / 'meta' / 'episodes'}: episode {e['episode_index']}: length {e['length']!r}; expected > 0")
    return episodes


def _store_key(feature: str, known: dict[str, str]) -> str:
    if feature in known:
        return known[feature]
    for prefix in (CAMERA_PREFIX, OBS_PREFIX):
        if feature.startswith(prefix) and len(feature) > len(prefix):
            return feature[len(prefix):]
    return feature


def _plan_import(root: Path, info: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """{feature: {"key", "kind" (numeric|image|video), "dtype", "shape"}} for the features that become keys."""
    extra = info.get("robolearn") if isinstance(info.get("robolearn"), dict) else {}
    known = extra.get("keys", {}) if isinstance(extra.get("keys"), dict) else {}
    shapes = extra.get("shapes", {}) if isinstance(extra.get("shapes"), dict) else {}
    plan: dict[str, dict[str, Any]] = {}
    owners: dict[str, str] = {}
    for name, ft in info["features"].items():
        dtype, shape = ft["dtype"], tuple(ft["shape"])
        if name in BOOKKEEPING:
            continue
        if dtype in ("video", "image"):
            kind = dtype
        elif dtype in NUMERIC_DTYPES:
            kind = "numeric"
        else:
            log.warning("%s: feature %s of dtype %s: not imported (robolearn stores numbers and frames)", root, name, dtype)
            continue
        key = _store_key(name, known)
        if not key or "/" in key or key.startswith("."):
            raise UserError(f"{root / 'meta' / 'info.json'}: feature {name!r}: cannot be a store key ({key!r})")
        if key in owners:
            raise UserError(f"{root / 'meta' / 'info.json'}: features {owners[key]!r} and {name!r} both become store key {key!r}")
        owners[key] = name
        step_shape = tuple(shapes[key]) if key in shapes else (() if shape == (1,) else shape)
        plan[name] = {"key": key, "kind": kind, "dtype": dtype, "shape": shape, "step_shape": step_shape}
    if not plan:
        raise UserError(f"{root / 'meta' / 'info.json'}: features: nothing to import (no numeric, image or video features)")
    return plan


def _column_array(column, n: int, dtype: str, shape: tuple, where: str) -> np.ndarray:
    """A parquet column of n rows as an (n, *shape) array: fast paths for scalars and fixed-size lists."""
    import pyarrow as pa

    column = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    np_dtype = np.dtype(dtype)
    try:
        if pa.types.is_fixed_size_list(column.type) and not pa.types.is_nested(column.type.value_type) and column.null_count == 0:
            values = column.flatten().to_numpy(zero_copy_only=False)
        elif not pa.types.is_nested(column.type) and column.null_count == 0:
            values = column.to_numpy(zero_copy_only=False)
        else:
            values = np.asarray(column.to_pylist(), dtype=np_dtype)
        return np.ascontiguousarray(values.astype(np_dtype, copy=False).reshape((n,) + tuple(shape)))
    except (ValueError, TypeError) as exc:
        raise UserError(f"{where}: values do not fit the feature's dtype {dtype} and shape {list(shape)} ({exc})") from None


def _decode_pngs(column, root: Path, shape: tuple, where: str) -> np.ndarray:
    """An "image" feature's {bytes, path} structs as (n, H, W, C) uint8 frames."""
    from PIL import Image

    frames = []
    for i, cell in enumerate(column.to_pylist()):
        data = cell.get("bytes") if isinstance(cell, dict) else None
        if data is None:
            rel = cell.get("path") if isinstance(cell, dict) else None
            if not rel or not (root / rel).is_file():
                raise UserError(f"{where}: row {i}: no image bytes and no readable path; expected PNG bytes in the parquet row")
            data = (root / rel).read_bytes()
        try:
            with Image.open(io.BytesIO(data)) as img:
                frame = np.asarray(img)
        except Exception as exc:  # PIL raises several types for a damaged image
            raise UserError(f"{where}: row {i}: not a readable image ({exc})") from None
        frames.append(frame[..., None] if frame.ndim == 2 else frame)
    out = np.stack(frames)
    if out.dtype != np.uint8:
        raise UserError(f"{where}: images of dtype {out.dtype}; expected 8-bit images")
    return out


def _decode_video(path: Path, start_s: float, timestamps: np.ndarray, fps: float, where: str) -> np.ndarray:
    """The frames of one episode: for each timestamp t the frame shown at start_s + t (within half a frame)."""
    import av

    targets = start_s + np.asarray(timestamps, dtype=np.float64)
    tol = 0.5 / fps
    lo, hi = float(targets.min()) - tol, float(targets.max()) + tol
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            # FFmpeg seeks to a keyframe by decode time; with B-frames that keyframe can be shown after `lo`, so
            # seek a second early, and to the start if the episode's first frame was still missed
            for seek_s in (max(lo - 1.0, 0.0), 0.0):
                frames, times = [], []
                container.seek(int(seek_s / float(stream.time_base)), backward=True, any_frame=False, stream=stream)
                for frame in container.decode(stream):
                    if frame.pts is None:
                        continue
                    t = float(frame.pts * frame.time_base)
                    if t < lo:
                        continue
                    if t > hi:
                        break
                    frames.append(frame.to_ndarray(format="rgb24"))
                    times.append(t)
                if (times and min(times) <= lo + 2 * tol) or seek_s == 0.0:
                    break
    except (av.error.FFmpegError, IndexError) as exc:
        raise UserError(f"{path}: not a readable video ({exc})") from None
    # the decoded frame nearest each target time (an episode's targets x its decoded frames: small)
    times_arr = np.asarray(times if times else [np.inf])
    pick = np.abs(targets[:, None] - times_arr[None, :]).argmin(axis=1)
    ok = np.abs(times_arr[pick] - targets) <= tol
    if not ok.all():
        first = int(np.argmin(ok))
        raise UserError(
            f"{path}: {where}: {int((~ok).sum())} of its {len(targets)} frames missing (first: step {first} at "
            f"{targets[first]:.3f} s); the video is shorter than its episode"
        )
    return np.stack([frames[i] for i in pick])


def _lerobot_episodes(root: Path, info: dict, plan: dict, episodes: list[dict]) -> Iterator[tuple[str, tuple[dict, dict]]]:
    """(label, (data, meta)) per episode, reading each data file once."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    fps = float(info["fps"])
    columns = [name for name, p in plan.items() if p["kind"] != "video"] + ["episode_index", "timestamp", "frame_index"]
    current, table, episode_col = None, None, None
    for ep in episodes:
        e = ep["episode_index"]
        file_id = (ep["data/chunk_index"], ep["data/file_index"])
        path = root / info["data_path"].format(chunk_index=file_id[0], file_index=file_id[1])
        if file_id != current:
            table = pq.read_table(path, columns=columns)
            episode_col = table["episode_index"]
            current = file_id
        rows = table.filter(pc.equal(episode_col, e))
        if rows.num_rows != ep["length"]:
            raise UserError(f"{path}: episode {e} has {rows.num_rows} rows; meta/episodes says length {ep['length']}")
        order = np.argsort(rows["frame_index"].to_numpy(), kind="stable")
        rows = rows.take(order)
        timestamps = rows["timestamp"].to_numpy().astype(np.float64)
        data: dict[str, np.ndarray] = {}
        for name, p in plan.items():
            where = f"{path}: {name}"
            if p["kind"] == "numeric":
                data[p["key"]] = _column_array(rows[name], rows.num_rows, p["dtype"], p["step_shape"], where)
            elif p["kind"] == "image":
                data[p["key"]] = _decode_pngs(rows[name].combine_chunks(), root, p["shape"], where)
            else:
                vpath = root / info["video_path"].format(video_key=name, chunk_index=ep[f"videos/{name}/chunk_index"],
                                                         file_index=ep[f"videos/{name}/file_index"])
                frames = _decode_video(vpath, float(ep[f"videos/{name}/from_timestamp"]), timestamps, fps, f"episode {e}")
                shape = p["shape"]  # (H, W, C) as LeRobot records it, or (C, H, W) in some datasets
                want = tuple(shape[:2]) if len(shape) == 3 and shape[-1] in (1, 3, 4) else tuple(shape[1:3])
                if frames.shape[1:3] != want:
                    raise UserError(f"{vpath}: frames of {frames.shape[1]}x{frames.shape[2]} (height x width); "
                                    f"meta/info.json gives {name} the shape {list(shape)}")
                data[p["key"]] = frames
        tasks = [t for t in (ep.get("tasks") or []) if isinstance(t, str)]
        meta: dict[str, Any] = {"instruction": "; ".join(tasks), "lerobot_episode": int(e)}
        for column, value in ep.items():
            if column.startswith("robolearn/") and value is not None:
                meta[column.removeprefix("robolearn/")] = value
        yield f"episode {e}", (data, meta)


def _check_files(root: Path, info: dict, plan: dict, episodes: list[dict]) -> None:
    """Before writing: every data file exists with as many rows as its episodes' lengths; every video file exists."""
    import pyarrow.parquet as pq

    per_file: dict[tuple[int, int], list[dict]] = {}
    for ep in episodes:
        per_file.setdefault((ep["data/chunk_index"], ep["data/file_index"]), []).append(ep)
    for (chunk, file), eps in per_file.items():
        path = root / info["data_path"].format(chunk_index=chunk, file_index=file)
        if not path.is_file():
            raise UserError(f"{path}: missing; meta/episodes puts episodes {eps[0]['episode_index']}..{eps[-1]['episode_index']} in it")
        try:
            meta = pq.read_metadata(path)
        except Exception as exc:
            raise UserError(f"{path}: not a readable parquet file ({exc})") from None
        expected = sum(ep["length"] for ep in eps)
        if meta.num_rows != expected:
            raise UserError(f"{path}: {meta.num_rows} rows; meta/episodes says {expected} "
                            f"(episodes {eps[0]['episode_index']}..{eps[-1]['episode_index']})")
        names = set(meta.schema.to_arrow_schema().names)
        missing = [n for n, p in plan.items() if p["kind"] != "video" and n not in names]
        missing += [n for n in ("episode_index", "timestamp", "frame_index") if n not in names]
        if missing:
            raise UserError(f"{path}: column {missing[0]} missing; meta/info.json lists it as a feature")
    for name, p in plan.items():
        if p["kind"] != "video":
            continue
        for ep in episodes:
            vpath = root / info["video_path"].format(video_key=name, chunk_index=ep[f"videos/{name}/chunk_index"],
                                                     file_index=ep[f"videos/{name}/file_index"])
            if not vpath.is_file():
                raise UserError(f"{vpath}: missing; meta/episodes puts episode {ep['episode_index']}'s {name} frames in it")


def import_lerobot(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    overwrite: bool = False,
    progress: bool = False,
    image_codecs: str | list[str] | dict[str, str] | None = None,
) -> str:
    """Import the local LeRobot v3.0 dataset directory `src` into a new store at `dst`; returns `dst`.

    `image_codecs`: the new store's camera codecs, as `robolearn data import --image-codec` takes them."""
    from tqdm.auto import tqdm

    from robolearn.datasets.codecs import parse_image_codec_options
    from robolearn.datasets.importers import append_labelled
    from robolearn.datasets.store import AtomicStoreWriter, store_exists
    from robolearn.datasets.validate import validate_store

    root = Path(src)
    info = read_info(root)
    image_codecs = parse_image_codec_options(image_codecs, "--image-codec")
    if store_exists(dst) and not overwrite:
        raise UserError(f"{dst}: already exists; refusing to overwrite (pass --overwrite)")
    plan = _plan_import(root, info)
    episodes = read_episodes(root, [n for n, p in plan.items() if p["kind"] == "video"])
    _check_files(root, info, plan, episodes)
    extra = info.get("robolearn") if isinstance(info.get("robolearn"), dict) else {}
    attrs = dict(extra.get("attrs", {})) if isinstance(extra.get("attrs"), dict) else {}
    for k in ("format", "format_version", "stats", "source", "image_codecs", "image_codec_default", "frames_per_shard"):
        attrs.pop(k, None)
    attrs.update({
        "source": {"format": "lerobot", "path": str(root.resolve()), "codebase_version": info["codebase_version"]},
        "fps": info["fps"],
        "robot_type": info.get("robot_type"),
        "feature_names": {p["key"]: info["features"][n].get("names") for n, p in plan.items()},
        "lerobot_features": {p["key"]: n for n, p in plan.items()},
    })  # fmt: skip
    with AtomicStoreWriter(dst, attrs=attrs, overwrite=overwrite, image_codecs=image_codecs) as store:
        bar = tqdm(_lerobot_episodes(root, info, plan, episodes), total=len(episodes), desc=f"import {root.name}",
                   unit="ep", disable=None if progress else True)
        append_labelled(store, bar, root, image_codecs)
        store.compute_stats()
        problems = validate_store(store.path)
        if problems:
            raise UserError(f"{root}: imported store fails validation: {problems[0]}")
        log.info("%s: imported %d episodes, %d steps into %s", root, store.n_episodes, store.n_steps, dst)
    return str(dst)


# ====================================================================== writing a LeRobot dataset
def _stats(x: np.ndarray, image: bool) -> dict[str, np.ndarray]:
    """LeRobot's per-feature statistics: over steps per dimension, or per channel over pixels in [0, 1]."""
    if image:
        x = x[:, :: max(1, x.shape[1] // 150), :: max(1, x.shape[2] // 150)]  # at most ~150 px a side
        flat = x.reshape(-1, x.shape[-1]).astype(np.float64) / 255.0
    else:
        flat = x.reshape(len(x), -1).astype(np.float64)
    out = {"min": flat.min(0), "max": flat.max(0), "mean": flat.mean(0), "std": flat.std(0)}
    for q in QUANTILES:
        out[f"q{round(q * 100):02d}"] = np.quantile(flat, q, axis=0)
    out = {k: (v.reshape(-1, 1, 1) if image else v) for k, v in out.items()}
    out["count"] = np.array([len(x)])
    return out


def _aggregate(stats: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Episode statistics merged: min/max exact, mean and std pooled, quantiles averaged weighted by count."""
    counts = np.array([s["count"][0] for s in stats], dtype=np.float64)
    w = counts / counts.sum()
    mean = sum(wi * s["mean"] for wi, s in zip(w, stats))
    var = sum(wi * (s["std"] ** 2 + (s["mean"] - mean) ** 2) for wi, s in zip(w, stats))
    out = {"min": np.min([s["min"] for s in stats], axis=0), "max": np.max([s["max"] for s in stats], axis=0),
           "mean": mean, "std": np.sqrt(var), "count": np.array([int(counts.sum())])}  # fmt: skip
    for q in QUANTILES:
        name = f"q{round(q * 100):02d}"
        out[name] = sum(wi * s[name] for wi, s in zip(w, stats))
    return out


def _tolist(stats: dict[str, np.ndarray]) -> dict[str, Any]:
    return {k: np.asarray(v).tolist() for k, v in stats.items()}


class _VideoWriter:
    """One camera's mp4 files: episodes back to back, a new file past VIDEO_FILE_MB."""

    def __init__(self, root: Path, feature: str, fps: int, vcodec: str, width: int, height: int):
        self.root, self.feature, self.fps, self.vcodec = root, feature, fps, vcodec
        self.width, self.height = width, height
        self.chunk, self.file = 0, 0
        self.container = self.stream = None
        self.frames_in_file = 0

    def path(self) -> Path:
        return self.root / VIDEO_PATH.format(video_key=self.feature, chunk_index=self.chunk, file_index=self.file)

    def _open(self) -> None:
        import av

        os.environ.setdefault("SVT_LOG", "1")  # SVT-AV1 prints its configuration to stderr unless told errors only
        path = self.path()
        path.parent.mkdir(parents=True, exist_ok=True)
        self.container = av.open(str(path), "w")
        self.stream = self.container.add_stream(self.vcodec, rate=self.fps, options=dict(VIDEO_CODECS[self.vcodec]))
        self.stream.width, self.stream.height, self.stream.pix_fmt = self.width, self.height, "yuv420p"
        self.frames_in_file = 0

    def close(self) -> None:
        if self.container is not None:
            for packet in self.stream.encode():
                self.container.mux(packet)
            self.container.close()
            self.container = None

    def write_episode(self, frames: np.ndarray) -> dict[str, Any]:
        import av

        path = self.path()  # (the muxer creates the file at its first packet; the encoder may hold a few back)
        if self.container is not None and path.is_file() and path.stat().st_size >= VIDEO_FILE_MB * 1024 * 1024:
            self.close()
            self.chunk, self.file = _next_file(self.chunk, self.file)
        if self.container is None:
            self._open()
        start = self.frames_in_file
        for frame in frames:
            vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
            vf.pts, vf.time_base = self.frames_in_file, Fraction(1, self.fps)
            for packet in self.stream.encode(vf):
                self.container.mux(packet)
            self.frames_in_file += 1
        key = f"videos/{self.feature}"
        return {f"{key}/chunk_index": self.chunk, f"{key}/file_index": self.file,
                f"{key}/from_timestamp": start / self.fps, f"{key}/to_timestamp": self.frames_in_file / self.fps}  # fmt: skip


def _next_file(chunk: int, file: int) -> tuple[int, int]:
    return (chunk + 1, 0) if file == CHUNKS_SIZE - 1 else (chunk, file + 1)


def _video_info(path: Path) -> dict[str, Any]:
    import av

    with av.open(str(path)) as container:
        s = container.streams.video[0]
        return {"video.height": s.height, "video.width": s.width, "video.codec": s.codec_context.codec.canonical_name,
                "video.pix_fmt": s.pix_fmt, "video.is_depth_map": False, "video.fps": int(s.base_rate or s.average_rate),
                "video.channels": 3, "has_audio": False}  # fmt: skip


def _plan_export(store, action_key: str, vcodec: str | None) -> dict[str, dict[str, Any]]:
    """{store key: {"feature", "kind", "dtype", "shape", "step_shape"}} for every exportable key."""
    from robolearn.datasets.store import is_image_array

    plan = {}
    names = store.attrs.get("feature_names") if isinstance(store.attrs.get("feature_names"), dict) else {}
    for key in store.keys:
        arr = store.array(key)
        step_shape = tuple(arr.shape[1:])
        if is_image_array(arr):
            h, w, c = step_shape
            video = vcodec is not None and c == 3 and h % 2 == 0 and w % 2 == 0
            if not video:
                log.info("%s: camera %s (%dx%dx%d) exported as PNG images, not video (%s)", store.path, key, h, w, c,
                         "no video codec" if vcodec is None else "video needs 3 channels and even sizes")
            plan[key] = {"feature": CAMERA_PREFIX + key, "kind": "video" if video else "image", "dtype": "video" if video else "image",
                         "shape": [h, w, c], "step_shape": step_shape, "names": ["height", "width", "channels"]}  # fmt: skip
        elif str(arr.dtype) in NUMERIC_DTYPES:
            size = int(np.prod(step_shape, dtype=np.int64)) if step_shape else 1
            key_names = names.get(key)
            plan[key] = {"feature": key if key == action_key else OBS_PREFIX + key, "kind": "numeric", "dtype": str(arr.dtype),
                         "shape": [size], "step_shape": step_shape,
                         "names": key_names if isinstance(key_names, list) and len(key_names) == size else None}  # fmt: skip
        else:
            log.warning("%s: data/%s of dtype %s: not exported (LeRobot features are numbers and frames)", store.path, key, arr.dtype)
    features = [p["feature"] for p in plan.values()]
    clash = sorted({f for f in features if features.count(f) > 1} | set(features) & set(BOOKKEEPING))
    if clash:
        raise UserError(f"{store.path}: keys map onto the same LeRobot feature {clash[0]!r}; rename one of them")
    if not plan:
        raise UserError(f"{store.path}: no numeric or camera keys to export")
    return plan


def _arrow_type(p: dict[str, Any]):
    import pyarrow as pa

    if p["kind"] == "image":
        return pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    value = pa.from_numpy_dtype(np.dtype(p["dtype"]))
    return value if p["shape"] == [1] else pa.list_(value, p["shape"][0])


def _hf_feature(p: dict[str, Any]) -> dict[str, Any]:
    """The `datasets` feature description LeRobot's parquet files carry in their "huggingface" metadata."""
    if p["kind"] == "image":
        return {"_type": "Image"}
    value = {"dtype": p["dtype"], "_type": "Value"}
    return value if p["shape"] == [1] else {"feature": value, "length": p["shape"][0], "_type": "List"}


def _png(frame: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(frame[..., 0] if frame.shape[-1] == 1 else frame).save(buf, format="PNG", compress_level=6)
    return buf.getvalue()


def _episode_table(data: dict, plan: dict, schema, episode: int, start_index: int, task_index: int, fps: int):
    import pyarrow as pa

    n = len(next(iter(data.values())))
    columns = []
    for key, p in plan.items():
        if p["kind"] == "video":
            continue
        if p["kind"] == "image":
            columns.append(pa.array([{"bytes": _png(f), "path": None} for f in data[key]], type=_arrow_type(p)))
            continue
        flat = np.ascontiguousarray(data[key]).reshape(n, -1)
        if p["shape"] == [1]:
            columns.append(pa.array(flat[:, 0]))
        else:
            columns.append(pa.FixedSizeListArray.from_arrays(pa.array(flat.reshape(-1)), p["shape"][0]))
    frame_index = np.arange(n, dtype=np.int64)
    columns += [pa.array((frame_index / fps).astype(np.float32)), pa.array(frame_index),
                pa.array(np.full(n, episode, np.int64)), pa.array(np.arange(start_index, start_index + n, dtype=np.int64)),
                pa.array(np.full(n, task_index, np.int64))]  # fmt: skip
    return pa.Table.from_arrays(columns, schema=schema)


def _tasks_table(tasks: dict[str, int]):
    """meta/tasks.parquet as pandas writes a DataFrame indexed by the task string (what LeRobot reads back)."""
    import pyarrow as pa

    pandas_meta = {
        "index_columns": ["__index_level_0__"],
        "column_indexes": [{"name": None, "field_name": None, "pandas_type": "unicode", "numpy_type": "object",
                            "metadata": {"encoding": "UTF-8"}}],
        "columns": [{"name": "task_index", "field_name": "task_index", "pandas_type": "int64", "numpy_type": "int64", "metadata": None},
                    {"name": None, "field_name": "__index_level_0__", "pandas_type": "unicode", "numpy_type": "object", "metadata": None}],
        "attributes": {}, "creator": {"library": "robolearn", "version": "1"}, "pandas_version": "2.2.0",
    }  # fmt: skip
    schema = pa.schema([("task_index", pa.int64()), ("__index_level_0__", pa.string())],
                       metadata={"pandas": json.dumps(pandas_meta)})
    order = sorted(tasks.items(), key=lambda kv: kv[1])
    return pa.Table.from_arrays([pa.array([i for _, i in order], pa.int64()), pa.array([t for t, _ in order], pa.string())],
                                schema=schema)


def _json_safe(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def export_lerobot(
    store_path: str | os.PathLike,
    dst: str | os.PathLike,
    fps: float | None = None,
    vcodec: str | None = "libsvtav1",
    action_key: str = "action",
    robot_type: str | None = None,
    overwrite: bool = False,
    progress: bool = False,
) -> str:
    """Write the store at `store_path` as a LeRobot v3.0 dataset directory `dst`; returns `dst`.

    `vcodec`: libsvtav1 (LeRobot's default), h264 or hevc for RGB cameras, None for lossless PNG images."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from tqdm.auto import tqdm

    from robolearn.datasets.store import EpisodeStore
    from robolearn.datasets.validate import require_valid
    from robolearn.files import atomic_dir

    if vcodec is not None and vcodec not in VIDEO_CODECS:
        raise UserError(f"--vcodec {vcodec}: unknown; expected one of {', '.join(VIDEO_CODECS)} (LeRobot's video codecs)")
    target = Path(dst)
    if target.exists() and not overwrite:
        raise UserError(f"{dst}: already exists; refusing to overwrite (pass --overwrite)")
    if not target.parent.is_dir():
        raise UserError(f"{dst}: parent directory {target.parent} does not exist")
    require_valid(store_path, robolearn=True, values=True, stats=False)
    store = EpisodeStore.open(store_path)
    with store:
        rate = fps if fps is not None else store.attrs.get("fps")
        if rate is None:
            raise UserError(f"{store_path}: no fps (the store's attrs have no 'fps'); expected --fps N, the rate the "
                            "episodes were recorded at")
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not rate > 0 or float(rate) != round(float(rate)):
            raise UserError(f"{store_path}: fps {rate!r}: expected a positive whole number (LeRobot's fps is an integer)")
        rate = int(round(float(rate)))
        if not store.n_episodes:
            raise UserError(f"{store_path}: no episodes to export")
        if vcodec is not None:
            import av

            try:
                av.codec.Codec(vcodec, "w")
            except Exception:  # PyAV raises UnknownCodecError (a ValueError) or FFmpeg errors
                raise UserError(f"--vcodec {vcodec}: this PyAV ({av.__version__}) has no such encoder; pass another "
                                f"--vcodec ({', '.join(VIDEO_CODECS)}) or none") from None
        plan = _plan_export(store, action_key, vcodec)
        schema_fields = [pa.field(p["feature"], _arrow_type(p)) for p in plan.values() if p["kind"] != "video"]
        schema_fields += [pa.field("timestamp", pa.float32()), pa.field("frame_index", pa.int64()),
                          pa.field("episode_index", pa.int64()), pa.field("index", pa.int64()), pa.field("task_index", pa.int64())]  # fmt: skip
        hf = {p["feature"]: _hf_feature(p) for p in plan.values() if p["kind"] != "video"}
        for name, dtype in (("timestamp", "float32"), ("frame_index", "int64"), ("episode_index", "int64"),
                            ("index", "int64"), ("task_index", "int64")):  # fmt: skip
            hf[name] = {"dtype": dtype, "_type": "Value"}
        schema = pa.schema(schema_fields, metadata={"huggingface": json.dumps({"info": {"features": hf}})})
        store_attrs = {k: v for k, v in store.attrs.items() if k not in ("stats", "format", "format_version")}
        default_task = store.attrs.get("task") if isinstance(store.attrs.get("task"), str) else ""
        meta_fields = store.meta_fields

        with atomic_dir(target) as tmp:
            tasks: dict[str, int] = {}
            episode_rows, ep_stats = [], []
            videos: dict[str, _VideoWriter] = {}
            chunk, file, writer, file_bytes = 0, 0, None, 0
            index = 0
            try:
                bar = tqdm(range(store.n_episodes), desc=f"export {Path(str(store_path)).name}", unit="ep",
                           disable=None if progress else True)
                for i in bar:
                    data = store.get_episode(i, list(plan))
                    meta = store.episode_meta(i)
                    n = len(next(iter(data.values())))
                    instruction = meta.get("instruction") if isinstance(meta.get("instruction"), str) else ""
                    task = instruction or default_task
                    task_index = tasks.setdefault(task, len(tasks))
                    table = _episode_table(data, plan, schema, i, index, task_index, rate)
                    if writer is not None and file_bytes + table.nbytes > DATA_FILE_MB * 1024 * 1024:
                        writer.close()
                        writer, file_bytes = None, 0
                        chunk, file = _next_file(chunk, file)
                    if writer is None:
                        path = tmp / DATA_PATH.format(chunk_index=chunk, file_index=file)
                        path.parent.mkdir(parents=True, exist_ok=True)
                        writer = pq.ParquetWriter(path, schema, compression="snappy")
                    writer.write_table(table)
                    file_bytes += table.nbytes
                    row: dict[str, Any] = {"episode_index": i, "tasks": [task], "length": n,
                                           "data/chunk_index": chunk, "data/file_index": file,
                                           "dataset_from_index": index, "dataset_to_index": index + n}  # fmt: skip
                    stats = {}
                    for key, p in plan.items():
                        if p["kind"] == "video":
                            if key not in videos:
                                h, w, _ = p["shape"]
                                videos[key] = _VideoWriter(tmp, p["feature"], rate, vcodec, w, h)
                            row.update(videos[key].write_episode(data[key]))
                        stats[p["feature"]] = _stats(data[key].reshape((n, -1)) if p["kind"] == "numeric" else data[key],
                                                     image=p["kind"] != "numeric")
                    stats["timestamp"] = _stats((np.arange(n) / rate)[:, None], image=False)
                    stats["frame_index"] = _stats(np.arange(n)[:, None], image=False)
                    stats["episode_index"] = _stats(np.full((n, 1), i), image=False)
                    stats["index"] = _stats(np.arange(index, index + n)[:, None], image=False)
                    stats["task_index"] = _stats(np.full((n, 1), task_index), image=False)
                    ep_stats.append(stats)
                    for feature, s in stats.items():
                        for name, value in s.items():
                            row[f"stats/{feature}/{name}"] = np.asarray(value).tolist()
                    row["meta/episodes/chunk_index"], row["meta/episodes/file_index"] = 0, 0
                    for field in meta_fields:
                        row[f"robolearn/{field}"] = meta.get(field)
                    episode_rows.append(row)
                    index += n
            finally:
                if writer is not None:
                    writer.close()
                for v in videos.values():
                    v.close()

            episodes_path = tmp / EPISODES_PATH.format(chunk_index=0, file_index=0)
            episodes_path.parent.mkdir(parents=True, exist_ok=True)
            pq.write_table(pa.Table.from_pylist(episode_rows), episodes_path, compression="snappy")
            pq.write_table(_tasks_table(tasks), tmp / "meta" / "tasks.parquet")
            features: dict[str, Any] = {}
            for key, p in plan.items():
                ft: dict[str, Any] = {"dtype": p["dtype"], "shape": p["shape"], "names": p["names"]}
                if p["kind"] == "video":
                    ft["info"] = _video_info(tmp / VIDEO_PATH.format(video_key=p["feature"], chunk_index=0, file_index=0))
                features[p["feature"]] = ft
            for name, dtype in (("timestamp", "float32"), ("frame_index", "int64"), ("episode_index", "int64"),
                                ("index", "int64"), ("task_index", "int64")):  # fmt: skip
                features[name] = {"dtype": dtype, "shape": [1], "names": None}
            info = {
                "codebase_version": CODEBASE_VERSION, "robot_type": robot_type or store.attrs.get("robot_type"),
                "total_episodes": store.n_episodes, "total_frames": index, "total_tasks": len(tasks),
                "chunks_size": CHUNKS_SIZE, "data_files_size_in_mb": DATA_FILE_MB, "video_files_size_in_mb": VIDEO_FILE_MB,
                "fps": rate, "splits": {"train": f"0:{store.n_episodes}"}, "data_path": DATA_PATH,
                "video_path": VIDEO_PATH if videos else None, "features": features,
                "robolearn": {
                    "keys": {p["feature"]: key for key, p in plan.items()},
                    "shapes": {key: list(p["step_shape"]) for key, p in plan.items()},
                    "attrs": _json_safe(store_attrs),
                    "store": str(store_path),
                },
            }  # fmt: skip
            (tmp / "meta" / "info.json").write_text(json.dumps(info, indent=4, ensure_ascii=False))
            all_stats = {f: _tolist(_aggregate([s[f] for s in ep_stats])) for f in ep_stats[0]}
            (tmp / "meta" / "stats.json").write_text(json.dumps(all_stats, indent=4))
        log.info("%s: exported %d episodes, %d frames to %s", store_path, store.n_episodes, index, dst)
    return str(dst)


def describe_export(dst: str | os.PathLike) -> str:
    """One line on what `export_lerobot` wrote (for the CLI)."""
    info = json.loads((Path(dst) / "meta" / "info.json").read_text())
    cams = [f"{k} ({ft['info']['video.codec']} mp4)" if ft["dtype"] == "video" else f"{k} (PNG)"
            for k, ft in info["features"].items() if ft["dtype"] in ("video", "image")]
    return (f"{info['total_episodes']} episodes, {info['total_frames']} frames at {info['fps']} fps, "
            f"{info['total_tasks']} task(s); cameras: {', '.join(cams) or 'none'}")


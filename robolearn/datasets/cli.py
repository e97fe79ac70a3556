"""`robolearn data <info|validate|repair|import|stats|view>`: look after episode stores.

    robolearn data info STORE [--json]             what is in a store (keys, shapes, chunking, stats, meta)
    robolearn data validate STORE [--quick]        every problem, one line each; exit 1 if any
    robolearn data repair STORE --out NEW          a new store of the episodes whose chunks all verify
    robolearn data import SRC DST [--format F]     diffusion_policy zarr / robomimic HDF5 / LeRobot v3.0 dir -> store
    robolearn data export STORE DST --format lerobot [--fps N] [--vcodec C]
                                                   store -> LeRobot v3.0 dataset directory (lerobot.py)
    robolearn data stats STORE [--json]            recompute and save per-key statistics
    robolearn data rechunk STORE [--out NEW] [--image-codec SPEC|KEY=SPEC ...] [--frames-per-shard F]
                                                   rewrite a store in format 2 (checksums, sharded cameras), atomically
    robolearn data view STORE --episode N --out ep.mp4 [--plot ep.png]
                                                   camera frames side by side + a plot of the actions

Every command first checks the store's raw structure and values (see `validate.py`) and
refuses a damaged store with one line naming the key, rather than reading around the damage.
Heavy imports (zarr, imageio, matplotlib) happen inside the commands so `--help` stays fast.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
from pathlib import Path
from typing import Any

FORMATS = ("diffusion_policy", "robomimic", "lerobot")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "data",
        help="inspect, validate, import and view episode stores",
        description="Inspect, validate, import and view episode stores (zarr).",
    )
    p.set_defaults(func=lambda args: _print_help(p))
    sub = p.add_subparsers(dest="data_command", metavar="SUBCOMMAND")

    q = sub.add_parser("info", help="summary of a store", description="Episodes, keys, shapes, chunking, stats, meta.")
    q.add_argument("store", help="store path (directory, .zip or fsspec URL)")
    q.add_argument("--json", action="store_true", help="machine-readable output")
    q.set_defaults(func=run_info)

    q = sub.add_parser("validate", help="check a store", description="Read and decode every chunk of every array; print "
                       "one line per problem (array, chunk, episodes); exit 1 if any.")
    q.add_argument("store", help="store path")
    q.add_argument("--quick", action="store_true", help="structure only: metadata, shapes, episode ends, chunk files, "
                   "shard indexes (no decoding)")
    q.set_defaults(func=run_validate)

    q = sub.add_parser("repair", help="copy the intact episodes of a damaged store",
                       description="Write a new store with every episode whose chunks all verify, listing what was "
                       "dropped; the damaged store is never modified.")
    q.add_argument("store", help="the damaged store (read only)")
    q.add_argument("--out", required=True, help="the new store (must not exist)")
    q.add_argument("--drop-key", action="append", default=[], metavar="KEY",
                   help="leave out this data key (or meta/episodes/FIELD) instead of the episodes its damage touches; "
                   "repeatable")
    q.set_defaults(func=run_repair)

    q = sub.add_parser("import", help="import a peer dataset", description="Import a diffusion_policy zarr, robomimic HDF5 or local LeRobot v3.0 dataset directory.")
    q.add_argument("src", help="source dataset (zarr directory/.zip or .hdf5 file)")
    q.add_argument("dst", help="destination store (must not exist unless --overwrite)")
    q.add_argument("--format", choices=FORMATS, default=None, help="source format (guessed from the path if omitted)")
    q.add_argument("--overwrite", action="store_true", help="replace an existing destination")
    q.add_argument("--image-codec", action="append", metavar="SPEC|KEY=SPEC",
                   help="camera codec of the new store: blosc (lossless) or webp|jpeg|jpegxl|avif|jpeg2k[:QUALITY], for "
                   "every camera (SPEC) or one key (KEY=SPEC, repeatable); default: the store default")
    q.set_defaults(func=run_import)

    q = sub.add_parser("export", help="export a store for a peer", description="Write a store as a LeRobot v3.0 dataset "
                       "directory (parquet + mp4, readable by LeRobotDataset). Atomic: built beside DST, then renamed.")
    q.add_argument("store", help="store path")
    q.add_argument("dst", help="destination directory (must not exist unless --overwrite)")
    q.add_argument("--format", choices=("lerobot",), required=True, help="destination format")
    q.add_argument("--fps", type=int, default=None, help="frame rate of the episodes (default: the store's fps attr)")
    q.add_argument("--vcodec", choices=("libsvtav1", "h264", "hevc", "none"), default="libsvtav1",
                   help="RGB camera video codec (LeRobot's default libsvtav1); none: lossless PNG frames in the parquet rows")
    q.add_argument("--action-key", default="action", help="data key that becomes LeRobot's `action`")
    q.add_argument("--overwrite", action="store_true", help="replace an existing destination")
    q.set_defaults(func=run_export)

    q = sub.add_parser("stats", help="recompute statistics", description="Recompute and save per-key statistics.")
    q.add_argument("store", help="store path (a local directory or URL; not a .zip)")
    q.add_argument("--json", action="store_true", help="machine-readable output")
    q.set_defaults(func=run_stats)

    q = sub.add_parser("rechunk", help="rewrite a store in the current format",
                       description="Rewrite a store in format 2 (crc32c checksums, cameras sharded), in place or at --out, "
                       "optionally with other camera codecs. Atomic: built beside, then renamed; on any error nothing changes.")
    q.add_argument("store", help="store path (a local directory; with --out also a .zip or URL)")
    q.add_argument("--out", default=None, help="write the new store here instead of replacing STORE (must not exist)")
    q.add_argument("--image-codec", action="append", metavar="SPEC|KEY=SPEC",
                   help="camera codec: blosc (lossless) or webp|jpeg|jpegxl|avif|jpeg2k[:QUALITY], for every camera "
                   "(SPEC) or one key (KEY=SPEC, repeatable); default: each camera keeps its codec")
    q.add_argument("--frames-per-shard", type=int, default=None, help="camera frames per shard file (default: the "
                   "store's, else the built-in default)")
    q.set_defaults(func=run_rechunk)

    q = sub.add_parser("view", help="video + action plot of an episode", description="Write an mp4 of the camera frames and a PNG plot of the actions.")
    q.add_argument("store", help="store path")
    q.add_argument("--episode", type=int, default=0, help="episode index (negative counts from the end)")
    q.add_argument("--out", required=True, help="output video (.mp4)")
    q.add_argument("--plot", default=None, help="output plot (default: --out with .png)")
    q.add_argument("--fps", type=float, default=10.0, help="video frame rate")
    q.add_argument("--action-key", default="action", help="data key to plot")
    q.set_defaults(func=run_view)


def _print_help(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


def _open_checked(path: str, mode: str = "r"):
    """The store at `path`, after its raw structure and values passed validation."""
    from robolearn.datasets.store import EpisodeStore
    from robolearn.datasets.validate import require_valid

    require_valid(path, robolearn=True, values=True, stats=False)
    return EpisodeStore.open(path, mode=mode)


# ---------------------------------------------------------------------- info
def _codec_names(arr) -> list[str]:
    names = []
    for codec in getattr(arr, "compressors", ()) or ():
        cname = getattr(codec, "cname", None)
        cname = getattr(cname, "value", cname)
        name = getattr(codec, "codec_id", None) or type(codec).__name__.removesuffix("Codec").lower()
        names.append(f"{name}/{cname}" if cname else name)
    return names


def store_info(store) -> dict[str, Any]:
    """A JSON-able summary of an open store."""
    from robolearn.datasets.store import is_image_array

    lengths = store.episode_lengths
    keys = {}
    for key in store.keys:
        arr = store.array(key)
        keys[key] = {
            "shape": [store.n_steps, *arr.shape[1:]],
            "dtype": str(arr.dtype),
            "chunks": list(arr.chunks),
            "compressors": _codec_names(arr),
            "image": bool(is_image_array(arr)),
            "bytes_stored": int(arr.nbytes_stored()),
        }
    meta = {f: str(store.meta_column(f).dtype) for f in store.meta_fields}
    attrs = {k: v for k, v in store.attrs.items() if k not in ("stats", "image_codecs", "image_codec_default", "frames_per_shard")}
    return {
        "path": store.path,
        "format": attrs.pop("format", None),
        "format_version": attrs.pop("format_version", None),
        "layout": {k: store.attrs[k] for k in ("image_codecs", "frames_per_shard") if k in store.attrs},
        "n_episodes": store.n_episodes,
        "n_steps": store.n_steps,
        "episode_length": {
            "min": int(lengths.min()) if len(lengths) else 0,
            "mean": float(lengths.mean()) if len(lengths) else 0.0,
            "max": int(lengths.max()) if len(lengths) else 0,
        },
        "bytes_stored": store.nbytes_stored(),
        "keys": keys,
        "stats": store.stats,
        "meta_fields": meta,
        "attrs": attrs,
    }


def _human_bytes(n: int) -> str:
    if n < 0:
        return "unknown"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


def _short(values: list[float]) -> str:
    import numpy as np

    return np.array2string(np.asarray(values), precision=3, threshold=6, edgeitems=2, max_line_width=1000, suppress_small=True)


def _attr_summary(value: Any) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= 100 else text[:97] + "..."


def print_info(info: dict[str, Any]) -> None:
    length = info["episode_length"]
    print(f"{info['path']}  ({info['format']} v{info['format_version']})")
    print(f"  episodes: {info['n_episodes']}  steps: {info['n_steps']}  "
          f"episode length min/mean/max: {length['min']}/{length['mean']:.1f}/{length['max']}")
    print(f"  size on disk: {_human_bytes(info['bytes_stored'])}")
    print("  keys:")
    width = max((len(k) for k in info["keys"]), default=0)
    for key, k in info["keys"].items():
        shape = "(" + ", ".join(map(str, k["shape"])) + ")"
        kind = "  image" if k["image"] else ""
        print(f"    {key:<{width}}  {shape:<20} {k['dtype']:<8} chunks {tuple(k['chunks'])}  "
              f"{'+'.join(k['compressors']) or 'raw'}  {_human_bytes(k['bytes_stored'])}{kind}")
    print("  stats:" if info["stats"] else "  stats: none (run `robolearn data stats`)")
    for key, s in info["stats"].items():
        print(f"    {key:<{width}}  min {_short(s['min'])} max {_short(s['max'])} "
              f"mean {_short(s['mean'])} std {_short(s['std'])}")
    meta = ", ".join(f"{f} ({dtype})" for f, dtype in info["meta_fields"].items())
    print(f"  meta fields: {meta or 'none'}")
    print("  attrs:" if info["attrs"] else "  attrs: none")
    for key, value in info["attrs"].items():
        print(f"    {key}: {_attr_summary(value)}")


def run_info(args: argparse.Namespace) -> int:
    from robolearn.datasets.validate import stats_problems, open_raw_group

    with _open_checked(args.store) as store:
        info = store_info(store)
    stale = stats_problems(open_raw_group(args.store), info["n_steps"])
    info["stats_problems"] = stale
    if args.json:
        print(json.dumps(info, indent=2, default=str))
        return 0
    print_info(info)
    for problem in stale:
        print(f"  warning: {problem}")
    return 0


# ---------------------------------------------------------------------- validate / stats / import
def run_validate(args: argparse.Namespace) -> int:
    from robolearn.datasets.validate import scan

    report = scan(args.store, quick=args.quick)
    for problem in report.problems:
        print(f"{args.store}: {problem}")
    for note in report.notes:
        print(f"{args.store}: note: {note}")
    if report.problems:
        return 1
    from robolearn.datasets.store import EpisodeStore

    how = "structure checked" if args.quick else "every chunk decoded"
    with EpisodeStore.open(args.store) as store:
        print(f"{args.store}: ok ({store.n_episodes} episodes, {store.n_steps} steps, {len(store.keys)} keys; {how})")
    return 0


def run_repair(args: argparse.Namespace) -> int:
    from robolearn.datasets.repair import repair_store

    for line in repair_store(args.store, args.out, drop_keys=args.drop_key):
        print(line)
    return 0


def run_rechunk(args: argparse.Namespace) -> int:
    from robolearn.datasets.store import rechunk

    _open_checked(args.store).close()
    done = rechunk(args.store, args.out, image_codecs=args.image_codec, frames_per_shard=args.frames_per_shard,
                   progress=True)
    codecs = ", ".join(f"{k}={v}" for k, v in done["image_codecs"].items()) or "no cameras"
    print(f"{args.out or args.store}: {done['episodes']} episodes, {done['steps']} steps in format 2 ({codecs}; "
          f"{done['frames_per_shard']} frames per shard); {_human_bytes(done['bytes_before'])} -> "
          f"{_human_bytes(done['bytes_after'])}")
    return 0


def run_stats(args: argparse.Namespace) -> int:
    with _open_checked(args.store, mode="a") as store:
        stats = store.compute_stats()
    if args.json:
        print(json.dumps(stats, indent=2))
        return 0
    print(f"{args.store}: statistics over {store.n_steps} steps of {store.n_episodes} episodes (saved)")
    width = max((len(k) for k in stats), default=0)
    for key, s in stats.items():
        print(f"  {key:<{width}}  min {_short(s['min'])} max {_short(s['max'])} mean {_short(s['mean'])} std {_short(s['std'])}")
    return 0


def run_import(args: argparse.Namespace) -> int:
    from robolearn.datasets.importers import detect_format, import_dataset
    from robolearn.datasets.store import EpisodeStore

    from robolearn.datasets.lerobot import import_lerobot, is_lerobot_dir

    fmt = args.format or ("lerobot" if is_lerobot_dir(args.src) else detect_format(args.src))
    if fmt == "lerobot":
        import_lerobot(args.src, args.dst, overwrite=args.overwrite, progress=True, image_codecs=args.image_codec)
    else:
        import_dataset(args.src, args.dst, fmt=fmt, overwrite=args.overwrite, progress=True, image_codecs=args.image_codec)
    with EpisodeStore.open(args.dst) as store:
        print(f"{args.dst}: imported {store.n_episodes} episodes, {store.n_steps} steps, "
              f"keys {', '.join(store.keys)} from {args.src} ({fmt}); validated ok")
    return 0


def run_export(args: argparse.Namespace) -> int:
    from robolearn.datasets.lerobot import describe_export, export_lerobot

    export_lerobot(args.store, args.dst, fps=args.fps, vcodec=None if args.vcodec == "none" else args.vcodec,
                   action_key=args.action_key, overwrite=args.overwrite, progress=True)
    print(f"{args.dst}: LeRobot v3.0 dataset from {args.store}: {describe_export(args.dst)}")
    return 0


# ---------------------------------------------------------------------- view
def _atomic_output(path: Path) -> Path:
    """A temp path beside `path` (same suffix, so writers pick the format from it); created by the writer."""
    if not path.parent.is_dir():
        from robolearn.errors import UserError

        raise UserError(f"{path}: directory {path.parent} does not exist")
    return path.parent / f".{path.stem}.{os.getpid()}-{secrets.token_hex(4)}.tmp{path.suffix}"


def _rgb(frames):
    """(N, H, W, C) uint8 -> (N, H, W, 3): grey repeated, alpha dropped."""
    import numpy as np

    c = frames.shape[-1]
    if c == 1:
        return np.repeat(frames, 3, axis=-1)
    if c == 2:
        return np.concatenate([frames, frames[..., :1]], axis=-1)
    return frames[..., :3]


def _tile(blocks: list) -> "np.ndarray":
    """Frames of several cameras side by side, padded to a common, even height and width."""
    import numpy as np

    height = max(b.shape[1] for b in blocks)
    padded = [np.pad(b, ((0, 0), (0, height - b.shape[1]), (0, 0), (0, 0))) for b in blocks]
    tiled = np.concatenate(padded, axis=2)  # (N, H, sum W, 3)
    return np.pad(tiled, ((0, 0), (0, tiled.shape[1] % 2), (0, tiled.shape[2] % 2), (0, 0)))


def write_episode_video(store, episode: int, image_keys: list[str], out: Path, fps: float) -> int:
    """Tile every image key's frames side by side into an mp4; returns the frame count."""
    import imageio.v2 as imageio

    sl = store.episode_slice(episode)
    n = 0
    with imageio.get_writer(out, fps=fps, codec="libx264", macro_block_size=1, ffmpeg_log_level="error") as writer:
        for start in range(sl.start, sl.stop, 64):
            stop = min(sl.stop, start + 64)
            for frame in _tile([_rgb(store.array(k)[start:stop]) for k in image_keys]):
                writer.append_data(frame)
                n += 1
    return n


def write_action_plot(store, episode: int, key: str, out: Path) -> None:
    """One line per action dimension over the episode's steps (matplotlib, Agg; no global state)."""
    import numpy as np
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    values = np.asarray(store.array(key)[store.episode_slice(episode)], dtype=np.float64)
    values = values.reshape(len(values), -1)  # (T, D)
    fig = Figure(figsize=(8, 4), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    for d in range(values.shape[1]):
        ax.plot(values[:, d], label=f"{key}[{d}]", linewidth=1)
    ax.set_xlabel("step")
    ax.set_ylabel(key)
    ax.set_title(f"{Path(store.path).name}: episode {episode}")
    if values.shape[1] <= 12:
        ax.legend(loc="upper right", fontsize="small", ncol=2)
    fig.tight_layout()
    fig.savefig(out, format="png")


def run_view(args: argparse.Namespace) -> int:
    from robolearn.datasets.store import is_image_array
    from robolearn.errors import UserError

    out = Path(args.out)
    plot = Path(args.plot) if args.plot else out.with_suffix(".png")
    if out.suffix.lower() != ".mp4":
        raise UserError(f"--out {out}: expected an .mp4 path")
    if plot.suffix.lower() != ".png":
        raise UserError(f"--plot {plot}: expected a .png path")
    with _open_checked(args.store) as store:
        if not store.n_episodes:
            raise UserError(f"{args.store}: meta/episode_ends: no episodes; expected at least one to view")
        if not -store.n_episodes <= args.episode < store.n_episodes:
            last = store.n_episodes - 1
            raise UserError(f"{args.store}: --episode {args.episode}: out of range; expected 0..{last} (or -1..-{last + 1})")
        episode = args.episode % store.n_episodes
        if args.action_key not in store.keys:
            keys = ", ".join(store.keys)
            raise UserError(f"{args.store}: data/{args.action_key}: missing; expected a key to plot (--action-key; has {keys})")
        image_keys = [k for k in store.keys if is_image_array(store.array(k))]
        temps: list[Path] = []
        try:
            tmp_plot = _atomic_output(plot)
            temps.append(tmp_plot)
            write_action_plot(store, episode, args.action_key, tmp_plot)
            n_frames = 0
            if image_keys:
                tmp_video = _atomic_output(out)
                temps.append(tmp_video)
                n_frames = write_episode_video(store, episode, image_keys, tmp_video, args.fps)
                os.replace(tmp_video, out)
            os.replace(tmp_plot, plot)
        finally:
            for tmp in temps:
                tmp.unlink(missing_ok=True)
    if image_keys:
        print(f"{out}: {n_frames} frames of {', '.join(image_keys)} at {args.fps:g} fps")
    else:
        print(f"{args.store}: no image keys; no video written")
    print(f"{plot}: plot of {args.action_key} over episode {episode}")
    return 0

"""`robolearn collect`: scripted-expert demos into an episode store (heavy imports inside run)."""

from __future__ import annotations

import argparse
import tomllib
from pathlib import Path

from robolearn.errors import UserError


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "collect",
        help="generate scripted-expert demonstrations into an episode store",
        description="Run a task's scripted expert in robosuite (one env per worker process) and append each "
        "successful episode to a zarr episode store. Re-running with a larger --episodes appends.",
    )
    p.add_argument("task", nargs="?", help="task name from the task suite (or give --recipe)")
    p.add_argument("--recipe", help="dataset recipe TOML (datasets/*.toml); flags override it")
    p.add_argument("--tasks", metavar="FILE", help="user task suite TOML read on top of the packaged one "
                   "(e.g. sim/tasks.toml; default $ROBOLEARN_TASKS)")
    p.add_argument("--episodes", type=int, help="total episodes wanted in the store")
    p.add_argument("--out", help="output store path (directory or fsspec URL; default datasets/stores/<task>.zarr)")
    p.add_argument("--workers", type=int, help="worker processes (default 1)")
    p.add_argument("--cameras", help="comma-separated camera names ('' for state only)")
    p.add_argument("--image-size", type=int, help="square image side in pixels")
    p.add_argument("--depth", action="store_true", default=None, help="also store depth images")
    p.add_argument("--pointcloud", action="store_true", default=None, help="also store world-frame point clouds")
    p.add_argument("--keep-failed", action="store_true", default=None, help="store failed expert episodes too")
    p.add_argument("--extraneous", type=float, help="share of episodes with inserted extraneous segments")
    p.add_argument("--language-fraction", type=float, help="share of episodes keeping their instruction")
    p.add_argument("--seed-start", type=int, help="first seed (default 0)")
    p.add_argument("--image-codec", action="append", metavar="SPEC|KEY=SPEC",
                   help="camera codec of a new store: blosc (lossless) or webp|jpeg|jpegxl|avif|jpeg2k[:QUALITY], "
                   "for every camera (SPEC) or one key (KEY=SPEC, repeatable); recorded in the store")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def _recipe(path: str) -> dict:
    try:
        raw = tomllib.loads(Path(path).read_text())
    except FileNotFoundError:
        from robolearn.config_io import renamed_recipe_error  # old recipe names say where they went

        raise (renamed_recipe_error(Path(path)) or UserError(f"{path}: recipe not found")) from None
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise UserError(f"{path}: cannot read recipe ({exc})") from exc
    body = raw.get("collect", raw)
    allowed = {"task", "episodes", "out", "workers", "cameras", "image_size", "depth", "pointcloud", "keep_failed",
               "extraneous", "language_fraction", "seed_start", "demonstrators", "randomize", "image_codec"}  # fmt: skip
    unknown = set(body) - allowed
    if unknown:
        raise UserError(f"{path}: unknown keys {sorted(unknown)}; expected some of {sorted(allowed)}")
    return dict(body)


def run(args: argparse.Namespace) -> int:
    from robolearn.sim.collect import CollectConfig, collect
    from robolearn.sim.suite import use_user_suite

    use_user_suite(args.tasks)
    conf = _recipe(args.recipe) if args.recipe else {}
    flags = {
        "task": args.task, "episodes": args.episodes, "out": args.out, "workers": args.workers,
        "image_size": args.image_size, "depth": args.depth, "pointcloud": args.pointcloud,
        "keep_failed": args.keep_failed,
        "extraneous": args.extraneous, "language_fraction": args.language_fraction, "seed_start": args.seed_start,
        "image_codec": args.image_codec,
    }  # fmt: skip
    if args.cameras is not None:
        flags["cameras"] = [c for c in args.cameras.split(",") if c]
    conf.update({k: v for k, v in flags.items() if v is not None})
    if "out" not in conf and "task" in conf:
        conf["out"] = f"datasets/stores/{conf['task']}.zarr"
    for key in ("task", "episodes", "out"):
        if key not in conf:
            raise UserError(f"--{key}: required (on the command line or in the recipe)")
    conf["progress"] = not args.no_progress
    summary = collect(CollectConfig(**conf))
    print(
        f"{conf['out']}: {summary['episodes']} episodes ({summary['added']} added, "
        f"{summary['failed']} failed expert runs skipped of {summary['attempted']})"
    )
    return 0

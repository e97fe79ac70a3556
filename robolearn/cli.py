"""`robolearn <command>`: one CLI over the whole platform.

Each domain registers its own sub-commands from a small module (kept free of
heavy imports so `--help` stays fast); this file only wires them together and
turns `UserError` into one clean line on stderr plus a non-zero exit.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from robolearn import __version__
from robolearn.errors import UserError

# Modules exposing `register(subparsers)`, one per domain.
COMMAND_MODULES = [
    "robolearn.datasets.cli",  # data
    "robolearn.sim.cli",  # collect
    "robolearn.train.cli",  # pretrain
    "robolearn.eval.cli",  # train (its eval_every runs sim evaluations), eval
    "robolearn.quickstart",  # quickstart
    "robolearn.real_robot.cli",  # serve
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="robolearn",
        description="Robot imitation learning: demos in zarr, pretraining, policy heads, sim eval, control daemon.",
    )
    parser.add_argument("--version", action="version", version=f"robolearn {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        code = args.func(args)
    except UserError as exc:
        print(f"robolearn {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"robolearn {args.command}: interrupted", file=sys.stderr)
        return 130
    return int(code or 0)


if __name__ == "__main__":
    sys.exit(main())

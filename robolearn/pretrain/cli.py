"""`robolearn pretrain --recipe policies/<task>_<method>_pretrain.toml [key=value ...]`."""

from __future__ import annotations

import argparse


def _add_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--recipe", help="pretraining recipe TOML (policies/<task>_<method>_pretrain.toml)")
    p.add_argument("--max-steps", type=int, help="total optimisation steps (= train.steps)")
    p.add_argument("--device", help="auto | cpu | cuda | cuda:N (= device)")
    p.add_argument("--out", help="run directory (default runs/<task>_<method>_pretrain_<timestamp>)")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue RUN_DIR exactly from its checkpoints/last")
    p.add_argument("--num-workers", type=int, help="DataLoader workers (= data.num_workers)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def _merge_rest(args: argparse.Namespace) -> argparse.Namespace:
    """Options may follow the key=value overrides (see robolearn.train.cli)."""
    p = argparse.ArgumentParser(prog="robolearn pretrain", add_help=False)
    _add_options(p)
    p.add_argument("overrides", nargs="*")
    extra = p.parse_intermixed_args(args.rest)
    for name, value in vars(extra).items():
        if name != "overrides" and value not in (None, False):
            setattr(args, name, value)
    args.overrides = extra.overrides
    return args


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "pretrain",
        help="pretrain an image encoder (or label a store) from a recipe",
        description=(
            "Self-supervised pretraining on an episode store: dynamo, inverse_dynamics, act_jepa, infocon. "
            "Same trainer, checkpoints, progress, plots and resume as `robolearn train`. Encoder methods "
            "export RUN_DIR/encoder (plug it into a policy with policy.encoder.pretrained=RUN_DIR/encoder); "
            "InfoCon writes concept labels into the store. key=value overrides use dotted keys, e.g. "
            "pretrain.window_size=3 train.steps=2000 dataset=PATH."
        ),
    )
    _add_options(p)
    p.add_argument("rest", nargs=argparse.REMAINDER, metavar="key=value", help="dotted config overrides")
    p.set_defaults(func=run_pretrain)


def run_pretrain(args: argparse.Namespace) -> int:
    from pathlib import Path

    from robolearn.errors import UserError
    from robolearn.pretrain.run import load_pretrain_recipe, pretrain, resume_pretrain_config

    args = _merge_rest(args)
    overrides = list(args.overrides)
    if args.max_steps is not None:
        overrides.append(f"train.steps={args.max_steps}")
    if args.num_workers is not None:
        overrides.append(f"data.num_workers={args.num_workers}")
    if args.no_progress:
        overrides.append("train.progress=false")
    if args.resume:
        if args.out:
            raise UserError("--out: not allowed with --resume (the run continues in RUN_DIR)")
        run = resume_pretrain_config(Path(args.resume), overrides)
        run.device = args.device or run.device
        result = pretrain(run, resume=Path(args.resume))
    else:
        if not args.recipe:
            raise UserError("--recipe: required (or --resume RUN_DIR)")
        run = load_pretrain_recipe(args.recipe, overrides)
        run.out = args.out or run.out
        run.device = args.device or run.device
        result = pretrain(run)
    final = f"loss {result.losses[-1]:.4f}" if result.losses else "nothing to do"
    print(f"pretrained {run.method} to step {result.step} ({final}); run {result.out}")
    for name, where in result.outputs.items():
        print(f"{name}: {where}")
    return 0

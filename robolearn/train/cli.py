"""`robolearn train --recipe policies/<task>_<method>.toml [key=value ...]` and
`robolearn pretrain --recipe policies/<task>_<method>_pretrain.toml [key=value ...]`.

Both take the same run options, parsed by the same code, and run under torchrun alike (one
RunSession set-up, robolearn.train.session). `register` adds `pretrain`; `train` is added by
robolearn.eval.cli through `register_train`, with the sim evaluator that ``eval_every=N`` runs
(evaluation is a layer above training, so this module does not import it)."""

from __future__ import annotations

import argparse
from functools import partial
from pathlib import Path
from typing import Any, Callable


def add_run_options(p: argparse.ArgumentParser, kind: str = "", suffix: str = "") -> None:
    """The options of a recipe run. ``kind`` names the recipe ("training"), ``suffix`` ends recipe
    and run names ("_pretrain"); both only word the help."""
    p.add_argument("--recipe", help=f"{kind} recipe TOML (policies/<task>_<method>{suffix}.toml)")
    p.add_argument("--max-steps", type=int, help="total optimisation steps (= train.steps)")
    p.add_argument("--device", help="auto | cpu | cuda | cuda:N (= device)")
    p.add_argument("--out", help=f"run directory (default runs/<task>_<method>{suffix}_<timestamp>)")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue RUN_DIR exactly from its checkpoints/last")
    p.add_argument("--num-workers", type=int, help="DataLoader workers (= data.num_workers)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def merge_rest(args: argparse.Namespace, prog: str) -> argparse.Namespace:
    """Options may follow the key=value overrides; argparse stops at the first positional, so the
    rest is parsed again, intermixed, by a parser without sub-commands."""
    p = argparse.ArgumentParser(prog=prog, add_help=False)
    add_run_options(p)
    p.add_argument("overrides", nargs="*")
    extra = p.parse_intermixed_args(args.rest)
    for name, value in vars(extra).items():
        if name != "overrides" and value not in (None, False):
            setattr(args, name, value)
    args.overrides = extra.overrides
    return args


def run_config_from_args(args: argparse.Namespace, prog: str, load_recipe: Callable[[str, list[str]], Any],
                         resume_config: Callable[[Path, list[str]], Any]) -> tuple[Any, Path | None]:
    """-> (run config, the run dir to resume or None): ``load_recipe(recipe, overrides)`` or, with
    --resume, ``resume_config(run_dir, overrides)``; the options become overrides or override fields."""
    from robolearn.errors import UserError

    args = merge_rest(args, prog)
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
        run = resume_config(Path(args.resume), overrides)
        run.device = args.device or run.device
        return run, Path(args.resume)
    if not args.recipe:
        raise UserError("--recipe: required (or --resume RUN_DIR)")
    run = load_recipe(args.recipe, overrides)
    run.out = args.out or run.out
    run.device = args.device or run.device
    return run, None


def register(subparsers) -> None:
    register_pretrain(subparsers)


def register_train(subparsers, evaluator: Callable[[Any, Path], Any] | None = None) -> None:
    """The `train` sub-command; ``evaluator`` is passed on to robolearn.train.run.train (eval_every)."""
    p = subparsers.add_parser(
        "train",
        help="train a policy from a recipe",
        description=(
            "Train a policy head (diffusion, act, bc, ...) on an episode store. The recipe TOML maps 1:1 onto the "
            "run config; key=value overrides use dotted keys, e.g. policy.horizon=16 train.lr=3e-4 dataset=PATH. "
            "Under torchrun (WORLD_SIZE>1) it trains with DistributedDataParallel."
        ),
    )
    add_run_options(p, "training", "")
    p.add_argument("rest", nargs=argparse.REMAINDER, metavar="key=value", help="dotted config overrides")
    p.set_defaults(func=partial(run_train, evaluator=evaluator))


def run_train(args: argparse.Namespace, evaluator: Callable[[Any, Path], Any] | None = None) -> int:
    import os

    from robolearn.train.config import load_recipe
    from robolearn.train.run import resume_config, train

    run, resume = run_config_from_args(args, "robolearn train", load_recipe, resume_config)
    result = train(run, resume=resume, evaluator=evaluator)
    if os.environ.get("RANK", "0") == "0":
        where = result.last_checkpoint or (Path(run.out) / "checkpoints" / "last")
        final = f"loss {result.losses[-1]:.4f}" if result.losses else "nothing to do"
        print(f"trained {run.method} to step {result.step} ({final}); checkpoint {where}")
    return 0


def register_pretrain(subparsers) -> None:
    p = subparsers.add_parser(
        "pretrain",
        help="pretrain an image encoder (or label a store) from a recipe",
        description=(
            "Self-supervised pretraining on an episode store: dynamo, inverse_dynamics, act_jepa, infocon. "
            "Same trainer, checkpoints, progress, plots and resume as `robolearn train`. Encoder methods "
            "export RUN_DIR/encoder (plug it into a policy with policy.encoder.pretrained=RUN_DIR/encoder); "
            "InfoCon writes concept labels into the store. key=value overrides use dotted keys, e.g. "
            "pretrain.window_size=3 train.steps=2000 dataset=PATH. "
            "Under torchrun (WORLD_SIZE>1) it trains with DistributedDataParallel; rank 0 writes the outputs."
        ),
    )
    add_run_options(p, "pretraining", "_pretrain")
    p.add_argument("rest", nargs=argparse.REMAINDER, metavar="key=value", help="dotted config overrides")
    p.set_defaults(func=run_pretrain)


def run_pretrain(args: argparse.Namespace) -> int:
    import os

    from robolearn.train.pretrain_run import load_pretrain_recipe, pretrain, resume_pretrain_config

    run, resume = run_config_from_args(args, "robolearn pretrain", load_pretrain_recipe, resume_pretrain_config)
    result = pretrain(run, resume=resume)
    if os.environ.get("RANK", "0") == "0":
        final = f"loss {result.losses[-1]:.4f}" if result.losses else "nothing to do"
        print(f"pretrained {run.method} to step {result.step} ({final}); run {result.out}")
        for name, where in result.outputs.items():
            print(f"{name}: {where}")
    return 0

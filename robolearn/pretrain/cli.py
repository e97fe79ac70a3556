"""`robolearn pretrain --recipe policies/<task>_<method>_pretrain.toml [key=value ...]`.

Same options and override parsing as `robolearn train` (robolearn.train.cli)."""

from __future__ import annotations

import argparse

from robolearn.train.cli import add_run_options, run_config_from_args


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
    add_run_options(p, "pretraining", "_pretrain")
    p.add_argument("rest", nargs=argparse.REMAINDER, metavar="key=value", help="dotted config overrides")
    p.set_defaults(func=run_pretrain)


def run_pretrain(args: argparse.Namespace) -> int:
    from robolearn.pretrain.run import load_pretrain_recipe, pretrain, resume_pretrain_config

    run, resume = run_config_from_args(args, "robolearn pretrain", load_pretrain_recipe, resume_pretrain_config)
    result = pretrain(run, resume=resume)
    final = f"loss {result.losses[-1]:.4f}" if result.losses else "nothing to do"
    print(f"pretrained {run.method} to step {result.step} ({final}); run {result.out}")
    for name, where in result.outputs.items():
        print(f"{name}: {where}")
    return 0

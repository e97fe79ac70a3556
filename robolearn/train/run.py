"""`robolearn train`: a resolved RunConfig -> store -> dataset -> policy -> the Trainer (set up by
RunSession, shared with pretraining in robolearn.train.pretrain_run)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable

from robolearn.errors import UserError
from robolearn.files import read_config_json
from robolearn.policies.base import make_policy
from robolearn.train.config import RunConfig, load_recipe
from robolearn.train.session import RunSession
from robolearn.train.trainer import TrainResult

log = logging.getLogger(__name__)

CheckpointHook = Callable[[int, Path, bool], None]  # (step, checkpoint dir, final), run on rank 0 after each checkpoint


def train(run: RunConfig, resume: Path | None = None, stop_at: int | None = None,
          evaluator: Callable[[RunConfig, Path], CheckpointHook] | None = None) -> TrainResult:
    """Train ``run``'s policy; with ``resume`` (a run dir) continue from its checkpoints/last.
    Under torchrun (WORLD_SIZE > 1) every rank runs this and trains one DDP model.

    ``evaluator(run, out)`` builds the hook that evaluates the checkpoints every ``run.eval_every``
    steps (robolearn.eval.during_training.checkpoint_evaluator: sim rollouts). Evaluation is a layer
    above training, so it is passed in: `robolearn train` does, from robolearn.eval.cli."""
    from robolearn.train.data import open_training_data

    if run.eval_every > 0 and evaluator is None:
        raise UserError("eval_every: evaluating during training needs an evaluator (`robolearn train` passes the "
                        "sim one; from Python: train(..., evaluator=robolearn.eval.during_training.checkpoint_evaluator))")
    with RunSession(run, resume) as session:
        dataset, stats = open_training_data(run)
        session.seed()
        policy = make_policy(run.policy, stats)  # before writing anything: a bad pretrained encoder is a UserError
        out = session.create_out(f"{run.task}_{run.method}")
        on_checkpoint = evaluator(run, out) if run.eval_every > 0 and session.is_main else None
        trainer = session.trainer(policy, dataset, {"method": run.method}, on_checkpoint=on_checkpoint,
                                  eval_every=run.eval_every)
        return trainer.fit(stop_at=stop_at)


def resume_config(run_dir: Path, overrides: list[str]) -> RunConfig:
    return load_recipe(None, overrides, base=read_config_json(run_dir))

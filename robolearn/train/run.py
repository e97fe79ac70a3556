"""`robolearn train`: a resolved RunConfig -> store -> dataset -> policy -> the Trainer (set up by
RunSession, shared with pretraining in robolearn.train.pretrain_run)."""

from __future__ import annotations

import logging
from pathlib import Path

from robolearn.files import read_config_json
from robolearn.policies.base import make_policy
from robolearn.train.config import RunConfig, load_recipe
from robolearn.train.session import RunSession
from robolearn.train.trainer import TrainResult

log = logging.getLogger(__name__)


def train(run: RunConfig, resume: Path | None = None, stop_at: int | None = None) -> TrainResult:
    """Train ``run``'s policy; with ``resume`` (a run dir) continue from its checkpoints/last.
    Under torchrun (WORLD_SIZE > 1) every rank runs this and trains one DDP model."""
    from robolearn.train.data import open_training_data

    with RunSession(run, resume) as session:
        dataset, stats = open_training_data(run)
        session.seed()
        policy = make_policy(run.policy, stats)  # before writing anything: a bad pretrained encoder is a UserError
        out = session.create_out(f"{run.task}_{run.method}")
        evaluator = None
        if run.eval_every > 0 and session.is_main:
            from robolearn.eval.during_training import CheckpointEvaluator

            evaluator = CheckpointEvaluator(out, run.eval_every, run.eval_episodes, run.eval_workers,
                                            run.eval_max_steps or None, task=run.task or None)
        trainer = session.trainer(policy, dataset, {"method": run.method}, on_checkpoint=evaluator,
                                  eval_every=run.eval_every)
        return trainer.fit(stop_at=stop_at)


def resume_config(run_dir: Path, overrides: list[str]) -> RunConfig:
    return load_recipe(None, overrides, base=read_config_json(run_dir))

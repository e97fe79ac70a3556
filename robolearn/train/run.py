"""Glue between a resolved RunConfig and the Trainer: store -> dataset -> policy -> fit."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import torch

from robolearn.errors import UserError
from robolearn.policies.base import make_policy
from robolearn.files import read_config_json
from robolearn.train.config import RunConfig, load_recipe, save_run_config
from robolearn.train.distributed import broadcast_object, init_distributed, resolve_device, shutdown
from robolearn.train.trainer import Trainer, TrainResult, seed_everything

log = logging.getLogger(__name__)


def auto_num_threads() -> int:
    """Half the cores, at most 8: leaves room for data workers and keeps OpenMP from thrashing."""
    return max(1, min(8, (os.cpu_count() or 1) // 2))


def default_out(run: RunConfig) -> Path:
    return Path("runs") / f"{run.task}_{run.method}_{time.strftime('%Y%m%d-%H%M%S')}"


def train(run: RunConfig, resume: Path | None = None, stop_at: int | None = None) -> TrainResult:
    """Train ``run``; with ``resume`` (a run dir) continue from its checkpoints/last."""
    from robolearn.train.data import open_training_data

    torch.set_num_threads(run.train.num_threads or auto_num_threads())
    device = resolve_device(run.device)
    dist_info = init_distributed(device)
    if dist_info.enabled and device.type == "cuda":
        device = torch.device(f"cuda:{dist_info.local_rank}")
        torch.cuda.set_device(device)
    try:
        dataset, stats = open_training_data(run)
        if resume is not None:
            out = Path(resume)
        else:
            out = Path(run.out) if run.out else default_out(run)
            out = Path(broadcast_object(str(out), dist_info))
        run.out = str(out)
        seed_everything(run.train.seed)  # same init on every rank (DDP also broadcasts rank 0's weights)
        policy = make_policy(run.policy, stats)  # before writing anything: a bad pretrained encoder is a UserError
        if dist_info.is_main:
            out.mkdir(parents=True, exist_ok=True)
            save_run_config(run, out / "config.json")
        n_params = sum(p.numel() for p in policy.parameters())
        log.info("%s policy: %.2fM parameters, %d windows, out %s", run.method, n_params / 1e6, len(dataset), out)
        evaluator = None
        if run.eval_every > 0 and dist_info.is_main:
            from robolearn.eval.during_training import CheckpointEvaluator

            evaluator = CheckpointEvaluator(out, run.eval_every, run.eval_episodes, run.eval_workers,
                                            run.eval_max_steps or None, task=run.task or None)
        trainer = Trainer(policy, dataset, run.train, out, device, dist_info, run.data.num_workers,
                          {"method": run.method}, on_checkpoint=evaluator, eval_every=run.eval_every)
        if resume is not None:
            last = out / "checkpoints" / "last"
            if not last.exists():
                raise UserError(f"{out}: no checkpoints/last to resume from")
            trainer.load_checkpoint(last)
        else:
            seed_everything(run.train.seed + dist_info.rank)  # per-rank noise / augmentation streams
        return trainer.fit(stop_at=stop_at)
    finally:
        shutdown(dist_info)


def resume_config(run_dir: Path, overrides: list[str]) -> RunConfig:
    return load_recipe(None, overrides, base=read_config_json(run_dir))

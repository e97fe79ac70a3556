"""The one run set-up shared by `robolearn train` (a policy) and `robolearn pretrain` (a pretrainer):
threads, device, torch.distributed under torchrun, seeding, the run directory with its resolved
config, resume from ``checkpoints/last``, and the Trainer. A runner reads top to bottom:

    with RunSession(run, resume) as session:             # threads, device, process group (torchrun)
        data, stats = ...                                # check the store: nothing written yet
        session.seed()                                   # the same initial weights on every rank
        model = ...                                      # a bad config is a UserError, still nothing written
        out = session.create_out("<task>_<method>")      # rank 0 writes out/config.json
        trainer = session.trainer(model, dataset, ...)   # DDP when WORLD_SIZE > 1; resumes checkpoints/last
        result = trainer.fit()
        session.on_main(lambda: ...)                     # e.g. export / label the store: rank 0 only, once

``run`` is any run config with ``device``, ``out``, ``train`` (TrainConfig) and ``data.num_workers``
(RunConfig, PretrainRunConfig).
"""

from __future__ import annotations

import gc
import logging
import os
import time
from pathlib import Path
from types import TracebackType
from typing import Any, Callable, Protocol, TypeVar

import torch
from torch import nn

from robolearn.errors import UserError
from robolearn.train.config import TrainConfig, save_run_config
from robolearn.train.distributed import DistInfo, barrier, broadcast_object, init_distributed, resolve_device, shutdown
from robolearn.train.trainer import Trainer, seed_everything

log = logging.getLogger(__name__)
T = TypeVar("T")


class _DataConfig(Protocol):
    num_workers: int


class RunLike(Protocol):
    """What the session reads from a run config."""

    device: str
    out: str
    train: TrainConfig
    data: _DataConfig


def auto_num_threads() -> int:
    """Half the cores, at most 8: leaves room for data workers and keeps OpenMP from thrashing."""
    return max(1, min(8, (os.cpu_count() or 1) // 2))


class RunSession:
    """Context manager around one run (one process of a torchrun group, or the only one)."""

    def __init__(self, run: RunLike, resume: Path | str | None = None):
        self.run = run
        self.resume = Path(resume) if resume is not None else None
        self.device = torch.device("cpu")
        self.dist = DistInfo()
        self.out: Path | None = None
        self._trainer: Trainer | None = None

    def __enter__(self) -> RunSession:
        torch.set_num_threads(self.run.train.num_threads or auto_num_threads())
        device = resolve_device(self.run.device)
        self.dist = init_distributed(device)
        if self.dist.enabled and device.type == "cuda":  # one GPU per process
            device = torch.device(f"cuda:{self.dist.local_rank}")
            torch.cuda.set_device(device)
        self.device = device
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        # Free the DDP wrapper while every rank still holds the process group, and leave together:
        # a rank that garbage-collects its DDP reducer after its peer has destroyed the group hangs
        # forever in ProcessGroupGloo's destructor (seen with InfoCon, whose rank 0 writes labels last).
        if self._trainer is not None:
            self._trainer.model = self._trainer.policy
            self._trainer = None
        if self.dist.enabled and exc_type is None:
            gc.collect()
            barrier(self.dist)
        shutdown(self.dist)

    @property
    def is_main(self) -> bool:
        return self.dist.is_main

    def seed(self, per_rank: bool = False) -> None:
        """Seed python, numpy and torch from train.seed; ``per_rank`` adds the rank (noise and
        augmentation streams differ between ranks, initial weights must not)."""
        seed_everything(self.run.train.seed + (self.dist.rank if per_rank else 0))

    def create_out(self, default_name: str) -> Path:
        """The run directory: the resumed one, run.out, or runs/<default_name>_<timestamp> (rank 0's
        name on every rank). Rank 0 creates it and writes the resolved config to out/config.json."""
        if self.resume is not None:
            out = self.resume
            if not (out / "checkpoints" / "last").exists():
                raise UserError(f"{out}: no checkpoints/last to resume from")
        else:
            out = Path(self.run.out) if self.run.out else Path("runs") / f"{default_name}_{time.strftime('%Y%m%d-%H%M%S')}"
            out = Path(broadcast_object(str(out), self.dist))
        self.run.out, self.out = str(out), out
        if self.is_main:
            out.mkdir(parents=True, exist_ok=True)
            save_run_config(self.run, out / "config.json")
        return out

    def trainer(self, model: nn.Module, dataset: Any, extra_state: dict[str, Any],
                on_checkpoint: Callable[[int, Path, bool], None] | None = None, eval_every: int = 0) -> Trainer:
        """The Trainer over ``model`` (DistributedDataParallel across the ranks), restored from
        checkpoints/last when resuming; otherwise each rank's random streams are seeded apart."""
        if self.out is None:
            raise RuntimeError("RunSession.create_out must come before RunSession.trainer")
        n_params = sum(p.numel() for p in model.parameters())
        log.info("%s: %.2fM parameters, %d windows, %d process(es), out %s", type(model).__name__, n_params / 1e6,
                 len(dataset), self.dist.world_size, self.out)
        trainer = Trainer(model, dataset, self.run.train, self.out, self.device, self.dist, self.run.data.num_workers,
                          extra_state, on_checkpoint=on_checkpoint, eval_every=eval_every)
        if self.resume is not None:
            trainer.load_checkpoint(self.out / "checkpoints" / "last")
        else:
            self.seed(per_rank=True)
        self._trainer = trainer
        return trainer

    def on_main(self, fn: Callable[[], T]) -> T:
        """``fn()`` on rank 0 only (writes that must happen once: an exported encoder, store labels);
        every rank waits for it and returns rank 0's result."""
        result = fn() if self.is_main else None
        return broadcast_object(result, self.dist)

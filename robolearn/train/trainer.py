"""The training loop: AdamW + warm-up/cosine, grad clipping, EMA, AMP (CUDA), DDP, atomic
checkpoints and exact resume. It trains a Policy or a Pretrainer alike: it only ever calls
``policy(batch)`` == ``policy.compute_loss(batch)``, optimises ``["loss"]`` (every other returned key
is logged) and lets the model write its own files into a checkpoint (``write_files(dir)``)."""

from __future__ import annotations

import logging
import math
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch.utils.data import DataLoader

from robolearn.errors import UserError
from robolearn.nn.ema import EMA
from robolearn.train import checkpoint as ckpt_io
from robolearn.train.config import TrainConfig
from robolearn.train.data import ResumableBatchSampler, to_device
from robolearn.train.distributed import DistInfo, barrier, mean_across
from robolearn.train.logs import RunLogger, plot_loss

log = logging.getLogger(__name__)


class TrainingDiverged(UserError):
    """The loss became NaN/inf; training stopped and no checkpoint was written."""


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def lr_lambda(cfg: TrainConfig):
    def f(step: int) -> float:
        if step < cfg.warmup_steps:
            return (step + 1) / cfg.warmup_steps
        progress = min(1.0, (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps))
        return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    return f


@dataclass
class TrainResult:
    step: int
    last_checkpoint: Path | None
    losses: list[float]


class Trainer:
    def __init__(
        self,
        policy: torch.nn.Module,  # a Policy or a Pretrainer
        dataset,
        cfg: TrainConfig,
        out: Path,
        device: torch.device,
        dist_info: DistInfo = DistInfo(),
        num_workers: int = 0,
        extra_state: dict[str, Any] | None = None,
        on_checkpoint: Callable[[int, Path, bool], None] | None = None,
        eval_every: int = 0,
    ):
        """``on_checkpoint(step, path, final)`` runs on the main process after each checkpoint (e.g. a
        sim evaluation); ``eval_every`` adds a checkpoint every that many steps for it."""
        self.on_checkpoint, self.eval_every = on_checkpoint, eval_every
        self.cfg, self.out, self.device, self.dist = cfg, Path(out), device, dist_info
        self.dataset, self.num_workers = dataset, num_workers
        self.extra_state = extra_state or {}
        self.policy = policy.to(device)
        self.model: torch.nn.Module = self.policy
        if dist_info.enabled:
            ids = [device.index] if device.type == "cuda" else None
            self.model = torch.nn.parallel.DistributedDataParallel(
                self.policy, device_ids=ids, find_unused_parameters=cfg.ddp_find_unused_parameters
            )
        decay, no_decay = [], []
        for name, p in self.policy.named_parameters():
            (no_decay if p.ndim < 2 or "norm" in name else decay).append(p)
        self.optimizer = torch.optim.AdamW(
            [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
            lr=cfg.lr,
            betas=tuple(cfg.betas),
        )
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lr_lambda(cfg))
        self.ema = EMA(self.policy, cfg.ema_decay) if cfg.ema else None
        self.step = 0
        self.ckpt_root = self.out / "checkpoints"
        self.amp = cfg.amp and device.type == "cuda"

    @property
    def saved_model(self) -> torch.nn.Module:
        """The weights checkpoints hold: the EMA copy when EMA is on, else the trained model."""
        return self.ema.model if self.ema is not None else self.policy

    # --- resume ----------------------------------------------------------------------------
    def load_checkpoint(self, ckpt: Path) -> None:
        tensors, meta = ckpt_io.read_trainer_state(ckpt)
        raw = {k[len("model.") :]: v for k, v in tensors.items() if k.startswith("model.")}
        try:
            self.policy.load_state_dict(raw)
        except RuntimeError as exc:
            raise UserError(f"{ckpt}: weights do not match this recipe's policy ({str(exc).splitlines()[0]})") from None
        ckpt_io.optimizer_from_flat(self.optimizer, tensors, meta["optimizer"])
        self.scheduler.load_state_dict(meta["scheduler"])
        if self.ema is not None:
            self.ema.load_state_dict(ckpt_io.read_ema_weights(ckpt), meta["ema_updates"])
            self.ema.model.to(self.device)
        ckpt_io.set_rng_state(tensors, meta, self.dist.rank)
        self.step = int(meta["step"])
        log.info("resumed from %s at step %d", ckpt, self.step)

    def save_checkpoint(self) -> Path | None:
        path = None
        others = []
        if self.dist.enabled:
            import torch.distributed as dist

            gathered = [None] * self.dist.world_size
            dist.all_gather_object(gathered, ckpt_io.rng_state())
            others = gathered[1:]
        if self.dist.is_main:
            path = ckpt_io.write_checkpoint(
                self.ckpt_root,
                self.step,
                self.saved_model,
                self.policy,
                self.optimizer,
                self.scheduler,
                self.ema.n_updates if self.ema else 0,
                {"world_size": self.dist.world_size, **self.extra_state},
                keep=self.cfg.keep_checkpoints,
                other_ranks_rng=others,
            )
        barrier(self.dist)
        return path

    # --- loop ------------------------------------------------------------------------------
    def _loader(self) -> DataLoader:
        sampler = ResumableBatchSampler(
            len(self.dataset), self.cfg.batch_size, self.cfg.seed, self.dist.rank, self.dist.world_size, self.step
        )
        return DataLoader(
            self.dataset,
            batch_sampler=sampler,
            num_workers=self.num_workers,
            generator=torch.Generator().manual_seed(self.cfg.seed),  # keeps the global RNG untouched
            persistent_workers=False,
            pin_memory=self.device.type == "cuda",
        )

    def _next_batch(self, batches) -> dict:
        """The next batch; a store chunk that fails its checksum (or will not decode) stops the run with one
        line naming it, the last good checkpoint kept (robolearn.datasets.validate.store_read_failure)."""
        try:
            return next(batches)
        except Exception as exc:
            from robolearn.datasets.validate import store_read_failure

            last = self.ckpt_root / "last"
            kept = f"last good checkpoint {last.resolve()} kept" if last.exists() else "no checkpoint written yet"
            store = getattr(self.dataset, "_path", None) or getattr(getattr(self.dataset, "_store", None), "path", "store")
            failure = store_read_failure(exc, str(store), self.step + 1, kept)
            if failure is None:
                raise
            raise failure from exc

    def train_step(self, batch: dict) -> dict[str, float]:
        self.model.train()
        batch = to_device(batch, self.device)
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.amp):
            out = self.model(batch)
        loss = out["loss"].float()
        mean_loss = mean_across(loss.detach(), self.dist).item()
        if not math.isfinite(mean_loss):
            last = self.ckpt_root / "last"
            where = f"last good checkpoint {last.resolve()} left untouched" if last.exists() else "no checkpoint written"
            raise TrainingDiverged(f"train: loss is {mean_loss} at step {self.step + 1}; stopped ({where})")
        lr = self.optimizer.param_groups[0]["lr"]
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        max_norm = self.cfg.grad_clip if self.cfg.grad_clip > 0 else float("inf")  # inf: measure, do not clip
        grad_norm = torch.nn.utils.clip_grad_norm_(self.policy.parameters(), max_norm).item()
        if not math.isfinite(grad_norm):
            raise TrainingDiverged(f"train: gradient norm is {grad_norm} at step {self.step + 1}; stopped before the update")
        self.optimizer.step()
        self.scheduler.step()
        if self.ema is not None:
            self.ema.update(self.policy)
        self.step += 1
        logged = {k: mean_across(v.detach().float(), self.dist).item() for k, v in out.items() if k != "loss" and v.ndim == 0}
        return {"loss": mean_loss, "grad_norm": grad_norm, "lr": lr, **logged}

    def fit(self, stop_at: int | None = None) -> TrainResult:
        """Train until cfg.steps (or ``stop_at``, to simulate an interruption in tests)."""
        cfg, end = self.cfg, min(self.cfg.steps, stop_at or self.cfg.steps)
        logger = RunLogger(self.out, cfg.tensorboard, resume_step=self.step if self.step else None) if self.dist.is_main else None
        bar = None
        if self.dist.is_main and cfg.progress:
            from tqdm import tqdm

            bar = tqdm(total=cfg.steps, initial=self.step, desc="train", dynamic_ncols=True)
        losses, window, last_ckpt, t0 = [], [], None, time.perf_counter()
        try:
            batches = iter(self._loader())
            while self.step < end:
                stats = self.train_step(self._next_batch(batches))
                losses.append(stats["loss"])
                window.append(stats)
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(loss=f"{stats['loss']:.4f}")
                if self.step % cfg.log_every == 0 or self.step == end:
                    if logger is not None:
                        rec = {k: float(np.mean([w[k] for w in window])) for k in window[0]}
                        dt = time.perf_counter() - t0
                        rec.update(step=self.step, samples_per_s=len(window) * cfg.batch_size * self.dist.world_size / dt)
                        logger.write(rec)
                    window, t0 = [], time.perf_counter()
                eval_due = self.eval_every > 0 and self.step % self.eval_every == 0
                if self.step % cfg.checkpoint_every == 0 or self.step == cfg.steps or eval_due:
                    last_ckpt = self.save_checkpoint()
                    if self.dist.is_main:
                        plot_loss(logger.path, self.out / "train_loss.png")
                        if self.on_checkpoint is not None:
                            self.on_checkpoint(self.step, last_ckpt, self.step == cfg.steps)
                    barrier(self.dist)
        finally:
            if bar is not None:
                bar.close()
            if logger is not None:
                logger.close()
                if logger.path.exists() and logger.path.stat().st_size:
                    plot_loss(logger.path, self.out / "train_loss.png")
        return TrainResult(self.step, last_ckpt, losses)

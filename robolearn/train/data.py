"""From a store to training data: check the store against the policy config, fill in shapes,
action dim, env and stats, and iterate batches in a seeded, resumable order."""

from __future__ import annotations

import logging
from typing import Iterator

import torch

from robolearn.errors import UserError
from robolearn.policies.base import PolicyConfig
from robolearn.train.config import RunConfig

log = logging.getLogger(__name__)


def open_training_data(run: RunConfig):
    """-> (WindowDataset, store stats). Fills run.policy.{obs_shapes,image_keys,action_dim,env}, run.task."""
    from robolearn.datasets.sampler import WindowDataset
    from robolearn.datasets.store import EpisodeStore, is_image_array
    from robolearn.datasets.validate import check_before_reading

    if not run.dataset:
        raise UserError("dataset: no store given (set `dataset = \"PATH\"` in the recipe or dataset=PATH)")
    cfg: PolicyConfig = run.policy
    check_before_reading(run.dataset, training_keys(run), training_meta_fields(run), command="train")
    store = EpisodeStore.open(run.dataset, mode="r")
    for key in [*cfg.obs_keys, cfg.action_key, *run.data.mask_keys, *cfg.subgoal_keys, *cfg.future_keys]:
        if key not in store.keys:
            raise UserError(f"{run.dataset}: no data key {key!r} needed by the recipe (store has {', '.join(store.keys)})")
    if run.data.step_weight_key and run.data.step_weight_key not in store.keys:
        raise UserError(f"{run.dataset}: no per-step label {run.data.step_weight_key!r} for data.step_weight_key "
                        f"(store has {', '.join(store.keys)})")
    if cfg.subgoal_keys and cfg.subgoal_label not in store.keys:
        raise UserError(f"{run.dataset}: no sub-goal label {cfg.subgoal_label!r} for policy.subgoal_keys (label the store "
                        f"first, e.g. `robolearn pretrain --recipe policies/lift_infocon_pretrain.toml dataset=STORE`)")
    for f in run.data.meta_fields + ([run.data.weights] if run.data.weights else []):
        if f not in store.meta_fields:
            raise UserError(f"{run.dataset}: no episode meta field {f!r} needed by the recipe (store has {store.meta_fields})")
    if store.n_episodes == 0:
        raise UserError(f"{run.dataset}: the store has no episodes")
    shapes = {k: [int(s) for s in store.array(k).shape[1:]] for k in [*cfg.obs_keys, *cfg.subgoal_keys, *cfg.future_keys]}
    images = [k for k in cfg.obs_keys if is_image_array(store.array(k))]
    if cfg.image_keys and sorted(cfg.image_keys) != sorted(images):
        raise UserError(f"policy.image_keys: recipe says {cfg.image_keys}, store images among obs_keys are {images}")
    action_shape = store.array(cfg.action_key).shape
    if len(action_shape) != 2:
        raise UserError(f"{run.dataset}: action key {cfg.action_key!r} must be (T, action_dim), got {action_shape}")
    if cfg.action_dim and cfg.action_dim != action_shape[1]:
        raise UserError(f"policy.action_dim: recipe says {cfg.action_dim}, store {run.dataset} has {action_shape[1]}")
    cfg.obs_shapes, cfg.image_keys, cfg.action_dim = shapes, images, int(action_shape[1])
    fill_goal_shapes(cfg, store, run.dataset)
    attrs = store.attrs
    cfg.env = {"task": attrs.get("task", ""), "env": attrs.get("env", {})}
    run.task = run.task or str(attrs.get("task", "") or "task")

    stats = store.stats
    goal_state = cfg.goal.state_keys if "state" in cfg.goal.modalities else []
    if any(k not in stats for k in [cfg.action_key, *cfg.lowdim_keys, *cfg.subgoal_keys, *goal_state]):
        log.info("store stats missing some keys; recomputing")
        stats = store.compute_stats()
    dataset = WindowDataset(
        store,
        obs_keys=cfg.obs_keys,
        action_key=cfg.action_key,
        obs_horizon=cfg.obs_horizon,
        action_horizon=cfg.horizon,
        episodes=run.data.episodes or None,
        in_ram=run.data.in_ram,
        mask_keys=run.data.mask_keys,
        weights=run.data.weights or None,
        meta_fields=run.data.meta_fields,
        subgoal_keys=cfg.subgoal_keys,
        subgoal_label=cfg.subgoal_label,
        step_weight_key=run.data.step_weight_key or None,
        goal=cfg.goal if cfg.goal.enabled else None,
        future_keys=cfg.future_keys,
        future_steps=cfg.future_steps,
    )
    return dataset, stats


def training_keys(run: RunConfig) -> list[str]:
    """The data keys a training run reads."""
    cfg, g = run.policy, run.policy.goal
    goal = [*(g.image_keys if "image" in g.modalities else []), *(g.state_keys if "state" in g.modalities else [])]
    return [*cfg.obs_keys, cfg.action_key, *run.data.mask_keys, *cfg.subgoal_keys, *cfg.future_keys,
            *([cfg.subgoal_label] if cfg.subgoal_keys else []), run.data.step_weight_key or "", *(goal if g.enabled else [])]


def training_meta_fields(run: RunConfig) -> list[str]:
    """The episode meta fields a training run reads."""
    g = run.policy.goal
    language = [g.instruction_field] if g.enabled and "language" in g.modalities else []
    return [*run.data.meta_fields, *([run.data.weights] if run.data.weights else []), *language]


def fill_goal_shapes(cfg: PolicyConfig, store, where: str) -> None:
    """Check the goal sources against the store and record goal image shapes / state sizes in the config."""
    from robolearn.datasets.store import is_image_array

    g = cfg.goal
    if "language" in g.modalities and g.instruction_field not in store.meta_fields:
        raise UserError(f"{where}: no episode meta field {g.instruction_field!r} for policy.goal language goals "
                        f"(store has {', '.join(store.meta_fields) or 'none'})")
    if "language" in g.modalities and not any(str(x) for x in store.meta_column(g.instruction_field)):
        raise UserError(f"{where}: policy.goal has language goals but no episode has an instruction in meta field "
                        f"{g.instruction_field!r} (collect with --language-fraction > 0, or drop 'language')")
    for part, keys, want_image in (("image", g.image_keys, True), ("state", g.state_keys, False)):
        if part not in g.modalities:
            continue
        for k in keys:
            if k not in store.keys:
                raise UserError(f"{where}: no data key {k!r} for policy.goal.{part}_keys (store has {', '.join(store.keys)})")
            if is_image_array(store.array(k)) != want_image:
                raise UserError(f"policy.goal.{part}_keys: {k!r} is {'not ' if want_image else ''}a camera in {where}")
    g.image_shapes = {k: [int(x) for x in store.array(k).shape[1:]] for k in g.image_keys} if "image" in g.modalities else {}
    g.state_dims = {k: int(store.array(k).shape[-1]) for k in g.state_keys} if "state" in g.modalities else {}


class ResumableBatchSampler:
    """Endless batches of indices; the order depends only on (seed, epoch), so training can
    restart at any step. Under DDP each rank takes every world_size-th index of the epoch's
    permutation (padded by wrapping so all ranks see the same number of batches)."""

    def __init__(self, n: int, batch_size: int, seed: int, rank: int = 0, world_size: int = 1, start_step: int = 0):
        per_rank = -(-n // world_size)
        self.batches_per_epoch = per_rank // batch_size
        if self.batches_per_epoch == 0:
            raise UserError(f"train.batch_size: {batch_size} is larger than the {per_rank} windows per process")
        self.n, self.batch_size, self.seed = n, batch_size, seed
        self.rank, self.world_size, self.start_step = rank, world_size, start_step

    def epoch_indices(self, epoch: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        perm = torch.randperm(self.n, generator=g)
        total = -(-self.n // self.world_size) * self.world_size
        perm = torch.cat([perm, perm[: total - self.n]])  # pad by wrapping
        return perm[self.rank :: self.world_size]

    def __iter__(self) -> Iterator[list[int]]:
        step = self.start_step
        while True:
            epoch, b = divmod(step, self.batches_per_epoch)
            idx = self.epoch_indices(epoch)
            for j in range(b, self.batches_per_epoch):
                yield idx[j * self.batch_size : (j + 1) * self.batch_size].tolist()
            step = (epoch + 1) * self.batches_per_epoch

    def __len__(self) -> int:  # DataLoader asks; the stream is endless
        return 2**62


def to_device(batch, device: torch.device):
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: to_device(v, device) for k, v in batch.items()}
    return batch

"""`robolearn pretrain`: a recipe -> store -> windows -> Pretrainer -> the Trainer (set up by RunSession,
shared with `robolearn train`) -> exported encoder or store labels.

    dataset = "datasets/stores/lift_image.zarr"  # robolearn collect --recipe datasets/lift_image.toml
    method = "dynamo"                  # registry name -> the method's config class
    out = "runs/lift_dynamo_pretrain"  # default runs/<task>_<method>_pretrain_<timestamp>
    [pretrain]  ... the method's config (obs_keys, window sizes, ...; [pretrain.encoder] EncoderConfig)
    [train]     ... TrainConfig (the same trainer, checkpoints, progress, plots and resume as policies)
    [data]      episodes, in_ram, num_workers

After the last step ``finish(out, store)`` runs on the weights the trainer saves (EMA when on):
encoder methods write ``out/encoder`` (encoder.safetensors + encoder.json), InfoCon labels the store.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from robolearn.errors import UserError
from robolearn.files import read_config_json
from robolearn.pretrain.base import PretrainConfig, pretrainer_class
from robolearn.train.config import RunBase, method_run_config, read_recipe_toml
from robolearn.train.session import RunSession

log = logging.getLogger(__name__)


@dataclass
class PretrainDataConfig:
    episodes: list[int] = field(default_factory=list)  # [] = all episodes
    in_ram: bool = False  # also keep camera frames in RAM (low-dim keys always are)
    num_workers: int = 0


@dataclass
class PretrainRunConfig(RunBase):
    method: str = "dynamo"
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)
    data: PretrainDataConfig = field(default_factory=PretrainDataConfig)


@dataclass
class PretrainResult:
    step: int
    out: Path
    outputs: dict[str, str]  # what finish() wrote, e.g. {"encoder": "runs/.../encoder"}; {} if stopped early
    losses: list[float]


# --- recipes ------------------------------------------------------------------------------------
def load_pretrain_recipe(path: str | Path | None, overrides: list[str] = (), base: dict | None = None) -> PretrainRunConfig:
    """Read a pretraining recipe TOML (or a saved config.json via ``base``) plus dotted ``key=value``
    overrides. Unknown keys, wrong types and unknown methods are UserErrors naming the key."""
    data, where = read_recipe_toml(path, overrides, base)
    return method_run_config(data, where, PretrainRunConfig, "pretrain", pretrainer_class)


def resume_pretrain_config(run_dir: Path, overrides: list[str] = ()) -> PretrainRunConfig:
    return load_pretrain_recipe(None, overrides, base=read_config_json(run_dir, "pretraining run"))


# --- data ------------------------------------------------------------------------------------------
def open_pretrain_data(run: PretrainRunConfig):
    """Check the store against the recipe; fill run.pretrain.{image_keys, obs_shapes, action_dim, env}
    and run.task. -> (store, normaliser stats for the pretrainer)."""
    from robolearn.datasets.store import EpisodeStore, is_image_array
    from robolearn.datasets.validate import check_before_reading
    from robolearn.nn.normalizer import select_stats

    cfg, cls = run.pretrain, pretrainer_class(run.method)
    if not run.dataset:
        raise UserError('dataset: no store given (set `dataset = "PATH"` in the recipe or dataset=PATH)')
    check_before_reading(run.dataset, [*cfg.obs_keys, cfg.action_key], command="pretrain")
    store = EpisodeStore.open(run.dataset, mode="r")
    if store.n_episodes == 0:
        raise UserError(f"{run.dataset}: the store has no episodes")
    for key in cfg.obs_keys:
        if key not in store.keys:
            raise UserError(f"{run.dataset}: no data key {key!r} named in pretrain.obs_keys (store has {', '.join(store.keys)})")
    images = [k for k in cfg.obs_keys if is_image_array(store.array(k))]
    if cls.needs_images and not images:
        raise UserError(f"pretrain.obs_keys: {run.method} needs camera images, but none of {cfg.obs_keys} "
                        f"is an image (uint8 T,H,W,C) in {run.dataset}")
    if cfg.image_keys and sorted(cfg.image_keys) != sorted(images):
        raise UserError(f"pretrain.image_keys: recipe says {cfg.image_keys}, store images among obs_keys are {images}")
    has_actions = cfg.action_key in store.keys
    if cls.needs_actions and not has_actions:
        raise UserError(f"{run.dataset}: {run.method} needs actions, but the store has no {cfg.action_key!r} key "
                        f"(pretrain.action_key; store has {', '.join(store.keys)})")
    action_dim = int(store.array(cfg.action_key).shape[-1]) if has_actions else 0
    if cfg.action_dim and has_actions and cfg.action_dim != action_dim:
        raise UserError(f"pretrain.action_dim: recipe says {cfg.action_dim}, store {run.dataset} has {action_dim}")
    cfg.obs_shapes = {k: [int(s) for s in store.array(k).shape[1:]] for k in cfg.obs_keys}
    cfg.image_keys, cfg.action_dim = images, action_dim
    cfg.env = {"task": store.attrs.get("task", ""), "env": store.attrs.get("env", {})}
    run.task = run.task or str(store.attrs.get("task", "") or "task")
    cls.check_store(store, cfg)

    modes = {k: cfg.obs_norm for k in cfg.lowdim_keys}
    if has_actions:
        modes[cfg.action_key] = cfg.action_norm
    stats = store.stats
    if any(k not in stats for k in modes):
        log.info("store stats missing some keys; recomputing")
        stats = store.compute_stats()
    return store, select_stats(stats, modes)


def window_dataset(run: PretrainRunConfig, store, window: tuple[int, int, int]):
    """The WindowDataset of the pretrainer's (obs_horizon, obs_future, action_horizon)."""
    from robolearn.datasets.sampler import WindowDataset

    cfg = run.pretrain
    obs_horizon, obs_future, action_horizon = window
    has_actions = cfg.action_key in store.keys  # methods that need none also train on stores without
    return WindowDataset(store, obs_keys=cfg.obs_keys, action_key=cfg.action_key if has_actions else None,
                         obs_horizon=obs_horizon, action_horizon=action_horizon,
                         obs_future=obs_future, episodes=run.data.episodes or None, in_ram=run.data.in_ram)


# --- run -------------------------------------------------------------------------------------------
def pretrain(run: PretrainRunConfig, resume: Path | None = None, stop_at: int | None = None) -> PretrainResult:
    """Train ``run``'s pretrainer; with ``resume`` (a run dir) continue from its checkpoints/last.
    Every check on the recipe and store happens before anything is written. Under torchrun
    (WORLD_SIZE > 1) every rank runs this and trains one DDP model; only rank 0 writes checkpoints
    and the outputs of ``finish`` (the exported encoder, InfoCon's store labels)."""
    with RunSession(run, resume) as session:
        store, stats = open_pretrain_data(run)
        session.seed()
        pretrainer = pretrainer_class(run.method)(run.pretrain, stats)  # a bad config raises before anything is written
        dataset = window_dataset(run, store, pretrainer.window)
        per_rank = -(-len(dataset) // session.dist.world_size)
        if per_rank < run.train.batch_size:
            each = " per process" if session.dist.enabled else ""
            raise UserError(f"train.batch_size: {run.train.batch_size} is larger than the {per_rank} windows{each} in {run.dataset}")
        out = session.create_out(f"{run.task}_{run.method}_pretrain")
        trainer = session.trainer(pretrainer, dataset, {"method": run.method, "kind": "pretrain"})
        result = trainer.fit(stop_at=stop_at)
        outputs: dict[str, str] = {}
        if result.step >= run.train.steps:  # finished (not a simulated interruption)
            final = trainer.saved_model  # the weights the checkpoints hold (EMA when on)
            final.eval()
            outputs = session.on_main(lambda: final.finish(out, run.dataset))
            for name, where in outputs.items():
                log.info("%s: %s", name, where)
        return PretrainResult(result.step, out, outputs, result.losses)

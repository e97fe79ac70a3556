"""Pretraining runs: a recipe -> store -> windows -> Pretrainer -> the policy Trainer -> exported encoder.

    dataset = "datasets/lift.zarr"
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
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from robolearn.errors import UserError
from robolearn.files import read_config_json, read_model_files
from robolearn.config_io import from_dict
from robolearn.pretrain.base import FORMAT, PretrainConfig, Pretrainer, pretrainer_class
from robolearn.train.config import TrainConfig, method_run_config, read_recipe_toml, save_run_config

log = logging.getLogger(__name__)


@dataclass
class PretrainDataConfig:
    episodes: list[int] = field(default_factory=list)  # [] = all episodes
    in_ram: bool = False  # also keep camera frames in RAM (low-dim keys always are)
    num_workers: int = 0


@dataclass
class PretrainRunConfig:
    dataset: str = ""
    method: str = "dynamo"
    task: str = ""  # default: the store's "task" attr
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    out: str = ""  # default runs/<task>_<method>_pretrain_<timestamp>
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
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
    from robolearn.nn.normalizer import select_stats

    cfg, cls = run.pretrain, pretrainer_class(run.method)
    if not run.dataset:
        raise UserError('dataset: no store given (set `dataset = "PATH"` in the recipe or dataset=PATH)')
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


def make_pretrainer(config: PretrainConfig, stats: dict[str, dict]) -> Pretrainer:
    return pretrainer_class(config.method)(config, stats)


# --- run -------------------------------------------------------------------------------------------
def default_out(run: PretrainRunConfig) -> Path:
    return Path("runs") / f"{run.task}_{run.method}_pretrain_{time.strftime('%Y%m%d-%H%M%S')}"


def pretrain(run: PretrainRunConfig, resume: Path | None = None, stop_at: int | None = None) -> PretrainResult:
    """Train ``run``'s pretrainer; with ``resume`` (a run dir) continue from its checkpoints/last.
    Every check on the recipe and store happens before anything is written."""
    from robolearn.train.distributed import resolve_device
    from robolearn.train.run import auto_num_threads
    from robolearn.train.trainer import Trainer, seed_everything

    torch.set_num_threads(run.train.num_threads or auto_num_threads())
    device = resolve_device(run.device)
    store, stats = open_pretrain_data(run)
    seed_everything(run.train.seed)
    pretrainer = make_pretrainer(run.pretrain, stats)  # raises on a bad config before anything is written
    dataset = window_dataset(run, store, pretrainer.window)
    if len(dataset) < run.train.batch_size:
        raise UserError(f"train.batch_size: {run.train.batch_size} is larger than the {len(dataset)} windows in {run.dataset}")
    out = Path(resume) if resume is not None else Path(run.out) if run.out else default_out(run)
    if resume is not None and not (out / "checkpoints" / "last").exists():
        raise UserError(f"{out}: no checkpoints/last to resume from")
    run.out = str(out)
    out.mkdir(parents=True, exist_ok=True)
    save_run_config(run, out / "config.json")
    n_params = sum(p.numel() for p in pretrainer.parameters())
    log.info("%s pretrainer: %.2fM parameters, %d windows, out %s", run.method, n_params / 1e6, len(dataset), out)

    trainer = Trainer(pretrainer, dataset, run.train, out, device, num_workers=run.data.num_workers,
                      extra_state={"method": run.method, "kind": "pretrain"})
    if resume is not None:
        trainer.load_checkpoint(out / "checkpoints" / "last")
    result = trainer.fit(stop_at=stop_at)
    outputs: dict[str, str] = {}
    if result.step >= run.train.steps:  # finished (not a simulated interruption)
        final = trainer.ema.model if trainer.ema is not None else trainer.policy
        final.eval()
        outputs = final.finish(out, run.dataset)
        for name, where in outputs.items():
            log.info("%s: %s", name, where)
    return PretrainResult(result.step, out, outputs, result.losses)


# --- checkpoints -----------------------------------------------------------------------------------
def load_pretrainer(path: str | Path, device: str | torch.device = "cpu") -> Pretrainer:
    """Rebuild a pretrainer (eval mode) from a checkpoint dir (checkpoints/step_N, or a run dir's
    checkpoints/last): model.safetensors + config.json + stats.json, sha-checked; nothing pickled."""
    path = Path(path)
    if (path / "checkpoints" / "last").exists():
        path = path / "checkpoints" / "last"
    data, stats, tensors = read_model_files(path, FORMAT, name_stale_file=False)
    cls = pretrainer_class(data.get("method", ""))
    pretrainer = cls(from_dict(cls.config_class, data, str(path / "config.json")), stats)
    try:
        pretrainer.load_state_dict(tensors)
    except RuntimeError as exc:
        raise UserError(f"{path}: weights do not match config ({str(exc).splitlines()[0]})") from None
    return pretrainer.to(device).eval()

"""Run configuration: a recipe TOML maps 1:1 onto `RunConfig` (+ the method's policy config).

    base = "diffusion.toml"              # optional: the recipe this one extends (path relative to this file)
    dataset = "datasets/stores/lift.zarr"  # the store (overridable: dataset=PATH)
    method = "diffusion"                 # registry name -> policy config class
    [policy]  ... fields of the method's config (e.g. horizon = 16, [policy.encoder] ...)
    [train]   ... TrainConfig
    [data]    ... DataConfig

A recipe with `base` is its base recipe (itself maybe with a `base`: chains are fine, a cycle is an
error) deep-merged with the recipe's own keys: tables merge key by key, the including file wins.
`key=value` overrides use dotted keys (policy.horizon=16 train.lr=3e-4) and win over both. Unknown
keys and wrong types raise UserError naming the key. Pretraining runs (robolearn.train.pretrain_run) read their recipes
and run directories with the same functions (read_recipe_toml, method_run_config; robolearn.files.read_config_json).
"""

from __future__ import annotations

import json
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from robolearn.errors import UserError
from robolearn.policies.base import PolicyConfig, policy_class
from robolearn.config_io import apply_overrides, from_dict, read_recipe_file, to_dict


@dataclass
class TrainConfig:
    steps: int = 100_000
    batch_size: int = 64  # per process
    lr: float = 1e-4
    weight_decay: float = 1e-6
    betas: list[float] = field(default_factory=lambda: [0.95, 0.999])
    warmup_steps: int = 500
    min_lr_ratio: float = 0.0  # cosine decays to lr * min_lr_ratio
    grad_clip: float = 1.0  # max grad norm; 0 = off
    ema: bool = True
    ema_decay: float = 0.9999  # max decay (warm-up (1+n)/(10+n) before)
    amp: bool = True  # bf16 autocast, CUDA only
    seed: int = 0
    log_every: int = 10
    checkpoint_every: int = 5_000
    keep_checkpoints: int = 0  # keep the newest N step_* dirs; 0 = keep all
    progress: bool = True
    tensorboard: bool = True
    # torch CPU threads per process; 0 = auto: half the cores (1 on a 2-core machine), at most 8.
    # Measured on 2 cores with one other busy process: a 4.5M UNet step took 107 ms on 1 thread
    # and 4.9 s on torch's default of 2 (OpenMP threads spinning against the other process).
    num_threads: int = 0
    ddp_find_unused_parameters: bool = False  # heads with branches unused in some steps need True

    def validate(self) -> None:
        for name in ("steps", "batch_size", "log_every", "checkpoint_every"):
            if getattr(self, name) < 1:
                raise UserError(f"train.{name}: expected >= 1, got {getattr(self, name)}")
        if self.lr <= 0 or len(self.betas) != 2:
            raise UserError("train.lr/betas: expected lr > 0 and two betas")


@dataclass
class DataConfig:
    num_workers: int = 0
    in_ram: bool = False  # also keep camera frames in RAM (low-dim keys always are)
    weights: str = ""  # meta field holding per-episode loss weights; "" = uniform
    mask_keys: list[str] = field(default_factory=list)
    step_weight_key: str = ""  # per-step label used as the loss weight (0 drops the step), e.g. EIL's "keep"; "" = none
    meta_fields: list[str] = field(default_factory=list)
    episodes: list[int] = field(default_factory=list)  # [] = all episodes


@dataclass
class RunBase:
    """What every run says, training a policy (RunConfig) or pretraining (PretrainRunConfig)."""

    dataset: str = ""
    method: str = ""  # registry name; each kind of run sets its default
    task: str = ""  # default: the store's "task" attr
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    out: str = ""  # default runs/<task>_<method>[_pretrain]_<timestamp>
    train: TrainConfig = field(default_factory=TrainConfig)


@dataclass
class RunConfig(RunBase):
    method: str = "diffusion"
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    data: DataConfig = field(default_factory=DataConfig)
    # sim evaluation of the EMA weights during training (0 = off); best and last are kept
    eval_every: int = 0
    eval_episodes: int = 50
    eval_workers: int = 2
    eval_max_steps: int = 0  # 0 = the task's horizon


def run_config_from_dict(data: dict, where: str) -> RunConfig:
    return method_run_config(data, where, RunConfig, "policy", policy_class)


def method_run_config(data: dict, where: str, run_class: type, section: str, method_class: Callable[[str], type]) -> Any:
    """``run_class`` (RunConfig, PretrainRunConfig) from ``data``. Its ``section`` table ([policy],
    [pretrain]) becomes the config dataclass of ``method_class(method)`` (policy_class,
    pretrainer_class: registry name -> class with a ``config_class``). Both are validated."""
    data = dict(data)
    method = data.get("method", run_class.method)
    if not isinstance(method, str):
        raise UserError(f"{where}: 'method' expected str, got {method!r}")
    cls = method_class(method).config_class
    section_data = data.pop(section, {})
    if isinstance(section_data, dict) and section_data.get("method", method) != method:
        raise UserError(f"{where}: '{section}.method' {section_data['method']!r} differs from method {method!r}")
    run = from_dict(run_class, data, where)
    config = from_dict(cls, section_data, where, prefix=f"{section}.")
    config.method = method
    setattr(run, section, config)
    config.validate()
    run.train.validate()
    return run


def load_recipe(path: str | Path | None, overrides: list[str] = (), base: dict | None = None) -> RunConfig:
    """Read a recipe TOML (or a saved config.json via ``base``) and apply ``key=value`` overrides."""
    return run_config_from_dict(*read_recipe_toml(path, overrides, base))


def read_recipe_toml(path: str | Path | None, overrides: list[str] = (), base: dict | None = None) -> tuple[dict[str, Any], str]:
    """The recipe TOML at ``path`` (its ``base`` chain merged in, see read_recipe_file; or the
    already-resolved dict ``base``, e.g. a run's config.json, when path is None) with dotted
    ``key=value`` overrides applied -> (data, where): ``where`` names the source in errors
    ("config" for ``base``)."""
    data: dict[str, Any] = dict(base or {})
    where = "config"
    if path is not None:
        where = str(path)
        data = read_recipe_file(Path(path))
    data = apply_overrides(data, list(overrides))
    return data, where if not overrides else f"{where} (+ overrides)"


def save_run_config(run: RunConfig, path: Path) -> None:
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(to_dict(run), indent=2, sort_keys=True))
    tmp.replace(path)

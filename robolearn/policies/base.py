"""The Policy protocol, its base class, the method registry, and checkpoint save/load.

A policy is a config dataclass plus an ``nn.Module`` with

    compute_loss(batch) -> dict[str, Tensor]      # "loss" is optimised, the rest is logged
    predict_action_chunk(obs, goal=None) -> Tensor (B, horizon, action_dim)  # raw obs in, raw actions out
    reset()
    save(dir) / load(dir)                          # model.safetensors + config.json + stats.json

``batch`` is a collated `WindowDataset` item dict: obs {key: (B, To, ...)}, action (B, Ta, Da),
action_is_pad (B, Ta), weight (B,) per-episode, step_weight (B, Ta) per-step (``data.step_weight_key``),
goal (a GoalBatch, see robolearn/goal.py), subgoal {key: (B, D)}, future {key: (B, ...)} (the frame
``future_steps`` ahead of each ``future_keys`` key), meta {field: list}.

What a head supports is said by class attributes, asked one way (``policy.supports(...)`` is not
needed: read the attribute): ``goal_modalities`` (goal kinds it can be trained with),
``supports_subgoal`` (sub-goal conditioning, robolearn/policies/subgoal.py) and ``supports_prefix``
(real-time chunking: ``predict_action_chunk`` takes ``prefix``/``prefix_len``). A new head is one
file plus one import line in robolearn/policies/__init__.py.
"""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from robolearn.config_io import from_dict, to_dict
from robolearn.errors import UserError
from robolearn.files import atomic_dir, read_model_files, write_model_files
from robolearn.goal import Goal, GoalConfig, check_goal
from robolearn.nn.goal_encoder import GoalEncoder, embed_instructions
from robolearn.nn.normalizer import Normalizer, select_stats
from robolearn.nn.obs_encoder import EncoderConfig, ObsEncoder, load_pretrained

FORMAT = "robolearn.policy"
FORMAT_VERSION = 1


@dataclass
class PolicyConfig:
    method: str = ""
    obs_keys: list[str] = field(default_factory=lambda: ["state"])  # every obs key used (low-dim and images)
    image_keys: list[str] = field(default_factory=list)  # the subset of obs_keys that are uint8 HWC images
    action_key: str = "action"
    action_dim: int = 0  # 0 = take it from the store
    obs_horizon: int = 2
    horizon: int = 16  # predicted chunk length
    n_action_steps: int = 8  # executed per prediction
    obs_shapes: dict[str, list[int]] = field(default_factory=dict)  # per-step shape per obs key (from the store)
    env: dict[str, Any] = field(default_factory=dict)  # store attrs: task + env kwargs (for eval)
    action_norm: str = "minmax"
    obs_norm: str = "minmax"
    mask_padded_actions: bool = True  # padded steps past the episode end do not count in the loss
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    # Sub-goal conditioning (CoTPC-style, on InfoCon's key states): the head predicts these low-dim
    # keys' values at the next key state (store label `subgoal_label`, e.g. InfoCon's key_state) from
    # its observation features, and conditions its actions on that prediction. [] = off.
    subgoal_keys: list[str] = field(default_factory=list)
    subgoal_label: str = "key_state"
    subgoal_coef: float = 1.0  # weight of the sub-goal regression loss
    # Goal conditioning (robolearn/goal.py): language / goal image / goal state, flagged per sample.
    goal: GoalConfig = field(default_factory=GoalConfig)
    goal_dim: int = 64  # feature size per goal input
    # Frames a head predicts ahead in training (MDT's masked foresight): the sampler adds
    # batch["future"] = {key: the frame future_steps ahead}. [] = none.
    future_keys: list[str] = field(default_factory=list)
    future_steps: int = 3

    def validate(self, where: str = "policy") -> None:
        if self.n_action_steps > self.horizon or self.n_action_steps < 1:
            raise UserError(f"{where}.n_action_steps: expected 1..horizon ({self.horizon}), got {self.n_action_steps}")
        if self.obs_horizon < 1 or self.horizon < 1:
            raise UserError(f"{where}.obs_horizon/horizon: expected >= 1")
        if not self.obs_keys:
            raise UserError(f"{where}.obs_keys: expected at least one key")
        for k in self.image_keys:
            if k not in self.obs_keys:
                raise UserError(f"{where}.image_keys: {k!r} is not in obs_keys")
        for k in self.subgoal_keys:
            if k in self.image_keys:
                raise UserError(f"{where}.subgoal_keys: {k!r} is a camera; sub-goals are low-dim keys")
        if self.future_keys and self.future_steps < 1:
            raise UserError(f"{where}.future_steps: expected >= 1, got {self.future_steps}")
        if self.subgoal_coef < 0:
            raise UserError(f"{where}.subgoal_coef: expected >= 0, got {self.subgoal_coef}")
        self.goal.validate(f"{where}.goal")

    @property
    def lowdim_keys(self) -> list[str]:
        return [k for k in self.obs_keys if k not in self.image_keys]


# method name -> policy class (its ``config_class`` attribute is the config dataclass)
POLICY_REGISTRY: dict[str, type[Policy]] = {}


def register_policy(method: str):
    def deco(cls: type[Policy]) -> type[Policy]:
        cls.method = method
        POLICY_REGISTRY[method] = cls
        return cls

    return deco


def policy_class(method: str) -> type[Policy]:
    import robolearn.policies  # noqa: F401  (fills the registry)

    if method not in POLICY_REGISTRY:
        raise UserError(f"method: unknown policy {method!r} (known: {', '.join(sorted(POLICY_REGISTRY))})")
    return POLICY_REGISTRY[method]


class Policy(nn.Module):
    config_class: type[PolicyConfig] = PolicyConfig
    method: str = ""
    # what the head supports (class attributes; the one way callers ask)
    goal_modalities: tuple[str, ...] = ()  # goal kinds it can be conditioned on (subset of goal.MODALITIES)
    supports_subgoal: bool = False  # sub-goal conditioning (robolearn/policies/subgoal.py)
    supports_prefix: bool = False  # real-time chunking: predict_action_chunk(..., prefix=, prefix_len=)

    def __init__(self, config: PolicyConfig, stats: dict[str, dict]):
        super().__init__()
        config.method = self.method
        config.validate()
        for k in [*config.obs_keys, *config.subgoal_keys, *config.future_keys]:
            if k not in config.obs_shapes:
                raise UserError(f"policy.obs_shapes: no shape for obs key {k!r}")
        if config.action_dim < 1:
            raise UserError("policy.action_dim: expected >= 1 (set it or build the policy from a store)")
        if config.subgoal_keys and not self.supports_subgoal:
            raise UserError(f"policy.subgoal_keys: the {self.method!r} head has no sub-goal conditioning (bc and diffusion do)")
        unsupported = [m for m in config.goal.modalities if m not in self.goal_modalities]
        if unsupported:
            raise UserError(f"policy.goal.modalities: the {self.method!r} head takes no {'/'.join(unsupported)} goals "
                            f"(it takes: {', '.join(self.goal_modalities) or 'none'})")
        for k in config.goal.image_keys if "image" in config.goal.modalities else []:
            if k not in config.goal.image_shapes:
                raise UserError(f"policy.goal.image_shapes: no shape for goal camera {k!r}")
        for k in config.goal.state_keys if "state" in config.goal.modalities else []:
            if k not in config.goal.state_dims:
                raise UserError(f"policy.goal.state_dims: no size for goal key {k!r}")
        self.config = config
        self.normalizer = Normalizer(stats)
        self.subgoal_head: nn.Module | None = None  # a SubgoalHead, built by heads that support it
        # the goal encoder, when the policy is goal-conditioned (its features go into the head's conditioning)
        self.goal_encoder = GoalEncoder(config.goal, config.encoder, config.goal_dim) if config.goal.enabled else None
        self._goal_cache: tuple | None = None  # (Goal, batch size, features) while acting

    def build_obs_encoder(self) -> ObsEncoder:
        """The observation encoder for this config's low-dim keys and cameras (every head calls this)."""
        c = self.config
        lowdim = {k: c.obs_shapes[k][-1] for k in c.lowdim_keys}
        images = {k: c.obs_shapes[k] for k in c.image_keys}
        return ObsEncoder(c.encoder, lowdim, images)

    @property
    def goal_out_dim(self) -> int:
        """Size of the goal feature the head conditions on (0 when not goal-conditioned)."""
        return self.goal_encoder.out_dim if self.goal_encoder is not None else 0

    # --- the protocol -------------------------------------------------------------------
    def forward(self, batch: dict) -> dict[str, torch.Tensor]:
        """DDP hooks forward(); training calls go through here to compute_loss."""
        return self.compute_loss(batch)

    def compute_loss(self, batch: dict) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def predict_action_chunk(self, obs: dict[str, torch.Tensor], goal: Any = None) -> torch.Tensor:
        raise NotImplementedError

    def reset(self) -> None:
        """Clear per-episode state (none in the base heads)."""

    # --- helpers for heads ----------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def prepare_obs(self, obs: dict[str, Any]) -> dict[str, torch.Tensor]:
        """Last obs_horizon steps of each key, on the model device; low-dim keys normalised."""
        out = {}
        to = self.config.obs_horizon
        for k in self.config.obs_keys:
            if k not in obs:
                raise UserError(f"obs: missing key {k!r} (policy expects {self.config.obs_keys})")
            x = torch.as_tensor(obs[k], device=self.device)[:, -to:]
            if x.shape[1] < to:  # short history (episode start): repeat the oldest frame, like the sampler
                x = torch.cat([x[:, :1].expand(-1, to - x.shape[1], *x.shape[2:]), x], dim=1)
            if k in self.config.image_keys:
                out[k] = x  # uint8 (B, To, H, W, C), the encoder converts
            else:
                out[k] = self.normalizer.normalize(k, x.float())
        return out

    def normalized_actions(self, batch: dict) -> torch.Tensor:
        a = batch["action"].float()  # the sampler always names the window "action"
        if a.shape[-1] != self.config.action_dim:
            raise UserError(f"batch action: expected last dim {self.config.action_dim}, got {a.shape[-1]}")
        return self.normalizer.normalize(self.config.action_key, a[:, : self.config.horizon])  # (B, T, Da)

    def chunk_loss(self, err: torch.Tensor, batch: dict) -> torch.Tensor:
        """Reduce an element-wise loss (B, T, Da) to one number.

        Per sample: the mean over its action steps weighted by (not padding) x ``step_weight`` (per
        step, from ``data.step_weight_key``), so a step of weight 0 is removed exactly, as if it were
        not in the window. Over the batch: the mean of ``weight`` (per episode, from ``data.weights``)
        x that, over the samples that have any step left (a sample whose every step weighs 0 is
        removed exactly too; a batch with none left gives 0)."""
        b, t, _ = err.shape
        mask = torch.ones(b, t, device=err.device)
        if self.config.mask_padded_actions and "action_is_pad" in batch:
            mask = (~batch["action_is_pad"][:, :t].bool()).float()
        if "step_weight" in batch:
            mask = mask * batch["step_weight"][:, :t].float().to(err.device)
        steps = mask.sum(-1)  # (B,)
        per_sample = (err.mean(-1) * mask).sum(-1) / steps.clamp_min(1e-8)  # (B,)
        weight = batch["weight"].float().reshape(b).to(err.device) if "weight" in batch else torch.ones_like(per_sample)
        kept = (steps > 0).float()
        return (per_sample * weight * kept).sum() / kept.sum().clamp_min(1.0)

    # --- goals (robolearn/goal.py) --------------------------------------------------------------
    def goal_features(self, goal: Goal | dict | None, batch_size: int) -> torch.Tensor | None:
        """(B, goal_out_dim) features of ``goal`` — a `Goal` (one episode, repeated over the batch), a
        collated GoalBatch (training) or None (every modality absent) — or None when the policy is not
        goal-conditioned (then a real goal is refused with one line, never silently ignored)."""
        cfg = self.config.goal
        if isinstance(goal, Goal) or goal is None:
            check_goal(goal, cfg)
            if self.goal_encoder is None:
                return None
            # a goal stays the same for a whole episode: acting, encode it once (not every chunk)
            goal = goal or Goal()
            cached = self._goal_cache
            if not self.training and cached is not None and cached[1] == batch_size and goal.same_as(cached[0]):
                return cached[2]
            feats = self.goal_encoder(self.prepare_goal(_repeat_goal(goal.batch(cfg.modalities), batch_size)))
            # a snapshot, compared by content: a caller may change its Goal object in place later
            self._goal_cache = None if self.training else (copy.deepcopy(goal), batch_size, feats)
            return feats
        if self.goal_encoder is None:
            return None
        return self.goal_encoder(self.prepare_goal(goal))

    def train(self, mode: bool = True) -> "Policy":
        self._goal_cache = None  # weights may change from here on
        return super().train(mode)

    def prepare_goal(self, goal: dict) -> dict:
        """A GoalBatch -> the tensors GoalEncoder takes: embeddings, uint8 images, normalised state, float flags.
        In training, ``policy.goal.dropout`` hides each present modality of a sample at that rate."""
        cfg, dev = self.config.goal, self.device
        present = {m: torch.as_tensor(goal["present"][m], device=dev).float().reshape(-1) for m in cfg.modalities}
        if self.training and cfg.dropout > 0:
            present = {m: p * (torch.rand_like(p) >= cfg.dropout).float() for m, p in present.items()}
        out: dict[str, Any] = {"present": present}
        if "language" in cfg.modalities:
            out["language"] = embed_instructions(list(goal["instruction"]), dev)
        b = len(next(iter(present.values())))
        if "image" in cfg.modalities:  # an absent goal image is zeros (its flag says so)
            images = goal.get("image") or {}
            out["image"] = {k: torch.as_tensor(images[k], device=dev) if k in images else
                            torch.zeros(b, *cfg.image_shapes[k], dtype=torch.uint8, device=dev) for k in cfg.image_keys}
        if "state" in cfg.modalities:
            state = goal.get("state") or {}
            out["state"] = torch.cat([self.normalizer.normalize(k, torch.as_tensor(state[k], device=dev).float())
                                      if k in state else torch.zeros(b, cfg.state_dims[k], device=dev)
                                      for k in cfg.state_keys], dim=-1)
        return out

    # --- checkpoints ---------------------------------------------------------------------
    def write_files(self, path: Path) -> None:
        """Write the three policy files into an existing directory (not atomic; see save)."""
        write_model_files(path, FORMAT, FORMAT_VERSION, self.method, to_dict(self.config), self.normalizer.to_dict(), self)

    def save(self, path: str | os.PathLike) -> None:
        with atomic_dir(Path(path)) as tmp:
            self.write_files(tmp)

    @classmethod
    def load(cls, path: str | os.PathLike, device: str | torch.device = "cpu") -> Policy:
        return load_policy(path, device)


def load_policy(path: str | os.PathLike, device: str | torch.device = "cpu") -> Policy:
    """Rebuild a policy from a checkpoint directory (config.json "method" picks the class)."""
    path = Path(path)
    data, stats, tensors = read_model_files(path, FORMAT)
    cls = policy_class(data.get("method", ""))
    config = from_dict(cls.config_class, data, str(path / "config.json"))
    policy = cls(config, stats)
    try:
        missing, unexpected = policy.load_state_dict(tensors, strict=False)
    except RuntimeError as exc:  # shape mismatch
        raise UserError(f"{path}: weights do not match config ({str(exc).splitlines()[-1].strip()})") from None
    if missing or unexpected:
        raise UserError(f"{path}: weights do not match config (missing {missing[:3]}, unexpected {unexpected[:3]})")
    return policy.to(device).eval()


def make_policy(config: PolicyConfig, store_stats: dict[str, dict]) -> Policy:
    """Build a fresh policy whose normaliser takes the needed keys from ``store_stats``."""
    cls = policy_class(config.method)
    modes = {config.action_key: config.action_norm}
    goal_state = config.goal.state_keys if "state" in config.goal.modalities else []
    modes.update({k: config.obs_norm for k in [*config.lowdim_keys, *config.subgoal_keys, *goal_state]})
    policy = cls(config, select_stats(store_stats, modes))
    if config.encoder.pretrained and hasattr(policy, "encoder"):
        load_pretrained(policy.encoder, config.encoder.pretrained, config.encoder.freeze_pretrained)
    return policy


def _repeat_goal(goal: dict, b: int) -> dict:
    """A B=1 GoalBatch repeated to batch size ``b`` (one goal for a batch of observations)."""
    import numpy as np

    if b == 1:
        return goal
    out: dict[str, Any] = {"present": {m: np.repeat(v, b, axis=0) for m, v in goal["present"].items()}}
    if "instruction" in goal:
        out["instruction"] = list(goal["instruction"]) * b
    for part in ("image", "state"):
        if part in goal:
            out[part] = {k: np.repeat(v, b, axis=0) for k, v in goal[part].items()}
    return out

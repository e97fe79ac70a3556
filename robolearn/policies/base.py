"""The Policy protocol, its base class, the method registry, and safetensors checkpoints.

A policy is a config dataclass plus an ``nn.Module`` with

    compute_loss(batch) -> dict[str, Tensor]      # "loss" is optimised, the rest is logged
    predict_action_chunk(obs, goal=None) -> Tensor (B, horizon, action_dim)  # raw obs in, raw actions out
    reset()
    save(dir) / load(dir)                          # model.safetensors + config.json + stats.json

``batch`` is a collated `WindowDataset` item dict: obs {key: (B, To, ...)}, action (B, Ta, Da),
action_is_pad (B, Ta), weight (B,), masks {key: (B, Ta)}, meta {field: list}. Extra keys (goal
embeddings, point clouds, per-step weights) pass through untouched, so new heads (MDT, GravMAD,
EIL, OOD-IL) only add a file and a registry entry; the trainer never changes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from robolearn.config_io import from_dict, to_dict
from robolearn.errors import UserError
from robolearn.files import atomic_dir, read_model_files, write_model_files
from robolearn.nn.mlp import mlp
from robolearn.nn.normalizer import Normalizer, select_stats
from robolearn.nn.obs_encoder import EncoderConfig, load_pretrained

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
        if self.subgoal_coef < 0:
            raise UserError(f"{where}.subgoal_coef: expected >= 0, got {self.subgoal_coef}")

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
    supports_subgoal: bool = False  # heads that call build_subgoal / with_subgoal / total_loss

    def __init__(self, config: PolicyConfig, stats: dict[str, dict]):
        super().__init__()
        config.method = self.method
        config.validate()
        for k in [*config.obs_keys, *config.subgoal_keys]:
            if k not in config.obs_shapes:
                raise UserError(f"policy.obs_shapes: no shape for obs key {k!r}")
        if config.action_dim < 1:
            raise UserError("policy.action_dim: expected >= 1 (set it or build the policy from a store)")
        if config.subgoal_keys and not self.supports_subgoal:
            raise UserError(f"policy.subgoal_keys: the {self.method!r} head has no sub-goal conditioning (bc and diffusion do)")
        self.config = config
        self.normalizer = Normalizer(stats)
        self.subgoal_head: nn.Module | None = None  # set by build_subgoal

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
        """Reduce an element-wise loss (B, T, Da) honouring action_is_pad and per-sample weight."""
        b, t, _ = err.shape
        mask = torch.ones(b, t, device=err.device)
        if self.config.mask_padded_actions and "action_is_pad" in batch:
            mask = (~batch["action_is_pad"][:, :t].bool()).float()
        if "step_weight" in batch:  # optional per-step weights (e.g. extraneous-frame masks)
            mask = mask * batch["step_weight"][:, :t].float()
        per_sample = (err.mean(-1) * mask).sum(-1) / mask.sum(-1).clamp_min(1.0)  # (B,)
        weight = batch["weight"].float().reshape(b) if "weight" in batch else torch.ones_like(per_sample)
        return (per_sample * weight).mean()

    # --- sub-goal conditioning (config.subgoal_keys) ---------------------------------------
    def build_subgoal(self, cond_dim: int, hidden: int = 256) -> int:
        """Call from a head's __init__ with the size of its conditioning vector; returns how much
        the sub-goal adds to it (0 when off). The predictor sees what the action head sees."""
        dim = sum(int(self.config.obs_shapes[k][-1]) for k in self.config.subgoal_keys)
        self.subgoal_head = mlp(cond_dim, [hidden, hidden], dim) if dim else None
        return dim

    def with_subgoal(self, cond: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(B, D) conditioning -> (B, D + Dg) with the predicted (normalised) sub-goal, and that
        prediction; unchanged and None when sub-goals are off."""
        if self.subgoal_head is None:
            return cond, None
        pred = self.subgoal_head(cond)
        return torch.cat([cond, pred], dim=-1), pred

    def subgoal_loss(self, pred: torch.Tensor | None, batch: dict) -> dict[str, torch.Tensor]:
        """MSE between the predicted and the true next-key-state values (normalised like the obs),
        weighted like the action loss at step t; {} when sub-goals are off."""
        if pred is None:
            return {}
        if "subgoal" not in batch:
            raise UserError("batch: no 'subgoal' (train on a store with sub-goal labels; see policy.subgoal_keys)")
        target = torch.cat([self.normalizer.normalize(k, batch["subgoal"][k].float().to(pred.device))
                            for k in self.config.subgoal_keys], dim=-1)
        return {"subgoal_loss": self.chunk_loss((pred - target).pow(2)[:, None], batch)}  # one "step": (B, 1, Dg)

    def normalized_subgoal(self, obs: dict[str, torch.Tensor]) -> torch.Tensor | None:
        """The head's sub-goal prediction (B, Dg) from prepared obs; None when off or unsupported."""
        return None

    @torch.no_grad()
    def predict_subgoal(self, obs: dict[str, Any]) -> dict[str, torch.Tensor]:
        """The sub-goal the actions are conditioned on, {key: (B, D)} in the store's units."""
        pred = self.normalized_subgoal(self.prepare_obs(obs))
        if pred is None:
            raise UserError("predict_subgoal: this policy was trained without policy.subgoal_keys")
        return self.unnormalize_subgoal(pred)

    def unnormalize_subgoal(self, pred: torch.Tensor) -> dict[str, torch.Tensor]:
        """A predicted (normalised) sub-goal (B, Dg) -> {key: (B, D) in the store's units}."""
        out, i = {}, 0
        for k in self.config.subgoal_keys:
            d = int(self.config.obs_shapes[k][-1])
            out[k] = self.normalizer.unnormalize(k, pred[:, i:i + d])
            i += d
        return out

    def total_loss(self, action_loss: torch.Tensor, pred: torch.Tensor | None, batch: dict) -> dict[str, torch.Tensor]:
        """{"loss": action loss (+ subgoal_coef x sub-goal loss), and each part for the logs}."""
        extra = self.subgoal_loss(pred, batch)
        if not extra:
            return {"loss": action_loss}
        return {"loss": action_loss + self.config.subgoal_coef * extra["subgoal_loss"], "action_loss": action_loss, **extra}

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
    modes.update({k: config.obs_norm for k in [*config.lowdim_keys, *config.subgoal_keys]})
    policy = cls(config, select_stats(store_stats, modes))
    if config.encoder.pretrained and hasattr(policy, "encoder"):
        load_pretrained(policy.encoder, config.encoder.pretrained, config.encoder.freeze_pretrained)
    return policy

"""Plain MLP behaviour cloning: encoded obs window (+ goal) -> whole action chunk, MSE loss (the baseline)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from einops import rearrange

from robolearn.goal import MODALITIES
from robolearn.nn.mlp import mlp
from robolearn.policies.base import Policy, PolicyConfig, register_policy
from robolearn.policies.subgoal import SubgoalHead, predict_subgoal, with_subgoal_loss


@dataclass
class BCConfig(PolicyConfig):
    method: str = "bc"
    hidden: list[int] = field(default_factory=lambda: [256, 256, 256])
    dropout: float = 0.0


@register_policy("bc")
class BCPolicy(Policy):
    config_class = BCConfig
    goal_modalities = MODALITIES
    supports_subgoal = True

    def __init__(self, config: BCConfig, stats: dict[str, dict]):
        super().__init__(config, stats)
        c = config
        self.encoder = self.build_obs_encoder()
        cond_dim = self.encoder.out_dim * c.obs_horizon + self.goal_out_dim
        if c.subgoal_keys:  # the predicted next key state is appended to the conditioning
            self.subgoal_head = SubgoalHead(c.subgoal_keys, c.obs_shapes, cond_dim)
            cond_dim += self.subgoal_head.out_dim
        self.head = mlp(cond_dim, c.hidden, c.horizon * c.action_dim)
        self.dropout = torch.nn.Dropout(c.dropout)

    def _predict_normalized(self, obs: dict[str, torch.Tensor], goal: Any) -> tuple[torch.Tensor, torch.Tensor | None]:
        cond = rearrange(self.encoder(obs), "b t d -> b (t d)")  # (B, To*D)
        g = self.goal_features(goal, cond.shape[0])  # (B, Dg) or None
        if g is not None:
            cond = torch.cat([cond, g], dim=-1)
        subgoal = None
        if self.subgoal_head is not None:
            cond, subgoal = self.subgoal_head.condition(cond)
        out = self.head(self.dropout(cond))
        return rearrange(out, "b (t a) -> b t a", t=self.config.horizon), subgoal  # (B, T, Da)

    def compute_loss(self, batch: dict) -> dict[str, torch.Tensor]:
        target = self.normalized_actions(batch)  # (B, T, Da)
        pred, subgoal = self._predict_normalized(self.prepare_obs(batch["obs"]), batch.get("goal"))
        loss = self.chunk_loss(F.mse_loss(pred, target, reduction="none"), batch)
        return with_subgoal_loss(self, loss, subgoal, batch)

    @torch.no_grad()
    def predict_action_chunk(self, obs: dict[str, torch.Tensor], goal: Any = None) -> torch.Tensor:
        pred, _ = self._predict_normalized(self.prepare_obs(obs), goal)
        return self.normalizer.unnormalize(self.config.action_key, pred)  # (B, T, Da)

    @torch.no_grad()
    def predict_subgoal(self, obs: dict[str, torch.Tensor], goal: Any = None) -> dict[str, torch.Tensor]:
        """The sub-goal the actions are conditioned on, {key: (B, D)} in the store's units."""
        return predict_subgoal(self, self._predict_normalized(self.prepare_obs(obs), goal)[1])

"""Plain MLP behaviour cloning: encoded obs window -> whole action chunk, MSE loss (the baseline)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from einops import rearrange

from robolearn.nn.mlp import mlp
from robolearn.nn.obs_encoder import ObsEncoder
from robolearn.policies.base import Policy, PolicyConfig, register_policy


@dataclass
class BCConfig(PolicyConfig):
    method: str = "bc"
    hidden: list[int] = field(default_factory=lambda: [256, 256, 256])
    dropout: float = 0.0


@register_policy("bc")
class BCPolicy(Policy):
    config_class = BCConfig
    supports_subgoal = True

    def __init__(self, config: BCConfig, stats: dict[str, dict]):
        super().__init__(config, stats)
        c = config
        lowdim = {k: c.obs_shapes[k][-1] for k in c.lowdim_keys}
        images = {k: c.obs_shapes[k] for k in c.image_keys}
        self.encoder = ObsEncoder(c.encoder, lowdim, images)
        cond_dim = self.encoder.out_dim * c.obs_horizon
        cond_dim += self.build_subgoal(cond_dim)  # + the predicted sub-goal, when subgoal_keys are set
        self.head = mlp(cond_dim, c.hidden, c.horizon * c.action_dim)
        self.dropout = torch.nn.Dropout(c.dropout)

    def _predict_normalized(self, obs: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor | None]:
        feats = rearrange(self.encoder(obs), "b t d -> b (t d)")  # (B, To*D)
        cond, subgoal = self.with_subgoal(feats)
        out = self.head(self.dropout(cond))
        return rearrange(out, "b (t a) -> b t a", t=self.config.horizon), subgoal  # (B, T, Da)

    def compute_loss(self, batch: dict) -> dict[str, torch.Tensor]:
        target = self.normalized_actions(batch)  # (B, T, Da)
        pred, subgoal = self._predict_normalized(self.prepare_obs(batch["obs"]))
        loss = self.chunk_loss(F.mse_loss(pred, target, reduction="none"), batch)
        return self.total_loss(loss, subgoal, batch)

    @torch.no_grad()
    def predict_action_chunk(self, obs: dict[str, torch.Tensor], goal: Any = None) -> torch.Tensor:
        pred, _ = self._predict_normalized(self.prepare_obs(obs))
        return self.normalizer.unnormalize(self.config.action_key, pred)  # (B, T, Da)

    def normalized_subgoal(self, obs: dict[str, torch.Tensor]) -> torch.Tensor | None:
        return self._predict_normalized(obs)[1]

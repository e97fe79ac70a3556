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

    def __init__(self, config: BCConfig, stats: dict[str, dict]):
        super().__init__(config, stats)
        c = config
        lowdim = {k: c.obs_shapes[k][-1] for k in c.lowdim_keys}
        images = {k: c.obs_shapes[k] for k in c.image_keys}
        self.encoder = ObsEncoder(c.encoder, lowdim, images)
        self.head = mlp(self.encoder.out_dim * c.obs_horizon, c.hidden, c.horizon * c.action_dim)
        self.dropout = torch.nn.Dropout(c.dropout)

    def _predict_normalized(self, obs: dict[str, torch.Tensor]) -> torch.Tensor:
        feats = rearrange(self.encoder(obs), "b t d -> b (t d)")  # (B, To*D)
        out = self.head(self.dropout(feats))
        return rearrange(out, "b (t a) -> b t a", t=self.config.horizon)  # (B, T, Da)

    def compute_loss(self, batch: dict) -> dict[str, torch.Tensor]:
        target = self.normalized_actions(batch)  # (B, T, Da)
        pred = self._predict_normalized(self.prepare_obs(batch["obs"]))
        loss = self.chunk_loss(F.mse_loss(pred, target, reduction="none"), batch)
        return {"loss": loss}

    @torch.no_grad()
    def predict_action_chunk(self, obs: dict[str, torch.Tensor], goal: Any = None) -> torch.Tensor:
        pred = self._predict_normalized(self.prepare_obs(obs))
        return self.normalizer.unnormalize(self.config.action_key, pred)  # (B, T, Da)

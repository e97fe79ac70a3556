"""ACT-style policy (Zhao et al. 2023): encoder-decoder transformer predicting an action chunk,
L1 loss, optional CVAE latent (style variable; zero at inference). A goal (robolearn/goal.py) is one
more encoder token. Temporal ensembling is an execution mode (`--mode ensemble`), not part of the head.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from einops import repeat
from torch import nn

from robolearn.errors import UserError
from robolearn.goal import MODALITIES
from robolearn.nn.mlp import sinusoidal_table
from robolearn.policies.base import Policy, PolicyConfig, register_policy


@dataclass
class ACTConfig(PolicyConfig):
    method: str = "act"
    obs_horizon: int = 1
    horizon: int = 16
    n_action_steps: int = 8
    d_model: int = 256
    n_heads: int = 8
    n_encoder_layers: int = 4
    n_decoder_layers: int = 1
    dim_feedforward: int = 1024
    dropout: float = 0.1
    use_vae: bool = True
    latent_dim: int = 32
    n_vae_encoder_layers: int = 4
    kl_weight: float = 10.0

    def validate(self, where: str = "policy") -> None:
        super().validate(where)
        if self.d_model % self.n_heads:
            raise UserError(f"{where}.d_model: must be divisible by n_heads ({self.n_heads})")


def _encoder(c: ACTConfig, layers: int) -> nn.TransformerEncoder:
    layer = nn.TransformerEncoderLayer(c.d_model, c.n_heads, c.dim_feedforward, c.dropout, batch_first=True, norm_first=True)
    return nn.TransformerEncoder(layer, layers, norm=nn.LayerNorm(c.d_model), enable_nested_tensor=False)


@register_policy("act")
class ACTPolicy(Policy):
    config_class = ACTConfig
    goal_modalities = MODALITIES

    def __init__(self, config: ACTConfig, stats: dict[str, dict]):
        super().__init__(config, stats)
        c = config
        self.encoder = self.build_obs_encoder()
        group_dims = ([self.encoder.lowdim_dim] if self.encoder.lowdim_keys else []) + [self.encoder.image_dim] * len(
            self.encoder.image_keys
        )
        self.obs_proj = nn.ModuleList([nn.Linear(d, c.d_model) for d in group_dims])
        self.goal_proj = nn.Linear(self.goal_out_dim, c.d_model) if self.goal_encoder is not None else None
        n_tokens = 1 + len(group_dims) * c.obs_horizon + (self.goal_proj is not None)  # latent + obs (+ goal) tokens
        self.enc_pos = nn.Parameter(torch.randn(1, n_tokens, c.d_model) * 0.02)
        self.latent_proj = nn.Linear(c.latent_dim, c.d_model)
        self.transformer_encoder = _encoder(c, c.n_encoder_layers)
        dec_layer = nn.TransformerDecoderLayer(c.d_model, c.n_heads, c.dim_feedforward, c.dropout, batch_first=True, norm_first=True)
        self.transformer_decoder = nn.TransformerDecoder(dec_layer, c.n_decoder_layers)
        self.queries = nn.Parameter(torch.randn(1, c.horizon, c.d_model) * 0.02)
        self.action_head = nn.Sequential(nn.LayerNorm(c.d_model), nn.Linear(c.d_model, c.action_dim))
        if c.use_vae:
            self.vae_cls = nn.Parameter(torch.zeros(1, 1, c.d_model))
            self.vae_action_proj = nn.Linear(c.action_dim, c.d_model)
            self.vae_state_proj = nn.Linear(self.encoder.lowdim_dim, c.d_model) if self.encoder.lowdim_keys else None
            self.register_buffer("vae_pos", sinusoidal_table(2 + c.horizon, c.d_model)[None], persistent=False)
            self.vae_encoder = _encoder(c, c.n_vae_encoder_layers)
            self.vae_out = nn.Linear(c.d_model, 2 * c.latent_dim)

    def _latent(self, parts: list[torch.Tensor], actions: torch.Tensor, is_pad: torch.Tensor) -> tuple:
        """CVAE posterior q(z | state, action chunk) -> (z, mu, logvar)."""
        b = actions.shape[0]
        tokens = [repeat(self.vae_cls, "1 1 d -> b 1 d", b=b)]
        pad = [torch.zeros(b, 1, dtype=torch.bool, device=actions.device)]
        if self.vae_state_proj is not None:
            tokens.append(self.vae_state_proj(parts[0][:, -1:]))  # (B, 1, d) current low-dim state
            pad.append(pad[0])
        tokens.append(self.vae_action_proj(actions))  # (B, T, d)
        pad.append(is_pad)
        x = torch.cat(tokens, dim=1)
        x = self.vae_encoder(x + self.vae_pos[:, : x.shape[1]], src_key_padding_mask=torch.cat(pad, dim=1))
        mu, logvar = self.vae_out(x[:, 0]).chunk(2, dim=-1)  # (B, L) each
        z = mu + torch.randn_like(mu) * (0.5 * logvar).exp()
        return z, mu, logvar

    def _decode(self, parts: list[torch.Tensor], z: torch.Tensor, goal: Any) -> torch.Tensor:
        obs_tokens = [proj(p) for proj, p in zip(self.obs_proj, parts)]  # (B, To, d) per group
        g = self.goal_features(goal, z.shape[0])  # (B, Dg) or None
        if g is not None:
            obs_tokens.append(self.goal_proj(g)[:, None])  # (B, 1, d)
        x = torch.cat([self.latent_proj(z)[:, None], *obs_tokens], dim=1) + self.enc_pos  # (B, S, d)
        memory = self.transformer_encoder(x)
        q = repeat(self.queries, "1 t d -> b t d", b=z.shape[0])
        return self.action_head(self.transformer_decoder(q, memory))  # (B, T, Da)

    def compute_loss(self, batch: dict) -> dict[str, torch.Tensor]:
        actions = self.normalized_actions(batch)  # (B, T, Da)
        b, t, _ = actions.shape
        is_pad = batch.get("action_is_pad", torch.zeros(b, t, dtype=torch.bool, device=actions.device))[:, :t].bool()
        parts = self.encoder.parts(self.prepare_obs(batch["obs"]))
        if self.config.use_vae:
            z, mu, logvar = self._latent(parts, actions, is_pad)
            kl = (-0.5 * (1 + logvar - mu.pow(2) - logvar.exp())).sum(-1).mean()
        else:
            z = actions.new_zeros(b, self.config.latent_dim)
            kl = actions.new_zeros(())
        pred = self._decode(parts, z, batch.get("goal"))
        l1 = self.chunk_loss(F.l1_loss(pred, actions, reduction="none"), batch)
        return {"loss": l1 + self.config.kl_weight * kl, "l1": l1.detach(), "kl": kl.detach()}

    @torch.no_grad()
    def predict_action_chunk(self, obs: dict[str, torch.Tensor], goal: Any = None) -> torch.Tensor:
        parts = self.encoder.parts(self.prepare_obs(obs))
        z = parts[0].new_zeros(parts[0].shape[0], self.config.latent_dim)
        return self.normalizer.unnormalize(self.config.action_key, self._decode(parts, z, goal))


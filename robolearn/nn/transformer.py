"""Transformer denoiser: action tokens attend to [noise-level token, obs tokens] (cross-attention).

A minimal version of Diffusion Policy's time-series transformer (and the backbone MDT-style
heads can reuse with language/goal tokens appended to the memory).
"""

from __future__ import annotations

import torch
from torch import nn

from robolearn.nn.mlp import SinusoidalPosEmb


class TransformerDenoiser(nn.Module):
    """(B, T, Da) noisy actions, (B,) timesteps, (B, S, Dc) cond tokens -> (B, T, Da)."""

    def __init__(
        self,
        action_dim: int,
        cond_dim: int,
        horizon: int,
        n_cond_tokens: int,
        d_model: int = 256,
        n_heads: int = 4,
        n_layers: int = 8,
        dropout: float = 0.1,
    ):
        super().__init__()
        self.in_proj = nn.Linear(action_dim, d_model)
        self.cond_proj = nn.Linear(cond_dim, d_model)
        self.step_emb = nn.Sequential(SinusoidalPosEmb(d_model), nn.Linear(d_model, d_model))
        self.pos = nn.Parameter(torch.zeros(1, horizon, d_model))
        self.cond_pos = nn.Parameter(torch.zeros(1, 1 + n_cond_tokens, d_model))
        nn.init.normal_(self.pos, std=0.02)
        nn.init.normal_(self.cond_pos, std=0.02)
        self.memory_encoder = nn.TransformerEncoder(
            nn.TransformerEncoderLayer(d_model, n_heads, 4 * d_model, dropout, batch_first=True, norm_first=True),
            num_layers=max(1, n_layers // 4),
            enable_nested_tensor=False,
        )
        self.decoder = nn.TransformerDecoder(
            nn.TransformerDecoderLayer(d_model, n_heads, 4 * d_model, dropout, batch_first=True, norm_first=True),
            num_layers=n_layers,
        )
        self.norm = nn.LayerNorm(d_model)
        self.out = nn.Linear(d_model, action_dim)

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        memory = torch.cat([self.step_emb(t)[:, None], self.cond_proj(cond)], dim=1) + self.cond_pos  # (B, 1+S, d)
        memory = self.memory_encoder(memory)
        h = self.in_proj(x) + self.pos[:, : x.shape[1]]  # (B, T, d)
        return self.out(self.norm(self.decoder(h, memory)))

"""Conditional 1-D temporal UNet with FiLM conditioning (Chi et al., Diffusion Policy).

noise-level + global conditioning vector -> per-block FiLM (scale, bias) over channels.
"""

from __future__ import annotations

import torch
from einops import rearrange
from torch import nn

from robolearn.nn.mlp import SinusoidalPosEmb


class Conv1dBlock(nn.Sequential):
    def __init__(self, c_in: int, c_out: int, kernel: int, groups: int):
        super().__init__(nn.Conv1d(c_in, c_out, kernel, padding=kernel // 2), nn.GroupNorm(groups, c_out), nn.Mish())


class FiLMResBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, cond_dim: int, kernel: int, groups: int):
        super().__init__()
        self.block1 = Conv1dBlock(c_in, c_out, kernel, groups)
        self.block2 = Conv1dBlock(c_out, c_out, kernel, groups)
        self.film = nn.Sequential(nn.Mish(), nn.Linear(cond_dim, 2 * c_out))
        self.skip = nn.Conv1d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        y = self.block1(x)  # (B, C, T)
        scale, bias = rearrange(self.film(cond), "b (two c) -> two b c 1", two=2)
        y = self.block2(y * scale + bias)
        return y + self.skip(x)


class ConditionalUnet1D(nn.Module):
    """(B, T, Da) noisy actions, (B,) timesteps, (B, Dc) cond -> (B, T, Da)."""

    def __init__(
        self,
        action_dim: int,
        cond_dim: int,
        down_dims: list[int],
        step_embed_dim: int = 128,
        kernel: int = 5,
        groups: int = 8,
    ):
        super().__init__()
        self.step_emb = nn.Sequential(
            SinusoidalPosEmb(step_embed_dim),
            nn.Linear(step_embed_dim, 4 * step_embed_dim),
            nn.Mish(),
            nn.Linear(4 * step_embed_dim, step_embed_dim),
        )
        cdim = step_embed_dim + cond_dim
        dims = [action_dim, *down_dims]
        self.down = nn.ModuleList()
        for i, (a, b) in enumerate(zip(dims[:-1], dims[1:])):
            last = i == len(down_dims) - 1
            self.down.append(
                nn.ModuleList(
                    [
                        FiLMResBlock(a, b, cdim, kernel, groups),
                        FiLMResBlock(b, b, cdim, kernel, groups),
                        nn.Conv1d(b, b, 3, 2, 1) if not last else nn.Identity(),
                    ]
                )
            )
        mid = down_dims[-1]
        self.mid = nn.ModuleList([FiLMResBlock(mid, mid, cdim, kernel, groups) for _ in range(2)])
        self.up = nn.ModuleList()
        rev = list(reversed(down_dims))
        for i, (a, b) in enumerate(zip(rev[:-1], rev[1:])):
            self.up.append(
                nn.ModuleList(
                    [
                        FiLMResBlock(2 * a, b, cdim, kernel, groups),
                        FiLMResBlock(b, b, cdim, kernel, groups),
                        nn.ConvTranspose1d(b, b, 4, 2, 1),
                    ]
                )
            )
        self.final = nn.Sequential(Conv1dBlock(down_dims[0], down_dims[0], kernel, groups), nn.Conv1d(down_dims[0], action_dim, 1))

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        c = torch.cat([self.step_emb(t), cond], dim=-1)  # (B, Dc')
        h = rearrange(x, "b t d -> b d t")
        skips = []
        for res1, res2, down in self.down:
            h = res2(res1(h, c), c)
            skips.append(h)
            h = down(h)
        for block in self.mid:
            h = block(h, c)
        for res1, res2, up in self.up:
            h = torch.cat([h, skips.pop()], dim=1)
            h = up(res2(res1(h, c), c))
        return rearrange(self.final(h), "b d t -> b t d")

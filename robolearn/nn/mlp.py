"""Small MLP and sinusoidal embeddings shared by encoders and heads."""

from __future__ import annotations

import math

import torch
from torch import nn


def mlp(in_dim: int, hidden: list[int], out_dim: int | None, act: type[nn.Module] = nn.Mish) -> nn.Sequential:
    """Linear-act stack; ``out_dim=None`` ends with the last hidden layer (activated)."""
    layers: list[nn.Module] = []
    dim = in_dim
    for h in hidden:
        layers += [nn.Linear(dim, h), act()]
        dim = h
    if out_dim is not None:
        layers.append(nn.Linear(dim, out_dim))
    return nn.Sequential(*layers)


class SinusoidalPosEmb(nn.Module):
    """Diffusion-step embedding: (B,) -> (B, dim)."""

    def __init__(self, dim: int):
        super().__init__()
        self.dim = dim

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        half = self.dim // 2
        freqs = torch.exp(torch.arange(half, device=t.device, dtype=torch.float32) * (-math.log(10000.0) / (half - 1)))
        args = t.float()[:, None] * freqs[None, :]  # (B, half)
        return torch.cat([args.sin(), args.cos()], dim=-1)


def sinusoidal_table(n: int, dim: int) -> torch.Tensor:
    """Fixed 1-D positional table (n, dim) for transformers."""
    pos = torch.arange(n, dtype=torch.float32)[:, None]
    div = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))
    table = torch.zeros(n, dim)
    table[:, 0::2] = torch.sin(pos * div)
    table[:, 1::2] = torch.cos(pos * div)[:, : dim // 2]
    return table

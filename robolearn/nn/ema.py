"""Exponential moving average of a model's weights (diffusion_policy-style warm-up)."""

from __future__ import annotations

import copy

import torch
from torch import nn


class EMA:
    """Keeps ``self.model``, a frozen copy updated with decay min(max_decay, (1 + n) / (10 + n))."""

    def __init__(self, model: nn.Module, max_decay: float = 0.9999, warmup: bool = True):
        self.model = copy.deepcopy(model).eval().requires_grad_(False)
        self.max_decay = max_decay
        self.warmup = warmup
        self.n_updates = 0

    def decay(self) -> float:
        if not self.warmup:
            return self.max_decay
        return min(self.max_decay, (1 + self.n_updates) / (10 + self.n_updates))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        d = self.decay()
        for ema_p, p in zip(self.model.parameters(), model.parameters(), strict=True):
            ema_p.lerp_(p.detach().to(ema_p.dtype), 1.0 - d)
        for ema_b, b in zip(self.model.buffers(), model.buffers(), strict=True):
            ema_b.copy_(b)
        self.n_updates += 1

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.model.state_dict()

    def load_state_dict(self, state: dict[str, torch.Tensor], n_updates: int) -> None:
        self.model.load_state_dict(state)
        self.n_updates = n_updates

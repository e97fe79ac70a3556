"""Sub-goal conditioning (CoTPC-style) on key states, e.g. InfoCon's `key_state` label.

With ``policy.subgoal_keys`` set, the sampler hands every window the values of those low-dim keys
at the next key state (`batch["subgoal"]`). A head that supports it (``supports_subgoal = True``)
builds a `SubgoalHead` on its conditioning vector: the head predicts the next key state from what
the action head sees, conditions its actions on that prediction, and adds ``subgoal_coef x`` the
regression loss. At run time the policy needs observations only; `predict_subgoal` shows what the
policy is aiming at.
"""

from __future__ import annotations

import torch
from torch import nn

from robolearn.errors import UserError
from robolearn.nn.mlp import mlp
from robolearn.nn.normalizer import Normalizer


class SubgoalHead(nn.Module):
    """(B, D) conditioning -> (B, Dg) predicted next-key-state values, normalised like the obs."""

    def __init__(self, keys: list[str], obs_shapes: dict[str, list[int]], cond_dim: int, hidden: int = 256):
        super().__init__()
        self.keys = list(keys)
        self.dims = [int(obs_shapes[k][-1]) for k in self.keys]
        self.out_dim = sum(self.dims)
        self.net = mlp(cond_dim, [hidden, hidden], self.out_dim)

    def forward(self, cond: torch.Tensor) -> torch.Tensor:
        return self.net(cond)

    def condition(self, cond: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, D) -> ((B, D + Dg) conditioning with the prediction appended, the prediction)."""
        pred = self(cond)
        return torch.cat([cond, pred], dim=-1), pred

    def target(self, batch: dict, normalizer: Normalizer, device: torch.device) -> torch.Tensor:
        """The true next-key-state values of the batch, normalised: (B, Dg)."""
        if "subgoal" not in batch:
            raise UserError("batch: no 'subgoal' (train on a store with sub-goal labels; see policy.subgoal_keys)")
        return torch.cat([normalizer.normalize(k, batch["subgoal"][k].float().to(device)) for k in self.keys], dim=-1)

    def unnormalize(self, pred: torch.Tensor, normalizer: Normalizer) -> dict[str, torch.Tensor]:
        """(B, Dg) normalised prediction -> {key: (B, D) in the store's units}."""
        out, i = {}, 0
        for k, d in zip(self.keys, self.dims):
            out[k] = normalizer.unnormalize(k, pred[:, i:i + d])
            i += d
        return out


def with_subgoal_loss(policy, action_loss: torch.Tensor, pred: torch.Tensor | None, batch: dict) -> dict[str, torch.Tensor]:
    """{"loss": action loss (+ subgoal_coef x the sub-goal MSE), and each part for the logs}. The
    sub-goal error is weighted like the action loss (padding, per-step and per-episode weights)."""
    head: SubgoalHead | None = policy.subgoal_head
    if head is None or pred is None:
        return {"loss": action_loss}
    target = head.target(batch, policy.normalizer, pred.device)
    sub = policy.chunk_loss((pred - target).pow(2)[:, None], batch)  # one "step": (B, 1, Dg)
    return {"loss": action_loss + policy.config.subgoal_coef * sub, "action_loss": action_loss, "subgoal_loss": sub}


def predict_subgoal(policy, pred: torch.Tensor | None) -> dict[str, torch.Tensor]:
    """A head's normalised sub-goal prediction -> {key: (B, D)} in the store's units; one line when
    the policy was trained without sub-goals."""
    if pred is None or policy.subgoal_head is None:
        raise UserError("predict_subgoal: this policy was trained without policy.subgoal_keys")
    return policy.subgoal_head.unnormalize(pred, policy.normalizer)

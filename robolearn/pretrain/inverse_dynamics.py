"""Inverse-dynamics pretraining (Brandfonbrener et al. 2023, "Inverse Dynamics Pretraining Learns
Good Representations for Multitask Imitation").

A shared image encoder embeds o_t and o_{t+1}; an MLP on [e_t, e_{t+1}] predicts the normalised
action a_t with MSE. Pretrain on (multitask) demos, then freeze the encoder and behaviour-clone a
new task from a few demos. Windows: obs_horizon 1 + obs_future 1, action_horizon 1; the last step of
an episode has no real o_{t+1} (``obs_is_pad``) and is left out of the loss.

As in the paper's code: the MLP has two 256-wide hidden layers (GELU) with dropout 0.1 and a tanh
output (actions are min-max normalised to [-1, 1]); no stop-gradient on e_{t+1}; random-crop
augmentation while training, o_t and o_{t+1} cropped independently (``crop = "frame"``; the
paper's ``single_aug`` flag, one crop shared by both frames, is ``crop = "window"``, and
``"center"`` turns augmentation off). Low-dim keys listed in ``obs_keys`` (e.g. proprio) join the
MLP input at step t only: o_{t+1}'s proprio would give the action away and leave the image encoder
nothing to learn.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from robolearn.errors import UserError
from robolearn.pretrain.base import CROPS, PretrainConfig, Pretrainer, register_pretrainer


@dataclass
class InverseDynamicsConfig(PretrainConfig):
    method: str = "inverse_dynamics"
    hidden: list[int] = field(default_factory=lambda: [256, 256])  # MLP widths (paper: policy-mlp-256)
    dropout: float = 0.1
    tanh: bool = True  # squash predictions into the normalised action range
    crop: str = "frame"  # frame (paper) | window | center (Pretrainer.encode); see the module docstring

    def validate(self, where: str = "pretrain") -> None:
        super().validate(where)
        if self.crop not in CROPS:
            raise UserError(f"{where}.crop: expected one of {', '.join(CROPS)}, got {self.crop!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise UserError(f"{where}.dropout: expected 0 <= dropout < 1, got {self.dropout}")


@register_pretrainer("inverse_dynamics")
class InverseDynamicsPretrainer(Pretrainer):
    config_class = InverseDynamicsConfig
    needs_images = True
    needs_actions = True

    def __init__(self, config: InverseDynamicsConfig, stats: dict[str, dict]):
        super().__init__(config, stats)
        c = config
        if c.action_dim < 1:
            raise UserError("pretrain.action_dim: inverse_dynamics needs actions (build it from a store with the action key)")
        lowdim = sum(c.obs_shapes[k][-1] for k in c.lowdim_keys)
        dim, layers = 2 * self.feature_dim + lowdim, []
        for h in c.hidden:
            layers += [nn.Linear(dim, h), nn.GELU(), nn.Dropout(c.dropout)]
            dim = h
        self.head = nn.Sequential(*layers, nn.Linear(dim, c.action_dim))

    @property
    def window(self) -> tuple[int, int, int]:
        return 1, 1, 1

    def predict(self, obs: dict[str, torch.Tensor]) -> torch.Tensor:
        """Windows {key: (B, 2, ...)} over (t, t+1) -> normalised a_t (B, Da)."""
        e = self.encode(obs, crop=self.config.crop)  # (B, 2, n_cams * d)
        x = [e[:, 0], e[:, 1]]
        if self.config.lowdim_keys:
            x.append(self.lowdim(obs)[:, 0])  # (B, Dlow) at step t
        out = self.head(torch.cat(x, dim=-1))
        return torch.tanh(out) if self.config.tanh else out

    def compute_loss(self, batch: dict) -> dict[str, torch.Tensor]:
        pred = self.predict(batch["obs"])  # (B, Da)
        target = self.normalized_actions(batch)[:, 0]  # (B, Da)
        valid = (~batch["obs_is_pad"][:, 1].bool()).float()  # (B,) o_{t+1} is a real frame
        mse = F.mse_loss(pred, target, reduction="none").mean(-1)  # (B,)
        loss = (mse * valid).sum() / valid.sum().clamp_min(1.0)
        return {"loss": loss, "valid_fraction": valid.mean()}

"""DynaMo (Cui et al. 2024, "DynaMo: In-Domain Dynamics Pretraining for Visuo-Motor Control").

Self-supervised: no actions are used. Each sample is a window of T consecutive frames o_t..o_{t+T-1}
(obs_horizon 1 + obs_future T-1). Per camera, the shared image encoder embeds every frame, e_i, and

    inverse dynamics  z = InvDyn(e_0..e_{T-1})            a causal transformer; z_i sees e_0..e_i, so
                                                          z_{i+1} is the latent action of step i -> i+1
    forward dynamics  ê_{i+1} = FwdDyn([e_i, z_{i+1}])    a causal transformer over the window
    loss = mean_i (1 - cos(ê_{i+1}, sg(e_{i+1})))  +  λ_cov · mean off-diagonal cov(e)²
           + λ_var · mean_d relu(1 - std_d(e))           (std hinge: see "Collapse" below)

The latent action is low-dimensional (8 in the paper's push-T config), so the forward model cannot
just copy e_{i+1}: the encoder has to expose what changes between frames. The target is the same
encoder's embedding with a stop-gradient (the paper's default, SimSiam-style: its configs set
``ema_beta: null``). Steps repeated past the episode end (``obs_is_pad``) are left out of every term.

Collapse: the paper adds only the off-diagonal covariance penalty, which is zero for a constant
embedding; its ResNet-18 has BatchNorm, whose batch statistics keep the features spread. Our
encoders use GroupNorm (DESIGN.md), and with the paper's loss alone the features collapsed on the
tiny test store (std across the batch 0.15 -> 0.006 within 50 steps, loss -> 0). So the VICReg
variance term is added, ``variance_coef * mean_d relu(1 - std_d(e))``; ``variance_coef = 0`` gives
the paper's loss. ``feature_std`` (mean per-feature std across the batch) is logged to watch it.

As in the paper's code (``separate_single_views``) each camera is its own sequence through the same
two transformers; ``separate_views = false`` concatenates the cameras into one embedding instead.
The paper trains without image augmentation (``crop = "center"``, the crop the policy uses at eval);
``"window"`` takes one random crop per window, ``"frame"`` one per frame (``Pretrainer.encode``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from einops import rearrange, repeat
from torch import nn

from robolearn.errors import UserError
from robolearn.pretrain.base import CROPS, PretrainConfig, Pretrainer, register_pretrainer


@dataclass
class DynaMoConfig(PretrainConfig):
    method: str = "dynamo"
    window_size: int = 5  # frames per window T (paper: 5 on push-T, 2-10 elsewhere)
    latent_dim: int = 8  # inverse-dynamics latent action size (paper: 8 on push-T, 64 on kitchen)
    d_model: int = 64  # both transformers (paper: 120 wide, 6 layers, 6 heads)
    n_heads: int = 4
    n_layers: int = 2
    dropout: float = 0.0
    covariance_coef: float = 0.04  # weight of the off-diagonal covariance penalty (paper: 0.04)
    variance_coef: float = 1.0  # VICReg std hinge (not in the paper, see the module docstring); 0 = paper loss
    separate_views: bool = True  # one sequence per camera (paper) or cameras concatenated
    crop: str = "center"  # center | window | frame (Pretrainer.encode); the paper uses no augmentation

    def validate(self, where: str = "pretrain") -> None:
        super().validate(where)
        if self.window_size < 2:
            raise UserError(f"{where}.window_size: expected >= 2 frames, got {self.window_size}")
        if self.latent_dim < 1 or self.n_layers < 1:
            raise UserError(f"{where}.latent_dim/n_layers: expected >= 1")
        if self.d_model % self.n_heads:
            raise UserError(f"{where}.d_model: {self.d_model} is not divisible by n_heads {self.n_heads}")
        if self.crop not in CROPS:
            raise UserError(f"{where}.crop: expected one of {', '.join(CROPS)}, got {self.crop!r}")


class CausalTransformer(nn.Module):
    """(B, T, in_dim) -> (B, T, out_dim); step i attends to steps <= i (pre-norm, learned positions)."""

    def __init__(self, in_dim: int, out_dim: int, max_len: int, d_model: int, n_heads: int, n_layers: int, dropout: float):
        super().__init__()
        self.inp = nn.Linear(in_dim, d_model)
        self.pos = nn.Parameter(torch.randn(1, max_len, d_model) * 0.02)
        layer = nn.TransformerEncoderLayer(d_model, n_heads, 4 * d_model, dropout, activation="gelu",
                                           batch_first=True, norm_first=True)
        self.blocks = nn.TransformerEncoder(layer, n_layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d_model)
        self.out = nn.Linear(d_model, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = x.shape[1]
        mask = nn.Transformer.generate_square_subsequent_mask(t, device=x.device, dtype=x.dtype)
        h = self.blocks(self.inp(x) + self.pos[:, :t], mask=mask, is_causal=True)  # (B, T, d_model)
        return self.out(self.norm(h))


def std_hinge(x: torch.Tensor, floor: float = 1.0) -> torch.Tensor:
    """VICReg variance term: mean over features of relu(floor - std across the batch), x (N, D)."""
    if x.shape[0] < 2:
        return x.new_zeros(())
    return F.relu(floor - torch.sqrt(x.var(dim=0) + 1e-4)).mean()


def off_diagonal_covariance(x: torch.Tensor) -> torch.Tensor:
    """Mean squared off-diagonal entry of the feature covariance of x (N, D) (VICReg-style)."""
    n, d = x.shape
    if n < 2 or d < 2:
        return x.new_zeros(())
    cov = torch.cov(x.T)  # (D, D)
    off = cov - torch.diag(torch.diagonal(cov))
    return off.square().sum() / (d * (d - 1))


@register_pretrainer("dynamo")
class DynaMoPretrainer(Pretrainer):
    config_class = DynaMoConfig
    needs_images = True
    needs_actions = False

    def __init__(self, config: DynaMoConfig, stats: dict[str, dict]):
        super().__init__(config, stats)
        c = config
        d = c.encoder.image_feature_dim if c.separate_views else self.feature_dim
        self.inverse_dynamics = CausalTransformer(d, c.latent_dim, c.window_size, c.d_model, c.n_heads, c.n_layers, c.dropout)
        self.forward_dynamics = CausalTransformer(d + c.latent_dim, d, c.window_size - 1, c.d_model, c.n_heads,
                                                  c.n_layers, c.dropout)

    @property
    def window(self) -> tuple[int, int, int]:
        return 1, self.config.window_size - 1, 1

    def compute_loss(self, batch: dict) -> dict[str, torch.Tensor]:
        c = self.config
        v = len(c.image_keys)
        e = rearrange(self.encode(batch["obs"], crop=c.crop), "b t (v d) -> b t v d", v=v)  # (B, T, V, d)
        b, t = e.shape[:2]
        valid = ~batch["obs_is_pad"].bool() if "obs_is_pad" in batch else torch.ones(b, t, dtype=torch.bool, device=e.device)
        if c.separate_views:
            seq, seq_valid = rearrange(e, "b t v d -> (b v) t d"), repeat(valid, "b t -> (b v) t", v=v)
        else:
            seq, seq_valid = rearrange(e, "b t v d -> b t (v d)"), valid
        z = self.inverse_dynamics(seq)  # (B', T, Z); z[:, i + 1] is the latent action of step i -> i+1
        pred = self.forward_dynamics(torch.cat([seq[:, :-1], z[:, 1:]], dim=-1))  # (B', T-1, D): ê_1..ê_{T-1}
        cos = F.cosine_similarity(pred, seq[:, 1:].detach(), dim=-1)  # (B', T-1), stop-gradient target
        mask = seq_valid[:, 1:].float()
        dynamics = ((1.0 - cos) * mask).sum() / mask.sum().clamp_min(1.0)

        frames = rearrange(e, "b t v d -> (b t v) d")[repeat(valid, "b t -> (b t v)", v=v)]  # real frames only
        covariance = off_diagonal_covariance(frames.float())
        variance = std_hinge(frames.float()) if c.variance_coef else frames.new_zeros(())
        loss = dynamics + c.covariance_coef * covariance + c.variance_coef * variance
        return {
            "loss": loss,
            "dynamics_loss": dynamics.detach(),
            "covariance_loss": covariance.detach(),
            "variance_loss": variance.detach(),
            "feature_std": frames.detach().float().std(dim=0).mean(),  # across the batch; ~0 means collapse
        }

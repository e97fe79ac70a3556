"""ACT-JEPA (Vujinovic & Kovacevic 2025): jointly predict the action chunk and the latents of the
future observation chunk from the current observation.

    context encoder   the shared image encoder (one token per camera) + a linear proprio token, on o_t
    target encoder    a frozen EMA copy of the context encoder on o_{t+1..t+Tf}  -> (B, Tf, n_tok, d)
    predictor         transformer over [context tokens, Tf learned queries] -> the target latents
    action decoder    transformer over [context tokens, Ta learned queries] -> a_{t..t+Ta-1} (normalised)

    loss = L1(actions) + latent_weight * latent loss (smooth-L1 on layer-normed latents, or 1 - cosine)

No public code exists; this follows the paper's description. Choices of ours: the target encoder is
updated with a constant EMA momentum inside `compute_loss` (the Trainer only calls forward), before
the targets are computed, so the target after step n is EMA(context weights after steps 0..n-1);
future steps past the episode end (`obs_is_pad`) and padded actions are masked out; the target sees
center crops (eval mode), the context random crops. `feat_std` (the per-feature std of the image
features across the batch) is logged as a collapse indicator. The exported encoder is the context
image encoder (the Trainer's EMA of it), the one the action decoder was trained through; I-JEPA
evaluates its target encoder instead, which is a similar EMA of the same weights.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from einops import rearrange, repeat
from torch import nn

from robolearn.errors import UserError
from robolearn.pretrain.base import PretrainConfig, Pretrainer, masked_mean, register_pretrainer


@dataclass
class ActJepaConfig(PretrainConfig):
    obs_keys: list[str] = field(default_factory=lambda: ["agentview_image", "proprio"])
    future_steps: int = 8  # Tf: future observations whose target latents are predicted
    action_horizon: int = 16  # Ta: the action chunk decoded from the context
    d_model: int = 128
    n_heads: int = 4
    n_layers: int = 2  # per transformer (predictor and action decoder)
    dropout: float = 0.0
    latent_weight: float = 1.0
    latent_loss: str = "smooth_l1"  # or "cosine"
    target_momentum: float = 0.996  # EMA momentum of the target encoder

    def validate(self, where: str = "pretrain") -> None:
        super().validate(where)
        if self.future_steps < 1 or self.action_horizon < 1:
            raise UserError(f"{where}.future_steps/action_horizon: expected >= 1")
        if self.latent_loss not in ("smooth_l1", "cosine"):
            raise UserError(f"{where}.latent_loss: expected 'smooth_l1' or 'cosine', got {self.latent_loss!r}")
        if not 0.0 <= self.target_momentum <= 1.0:
            raise UserError(f"{where}.target_momentum: expected a value in [0, 1]")
        if self.d_model % self.n_heads:
            raise UserError(f"{where}.d_model: must be divisible by n_heads ({self.n_heads})")


def _transformer(c: ActJepaConfig) -> nn.TransformerEncoder:
    layer = nn.TransformerEncoderLayer(c.d_model, c.n_heads, 4 * c.d_model, c.dropout, batch_first=True, norm_first=True)
    return nn.TransformerEncoder(layer, c.n_layers, norm=nn.LayerNorm(c.d_model), enable_nested_tensor=False)


@register_pretrainer("act_jepa")
class ActJepa(Pretrainer):
    config_class = ActJepaConfig
    needs_actions = True

    def __init__(self, config: ActJepaConfig, stats: dict[str, dict]):
        super().__init__(config, stats)
        c, d_img = config, config.encoder.image_feature_dim
        n_lowdim = sum(int(c.obs_shapes[k][-1]) for k in c.lowdim_keys)
        self.proprio = nn.Linear(n_lowdim, d_img) if n_lowdim else None
        self.n_tokens = len(c.image_keys) + (1 if n_lowdim else 0)  # context tokens per observation
        self.target_encoder = copy.deepcopy(self.encoder).requires_grad_(False)
        self.target_proprio = copy.deepcopy(self.proprio).requires_grad_(False) if self.proprio else None

        self.token_proj = nn.Linear(d_img, c.d_model)
        self.token_pos = nn.Parameter(torch.randn(1, self.n_tokens, c.d_model) * 0.02)
        self.latent_queries = nn.Parameter(torch.randn(1, c.future_steps, c.d_model) * 0.02)
        self.action_queries = nn.Parameter(torch.randn(1, c.action_horizon, c.d_model) * 0.02)
        self.predictor = _transformer(c)
        self.decoder = _transformer(c)
        self.latent_head = nn.Linear(c.d_model, self.n_tokens * d_img)
        self.action_head = nn.Linear(c.d_model, c.action_dim)

    @property
    def window(self) -> tuple[int, int, int]:
        return 1, self.config.future_steps, self.config.action_horizon

    def tokens(self, obs: dict[str, torch.Tensor], target: bool = False) -> torch.Tensor:
        """obs {key: (B, T, ...)} -> (B, T, n_tokens, d_img): one token per camera (+ one proprio token)."""
        enc, prop = (self.target_encoder, self.target_proprio) if target else (self.encoder, self.proprio)
        b = next(iter(obs.values())).shape[0]
        toks = [enc(rearrange(obs[k], "b t h w c -> (b t) h w c")) for k in self.config.image_keys]  # [(B*T, d)]
        if prop is not None:
            toks.append(prop(rearrange(self.lowdim(obs), "b t d -> (b t) d")))
        return rearrange(torch.stack(toks, dim=1), "(b t) n d -> b t n d", b=b)

    @torch.no_grad()
    def update_target(self) -> None:
        """target <- m * target + (1 - m) * context, for the image encoder and the proprio token."""
        m = self.config.target_momentum
        pairs = [(self.target_encoder, self.encoder)] + ([(self.target_proprio, self.proprio)] if self.proprio else [])
        for target, online in pairs:
            for pt, p in zip(target.parameters(), online.parameters(), strict=True):
                pt.lerp_(p.detach(), 1.0 - m)

    def compute_loss(self, batch: dict) -> dict[str, torch.Tensor]:
        c, obs = self.config, batch["obs"]
        if self.training:
            self.update_target()
        current = {k: v[:, :1] for k, v in obs.items()}  # (B, 1, ...)
        future = {k: v[:, 1:] for k, v in obs.items()}  # (B, Tf, ...)
        weight = batch.get("weight")

        ctx = self.tokens(current)[:, 0]  # (B, n, d_img)
        mem = self.token_proj(ctx) + self.token_pos  # (B, n, D)
        b, n = mem.shape[:2]

        # predictor: learned query per future step -> the target latents of that step
        q = repeat(self.latent_queries, "1 t d -> b t d", b=b)
        pred = self.latent_head(self.predictor(torch.cat([mem, q], dim=1))[:, n:])  # (B, Tf, n * d_img)
        pred = rearrange(pred, "b t (n d) -> b t n d", n=self.n_tokens)
        with torch.no_grad():
            self.target_encoder.eval()  # center crop for the targets
            target = self.tokens(future, target=True)  # (B, Tf, n, d_img)
        if c.latent_loss == "cosine":
            per_step = (1 - F.cosine_similarity(pred, target, dim=-1)).mean(-1)  # (B, Tf)
        else:
            target = F.layer_norm(target, target.shape[-1:])
            per_step = F.smooth_l1_loss(pred, target, reduction="none").mean((-1, -2))  # (B, Tf)
        valid_future = ~batch["obs_is_pad"][:, 1:] if "obs_is_pad" in batch else torch.ones_like(per_step, dtype=torch.bool)
        latent_loss = masked_mean(per_step, valid_future, weight)

        # action decoder: learned query per chunk step -> normalised a_{t..t+Ta-1}
        q = repeat(self.action_queries, "1 t d -> b t d", b=b)
        actions = self.action_head(self.decoder(torch.cat([mem, q], dim=1))[:, n:])  # (B, Ta, Da)
        l1 = (actions - self.normalized_actions(batch)).abs().mean(-1)  # (B, Ta)
        action_loss = masked_mean(l1, ~batch["action_is_pad"], weight)

        # collapse indicator: per-feature std of the image features across the batch (-> 0 if all frames look alike)
        feat_std = ctx[:, : len(c.image_keys)].detach().float().std(dim=0, correction=0).mean()
        return {
            "loss": action_loss + c.latent_weight * latent_loss,
            "action_l1": action_loss.detach(),
            "latent_loss": latent_loss.detach(),
            "feat_std": feat_std,
        }

"""MDT: Multimodal Diffusion Transformer (Reuss et al., RSS 2024; code: intuitive-robots/mdt_policy).

One goal-conditioned policy learned from demos of which only a few carry an instruction: every
demo's final frame is a goal image, and two self-supervised losses tie the goal modalities together.

    goal token     the instruction (frozen MiniLM -> Linear) OR the goal image (ResNet per goal
                   camera -> Linear); a learned "no goal" token when a sample has neither
    encoder        [goal token, obs tokens (proprio, one per camera, per obs step)] -> transformer
                   encoder -> latent tokens; latent[0] is the latent goal
    decoder        noisy action tokens, noise level (plus the latent goal, as MDT's goal-conditioned
                   adaLN) injected by adaLN-Zero (scale/shift/gate per sub-layer, as in DiT),
                   self-attention, cross-attention to the latent tokens
    diffusion      score-based (EDM, Karras et al. 2022): c_skip, c_out, c_in, c_noise with
                   sigma_data 0.5; training sigmas from a log-logistic (loc log sigma_data, scale 0.5,
                   clipped to [sigma_min, sigma_max]); acting: diffusers' EDMEulerScheduler, 10 steps on
                   an exponential sigma schedule (Euler on the probability-flow ODE in sigma is the DDIM
                   sampler MDT uses)
    MGF            masked generative foresight: a small transformer decoder sees 25% of the patches of
                   the frame ``future_steps`` ahead (``future_keys`` cameras), cross-attends to the latent
                   tokens and reconstructs the other 75%; MSE on the masked patches
    CLA            contrastive latent alignment: on samples with both an instruction and a goal image,
                   symmetric InfoNCE between the projected latent goal under the language goal and under
                   the image goal (learnable temperature, init 0.07)

    loss = diffusion + mgf_coef * MGF + cla_coef * CLA      (1 and 1, as the paper; each term logged)

A training batch runs the encoder once per goal a sample has ("vis" rows for every sample with a goal
image, "lang" rows for the labelled ones, as MDT's two data loaders do); the diffusion loss is the
mean over all rows. Acting, an instruction is used when the goal has one, else the goal image.

Where we chose (the paper or code is silent or does not fit a laptop): the encoder does not see the
noise level (MDT's does, via the same adaLN), so one encoder pass serves every sampling step;
observation features come from our ResNet/state encoders instead of Voltron + perceiver; the MGF
decoder keeps all patch positions (mask tokens in place) instead of MAE's shuffle-and-restore; in
CLA, two samples with the same instruction are not used as each other's negatives (a multitask store
repeats instructions within a batch). Real-time chunking: the committed prefix replaces those
positions at every sampling step (noised to that step's sigma) and is exact at the end; no guidance.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from diffusers import EDMEulerScheduler
from einops import rearrange
from torch import nn

from robolearn.errors import UserError
from robolearn.goal import GoalConfig
from robolearn.nn.mlp import SinusoidalPosEmb
from robolearn.policies.base import Policy, PolicyConfig, register_policy


@dataclass
class MDTConfig(PolicyConfig):
    method: str = "mdt"
    obs_horizon: int = 1
    horizon: int = 10  # MDT's act_window_size
    n_action_steps: int = 10
    d_model: int = 128
    n_heads: int = 4
    encoder_layers: int = 2
    decoder_layers: int = 3
    dropout: float = 0.1
    # EDM diffusion
    sigma_data: float = 0.5
    sigma_min: float = 0.001
    sigma_max: float = 80.0
    sigma_schedule: str = "exponential"  # or "karras"
    loglogistic_scale: float = 0.5
    num_inference_steps: int = 10
    # masked generative foresight (on the cameras in `future_keys`, `future_steps` ahead)
    mgf_coef: float = 1.0
    mgf_mask_ratio: float = 0.75
    mgf_patch: int = 8
    mgf_layers: int = 2
    # contrastive latent alignment
    cla_coef: float = 1.0
    cla_dim: int = 64
    goal: GoalConfig = field(default_factory=GoalConfig)

    def validate(self, where: str = "policy") -> None:
        super().validate(where)
        if self.d_model % self.n_heads:
            raise UserError(f"{where}.d_model: must be divisible by n_heads ({self.n_heads})")
        if self.sigma_schedule not in ("exponential", "karras"):
            raise UserError(f"{where}.sigma_schedule: expected 'exponential' or 'karras', got {self.sigma_schedule!r}")
        if not 0 < self.sigma_min < self.sigma_max:
            raise UserError(f"{where}.sigma_min/sigma_max: expected 0 < sigma_min < sigma_max")
        if not 0.0 < self.mgf_mask_ratio < 1.0:
            raise UserError(f"{where}.mgf_mask_ratio: expected 0 < ratio < 1, got {self.mgf_mask_ratio}")
        if self.mgf_coef < 0 or self.cla_coef < 0:
            raise UserError(f"{where}.mgf_coef/cla_coef: expected >= 0")
        if self.num_inference_steps < 1:
            raise UserError(f"{where}.num_inference_steps: expected >= 1")


class AdaLNBlock(nn.Module):
    """Decoder block: self-attention, cross-attention to the latent tokens and an MLP, each
    pre-normed and modulated by the noise embedding (adaLN-Zero: the gates start at zero)."""

    def __init__(self, d: int, heads: int, dropout: float):
        super().__init__()
        self.norms = nn.ModuleList(nn.LayerNorm(d, elementwise_affine=False) for _ in range(3))
        self.self_attn = nn.MultiheadAttention(d, heads, dropout=dropout, batch_first=True)
        self.cross_attn = nn.MultiheadAttention(d, heads, dropout=dropout, batch_first=True)
        self.mlp = nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(), nn.Dropout(dropout), nn.Linear(4 * d, d))
        self.ada = nn.Sequential(nn.SiLU(), nn.Linear(d, 9 * d))
        nn.init.zeros_(self.ada[1].weight)
        nn.init.zeros_(self.ada[1].bias)

    def forward(self, x: torch.Tensor, memory: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        mods = self.ada(c)[:, None].chunk(9, dim=-1)  # 3 x (shift, scale, gate), each (B, 1, d)
        h = self.norms[0](x) * (1 + mods[1]) + mods[0]
        x = x + mods[2] * self.self_attn(h, h, h, need_weights=False)[0]
        h = self.norms[1](x) * (1 + mods[4]) + mods[3]
        x = x + mods[5] * self.cross_attn(h, memory, memory, need_weights=False)[0]
        h = self.norms[2](x) * (1 + mods[7]) + mods[6]
        return x + mods[8] * self.mlp(h)


class ForesightDecoder(nn.Module):
    """Masked generative foresight: reconstruct the masked patches of future frames from latent tokens."""

    def __init__(self, shapes: dict[str, list[int]], d: int, heads: int, layers: int, patch: int, dropout: float):
        super().__init__()
        self.keys, self.patch = sorted(shapes), patch
        n = 0
        for k in self.keys:
            h, w, ch = shapes[k]
            if h % patch or w % patch:
                raise UserError(f"policy.mgf_patch: {patch} does not divide the {k!r} frame size {h}x{w}")
            n += (h // patch) * (w // patch)
        self.n_patches, self.patch_dim = n, patch * patch * int(shapes[self.keys[0]][-1])
        self.embed = nn.Linear(self.patch_dim, d)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, d))
        self.pos = nn.Parameter(torch.randn(1, n, d) * 0.02)
        layer = nn.TransformerDecoderLayer(d, heads, 4 * d, dropout, batch_first=True, norm_first=True)
        self.decoder = nn.TransformerDecoder(layer, layers)
        self.norm = nn.LayerNorm(d)
        self.out = nn.Linear(d, self.patch_dim)

    def patches(self, frames: dict[str, torch.Tensor]) -> torch.Tensor:
        """{key: uint8 (B, H, W, C)} -> (B, n_patches, p*p*C) in [-1, 1]."""
        p = self.patch
        return torch.cat([rearrange(frames[k].float() / 127.5 - 1.0, "b (h p1) (w p2) c -> b (h w) (p1 p2 c)", p1=p, p2=p)
                          for k in self.keys], dim=1)

    def loss(self, latents: torch.Tensor, frames: dict[str, torch.Tensor], mask_ratio: float) -> torch.Tensor:
        """Per-sample MSE (B,) over the masked patches (a random ``mask_ratio`` of them per sample)."""
        target = self.patches(frames)
        b, n, _ = target.shape
        n_masked = max(1, int(round(mask_ratio * n)))
        ranks = torch.rand(b, n, device=target.device).argsort(dim=1).argsort(dim=1)
        masked = ranks < n_masked  # (B, n) True = hidden from the decoder
        tokens = torch.where(masked[..., None], self.mask_token.expand(b, n, -1), self.embed(target)) + self.pos
        pred = self.out(self.norm(self.decoder(tokens, latents)))
        err = (pred - target).square().mean(-1)  # (B, n)
        return (err * masked).sum(-1) / n_masked


@register_policy("mdt")
class MDTPolicy(Policy):
    config_class = MDTConfig
    goal_modalities = ("language", "image")
    supports_prefix = True

    def __init__(self, config: MDTConfig, stats: dict[str, dict]):
        super().__init__(config, stats)
        c, d = config, config.d_model
        self.encoder = self.build_obs_encoder()
        group_dims = ([self.encoder.lowdim_dim] if self.encoder.lowdim_keys else []) + \
            [self.encoder.image_dim] * len(self.encoder.image_keys)
        self.obs_proj = nn.ModuleList(nn.Linear(g, d) for g in group_dims)
        n_obs_tokens = len(group_dims) * c.obs_horizon
        # one goal token: the instruction's or the goal image's (the GoalEncoder's per-modality features)
        ge = self.goal_encoder
        self.language_token = nn.Linear(ge.dim, d) if ge is not None and ge.language is not None else None
        self.image_token = nn.Linear(ge.dim * len(ge.image_keys), d) if ge is not None and ge.image_keys else None
        self.null_goal = nn.Parameter(torch.zeros(1, d))
        self.token_pos = nn.Parameter(torch.randn(1, 1 + n_obs_tokens, d) * 0.02)
        layer = nn.TransformerEncoderLayer(d, c.n_heads, 4 * d, c.dropout, batch_first=True, norm_first=True)
        self.latent_encoder = nn.TransformerEncoder(layer, c.encoder_layers, norm=nn.LayerNorm(d), enable_nested_tensor=False)
        # the action decoder
        self.action_in = nn.Linear(c.action_dim, d)
        self.action_pos = nn.Parameter(torch.randn(1, c.horizon, d) * 0.02)
        self.noise_emb = nn.Sequential(SinusoidalPosEmb(d), nn.Linear(d, d), nn.SiLU(), nn.Linear(d, d))
        self.goal_cond = nn.Linear(d, d)  # the latent goal joins the adaLN conditioning
        self.blocks = nn.ModuleList(AdaLNBlock(d, c.n_heads, c.dropout) for _ in range(c.decoder_layers))
        self.action_norm = nn.LayerNorm(d)
        self.action_out = nn.Linear(d, c.action_dim)
        # auxiliary objectives
        self.foresight = None
        if c.future_keys and c.mgf_coef > 0:
            shapes = {k: c.obs_shapes[k] for k in c.future_keys}
            if any(len(s) != 3 for s in shapes.values()):
                raise UserError(f"policy.future_keys: MDT's foresight reconstructs camera frames, got shapes {shapes}")
            self.foresight = ForesightDecoder(shapes, d, c.n_heads, c.mgf_layers, c.mgf_patch, c.dropout)
        self.cla_proj = nn.Linear(d, c.cla_dim) if self.language_token is not None and self.image_token is not None else None
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))
        self.scheduler = EDMEulerScheduler(sigma_min=c.sigma_min, sigma_max=c.sigma_max, sigma_data=c.sigma_data,
                                           sigma_schedule=c.sigma_schedule)

    # --- the two transformers ---------------------------------------------------------------
    def obs_tokens(self, obs: dict[str, torch.Tensor]) -> torch.Tensor:
        """(B, To * n_groups, d): one token per obs step per group (proprio, each camera)."""
        return torch.cat([proj(part) for proj, part in zip(self.obs_proj, self.encoder.parts(obs))], dim=1)

    def goal_tokens(self, goal: Any, b: int) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """({"language"/"image": (B, d) token}, {modality: (B,) bool present}) for a GoalBatch, Goal or None."""
        feats = self.goal_features(goal, b)
        if feats is None:
            return {}, {}
        parts, flags = self.goal_encoder.split(feats)
        tokens = {}
        if self.language_token is not None:
            tokens["language"] = self.language_token(parts["language"])
        if self.image_token is not None:
            tokens["image"] = self.image_token(parts["image"])
        return tokens, {m: f > 0.5 for m, f in flags.items() if m in tokens}

    def latents(self, obs_tokens: torch.Tensor, goal_token: torch.Tensor) -> torch.Tensor:
        """(B, 1 + S, d) latent tokens; [:, 0] is the latent goal."""
        return self.latent_encoder(torch.cat([goal_token[:, None], obs_tokens], dim=1) + self.token_pos)

    def denoise(self, x_in: torch.Tensor, c_noise: torch.Tensor, latents: torch.Tensor) -> torch.Tensor:
        """The raw network F(c_in x, c_noise) over the action chunk (B, T, Da)."""
        h = self.action_in(x_in) + self.action_pos[:, : x_in.shape[1]]
        # adaLN conditioning: the noise level (c_noise = log(sigma)/4 spans ~[-1.7, 1.1]) plus the latent goal
        c = self.noise_emb(c_noise.reshape(-1) * 250.0).expand(latents.shape[0], -1) + self.goal_cond(latents[:, 0])
        for block in self.blocks:
            h = block(h, latents, c)
        return self.action_out(self.action_norm(h))

    # --- training ---------------------------------------------------------------------------
    def sample_sigmas(self, n: int, device: torch.device) -> torch.Tensor:
        """Log-logistic noise levels (loc log sigma_data, scale 0.5) truncated to [sigma_min, sigma_max]."""
        c = self.config
        loc, s = math.log(c.sigma_data), c.loglogistic_scale
        lo, hi = (torch.sigmoid(torch.tensor((math.log(v) - loc) / s)) for v in (c.sigma_min, c.sigma_max))
        u = torch.rand(n, device=device) * (hi - lo) + lo
        return torch.exp(torch.logit(u) * s + loc)

    def goal_rows(self, tokens: dict, present: dict, b: int) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        """The encoder rows of a batch: (sample index per row, goal token per row, {modality: row ids}).
        A sample gets one row per goal modality it has, or one "no goal" row."""
        idx, toks, rows = [], [], {}
        covered = torch.zeros(b, dtype=torch.bool, device=self.null_goal.device)
        at = 0
        for m in ("image", "language"):
            if m not in tokens:
                continue
            which = present[m].nonzero().reshape(-1)
            idx.append(which)
            toks.append(tokens[m][which])
            rows[m] = torch.arange(at, at + len(which), device=which.device)
            at += len(which)
            covered[which] = True
        rest = (~covered).nonzero().reshape(-1)
        idx.append(rest)
        toks.append(self.null_goal.expand(len(rest), -1))
        return torch.cat(idx), torch.cat(toks), rows

    def compute_loss(self, batch: dict) -> dict[str, torch.Tensor]:
        c = self.config
        actions = self.normalized_actions(batch)  # (B, T, Da)
        b = actions.shape[0]
        obs_tok = self.obs_tokens(self.prepare_obs(batch["obs"]))
        tokens, present = self.goal_tokens(batch.get("goal"), b)
        idx, goal_tok, rows = self.goal_rows(tokens, present, b)
        lat = self.latents(obs_tok[idx], goal_tok)  # (R, 1 + S, d), R >= B rows

        # score matching (EDM): F(c_in x_sigma, c_noise) regresses (a - c_skip x_sigma) / c_out
        a = actions[idx]
        sigma = self.sample_sigmas(len(idx), a.device)[:, None, None]
        noised = a + torch.randn_like(a) * sigma
        c_skip = c.sigma_data**2 / (sigma**2 + c.sigma_data**2)
        c_out = sigma * c.sigma_data / (sigma**2 + c.sigma_data**2).sqrt()
        pred = self.denoise(self.scheduler.precondition_inputs(noised, sigma), self.scheduler.precondition_noise(sigma), lat)
        err = (pred - (a - c_skip * noised) / c_out).square()
        diffusion = self.chunk_loss(err, _rows_of(batch, idx))
        out = {"diffusion_loss": diffusion}
        loss = diffusion

        if self.foresight is not None:
            if "future" not in batch:
                raise ValueError("MDT foresight: the batch has no future frames (set policy.future_keys for the sampler)")
            first = torch.full((b,), -1, dtype=torch.long, device=idx.device)  # each sample's first row
            first.scatter_reduce_(0, idx, torch.arange(len(idx), device=idx.device), reduce="amin", include_self=False)
            frames = {k: torch.as_tensor(batch["future"][k], device=lat.device) for k in self.foresight.keys}
            per_sample = self.foresight.loss(lat[first], frames, c.mgf_mask_ratio)
            weight = batch["weight"].float().to(lat.device) if "weight" in batch else torch.ones(b, device=lat.device)
            mgf = (per_sample * weight).mean()
            out["mgf_loss"] = mgf
            loss = loss + c.mgf_coef * mgf

        if self.cla_proj is not None:
            cla = self.alignment_loss(lat, idx, rows, batch.get("goal"))
            out["cla_loss"] = cla
            loss = loss + c.cla_coef * cla
        out["loss"] = loss
        return out

    def alignment_loss(self, lat: torch.Tensor, idx: torch.Tensor, rows: dict, goal: dict | None) -> torch.Tensor:
        """Symmetric InfoNCE between latent goals under the instruction and under the goal image of the
        same samples (those that have both); 0 with fewer than two such samples."""
        if "language" not in rows or "image" not in rows:
            return lat.new_zeros(())
        img_row = torch.full((int(idx.max()) + 1,), -1, dtype=torch.long, device=idx.device)
        img_row[idx[rows["image"]]] = rows["image"]
        lang_rows = rows["language"][img_row[idx[rows["language"]]] >= 0]
        if len(lang_rows) < 2:
            return lat.new_zeros(())
        pair_img = img_row[idx[lang_rows]]
        z_l = F.normalize(self.cla_proj(lat[lang_rows, 0]), dim=-1)
        z_i = F.normalize(self.cla_proj(lat[pair_img, 0]), dim=-1)
        logits = self.logit_scale.exp().clamp(max=100.0) * z_l @ z_i.T  # (P, P)
        texts = [goal["instruction"][int(s)] for s in idx[lang_rows]] if goal is not None else []
        if texts:  # the same instruction twice is not a negative
            same = torch.tensor([[ti == tj for tj in texts] for ti in texts], device=logits.device)
            logits = logits.masked_fill(same & ~torch.eye(len(texts), dtype=torch.bool, device=logits.device), float("-inf"))
        target = torch.arange(len(lang_rows), device=logits.device)
        return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))

    # --- acting -----------------------------------------------------------------------------
    def act_latents(self, obs: dict[str, torch.Tensor], goal: Any) -> torch.Tensor:
        """Latent tokens for acting: the instruction's goal token when given, else the goal image's, else "no goal"."""
        obs_tok = self.obs_tokens(self.prepare_obs(obs))
        b = obs_tok.shape[0]
        tokens, present = self.goal_tokens(goal, b)
        goal_tok = self.null_goal.expand(b, -1)
        for m in ("image", "language"):  # later wins: language over image
            if m in tokens:
                goal_tok = torch.where(present[m][:, None], tokens[m], goal_tok)
        return self.latents(obs_tok, goal_tok)

    @torch.no_grad()
    def predict_action_chunk(
        self,
        obs: dict[str, torch.Tensor],
        goal: Any = None,
        generator: torch.Generator | None = None,
        prefix: torch.Tensor | None = None,
        prefix_len: int = 0,
    ) -> torch.Tensor:
        """Sample a chunk with ``num_inference_steps`` Euler steps on the EDM sigma schedule. With
        ``prefix`` (B, P, Da) the first ``prefix_len`` actions are the committed ones (real-time chunking)."""
        c = self.config
        lat = self.act_latents(obs, goal)
        b = lat.shape[0]
        sched = self.scheduler
        sched.set_timesteps(c.num_inference_steps, device=lat.device)
        x = torch.randn(b, c.horizon, c.action_dim, device=lat.device, generator=generator) * sched.sigmas[0]
        n_fixed = min(int(prefix_len), c.horizon) if prefix is not None else 0
        known = self.normalizer.normalize(c.action_key, prefix[:, :n_fixed].to(x)) if n_fixed else None
        for i, t in enumerate(sched.timesteps):
            if n_fixed:  # the committed actions, noised to this step's sigma
                noise = torch.randn(known.shape, device=x.device, generator=generator)
                x[:, :n_fixed] = known + noise * sched.sigmas[i]
            out = self.denoise(sched.scale_model_input(x, t), t.reshape(1).expand(b), lat)
            x = sched.step(out, t, x, generator=generator).prev_sample
        if n_fixed:
            x[:, :n_fixed] = known
        return self.normalizer.unnormalize(c.action_key, x)


def _rows_of(batch: dict, idx: torch.Tensor) -> dict:
    """The per-sample loss inputs (padding, weights) repeated for the encoder rows ``idx``."""
    tensors = {k: torch.as_tensor(batch[k]) for k in ("action_is_pad", "step_weight", "weight") if k in batch}
    return {k: t[idx.to(t.device)] for k, t in tensors.items()}

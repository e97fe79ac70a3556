"""Fuse low-dim keys (state/proprio) and cameras into one conditioning vector per step.

Low-dim keys are concatenated (already normalised by the policy) and go through an
optional state MLP; each camera goes through a ResNet encoder (one shared or one per
camera). ``forward`` returns per-step features (B, To, D); ``tokens`` returns one token
per key per step (B, To * n_keys, d_token) for transformer heads.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from einops import rearrange
from torch import nn

from robolearn.nn.mlp import mlp
from robolearn.nn.vision import ResNetImageEncoder


@dataclass
class EncoderConfig:
    state_mlp: list[int] = field(default_factory=list)  # hidden sizes; [] = raw normalised state
    image_width: int = 64  # ResNet-18 base width (64 = the standard network)
    image_feature_dim: int = 64
    image_pooling: str = "spatial_softmax"  # or "avg"
    num_keypoints: int = 32
    crop_size: int = 76  # random crop at train, center crop at eval; 0 = off
    shared_image_encoder: bool = False
    pretrained: str = ""  # safetensors from a pretrainer: ObsEncoder keys, or one image encoder's keys (all cameras)
    freeze_pretrained: bool = False


class ObsEncoder(nn.Module):
    def __init__(self, cfg: EncoderConfig, lowdim_dims: dict[str, int], image_shapes: dict[str, list[int]]):
        super().__init__()
        self.lowdim_keys = sorted(lowdim_dims)
        self.image_keys = sorted(image_shapes)
        lowdim_in = sum(lowdim_dims.values())
        self.state_mlp = mlp(lowdim_in, cfg.state_mlp, None) if cfg.state_mlp and lowdim_in else nn.Identity()
        self.lowdim_dim = (cfg.state_mlp[-1] if cfg.state_mlp else lowdim_in) if lowdim_in else 0

        def make(shape: list[int]) -> ResNetImageEncoder:
            return ResNetImageEncoder(
                in_channels=shape[-1],
                width=cfg.image_width,
                out_dim=cfg.image_feature_dim,
                pooling=cfg.image_pooling,
                num_kp=cfg.num_keypoints,
                crop_size=cfg.crop_size,
            )

        self.shared = cfg.shared_image_encoder
        if self.image_keys and self.shared:
            self.image_encoders = nn.ModuleDict({"shared": make(image_shapes[self.image_keys[0]])})
        else:
            self.image_encoders = nn.ModuleDict({_mk(k): make(image_shapes[k]) for k in self.image_keys})
        self.image_dim = cfg.image_feature_dim
        self.out_dim = self.lowdim_dim + self.image_dim * len(self.image_keys)

    def _encode_image(self, key: str, frames: torch.Tensor) -> torch.Tensor:
        b = frames.shape[0]
        enc = self.image_encoders["shared" if self.shared else _mk(key)]
        feats = enc(rearrange(frames, "b t h w c -> (b t) h w c"))  # (B*To, d)
        return rearrange(feats, "(b t) d -> b t d", b=b)

    def parts(self, obs: dict[str, torch.Tensor]) -> list[torch.Tensor]:
        """One (B, To, d) feature per group: [low-dim (if any), camera 1, camera 2, ...]."""
        out = []
        if self.lowdim_keys:
            state = torch.cat([obs[k] for k in self.lowdim_keys], dim=-1)  # (B, To, Dlow)
            out.append(self.state_mlp(state))
        out += [self._encode_image(k, obs[k]) for k in self.image_keys]
        return out

    def forward(self, obs: dict[str, torch.Tensor]) -> torch.Tensor:
        return torch.cat(self.parts(obs), dim=-1)  # (B, To, D)


def load_pretrained(encoder: ObsEncoder, path: str, freeze: bool) -> None:
    """Load exported encoder weights (no pickle). Keys either match ``encoder.state_dict()`` or one
    ``ResNetImageEncoder`` (then they go into every camera encoder). Shapes must match exactly."""
    from safetensors.torch import load_file

    from robolearn.errors import UserError

    try:
        weights = load_file(path)
    except (OSError, ValueError) as exc:
        raise UserError(f"policy.encoder.pretrained: cannot read {path} ({exc})") from None
    targets: list[nn.Module] = [encoder] if set(weights) <= set(encoder.state_dict()) else list(encoder.image_encoders.values())
    if not targets:
        raise UserError(f"policy.encoder.pretrained: {path} has image-encoder weights but the policy has no cameras")
    for module in targets:
        try:
            missing, unexpected = module.load_state_dict(weights, strict=module is not encoder)
        except RuntimeError as exc:
            raise UserError(f"policy.encoder.pretrained: {path} does not fit the encoder ({str(exc).splitlines()[0]})") from None
        if freeze:
            module.requires_grad_(False)


def _mk(key: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in key)

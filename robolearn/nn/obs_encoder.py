"""Fuse low-dim keys (state/proprio) and cameras into one conditioning vector per step.

Low-dim keys are concatenated (already normalised by the policy) and go through an
optional state MLP; each camera goes through a ResNet encoder (one shared or one per
camera). ``forward`` returns per-step features (B, To, D); ``tokens`` returns one token
per key per step (B, To * n_keys, d_token) for transformer heads.

A pretrained image encoder (``robolearn pretrain``) plugs in through ``encoder.pretrained``: a
directory with ``encoder.safetensors`` + ``encoder.json`` (its architecture and the camera shape it
was trained on, checked against this policy), or a bare ``.safetensors`` file. With
``freeze_pretrained`` the camera encoders get no gradient and stay in eval mode (center crop, no
random-crop augmentation), as in the DynaMo and inverse-dynamics papers, whose downstream policies
train on features of the frozen encoder computed without augmentation.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import torch
from einops import rearrange
from torch import nn

from robolearn.errors import UserError
from robolearn.nn.mlp import mlp
from robolearn.nn.vision import ResNetImageEncoder

log = logging.getLogger(__name__)
PRETRAINED_FIELD = "policy.encoder.pretrained"  # named in every error about a pretrained encoder


@dataclass
class EncoderConfig:
    state_mlp: list[int] = field(default_factory=list)  # hidden sizes; [] = raw normalised state
    image_width: int = 64  # ResNet-18 base width (64 = the standard network)
    image_feature_dim: int = 64
    image_pooling: str = "spatial_softmax"  # or "avg"
    num_keypoints: int = 32
    crop_size: int = 76  # random crop at train, center crop at eval; 0 = off
    shared_image_encoder: bool = False
    # a `robolearn pretrain` encoder dir (encoder.safetensors + encoder.json; every camera starts from it),
    # or a bare .safetensors with ObsEncoder keys or one image encoder's keys (all cameras)
    pretrained: str = ""
    freeze_pretrained: bool = False  # no gradient into the loaded weights; camera encoders stay in eval mode


class ObsEncoder(nn.Module):
    def __init__(self, cfg: EncoderConfig, lowdim_dims: dict[str, int], image_shapes: dict[str, list[int]]):
        super().__init__()
        self.cfg = cfg
        self.lowdim_keys = sorted(lowdim_dims)
        self.image_keys = sorted(image_shapes)
        self.image_shapes = {k: [int(s) for s in image_shapes[k]] for k in self.image_keys}
        self.frozen_images = False  # set by load_pretrained(freeze=True)
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
            self.image_encoders = nn.ModuleDict({module_key(k): make(image_shapes[k]) for k in self.image_keys})
        self.image_dim = cfg.image_feature_dim
        self.out_dim = self.lowdim_dim + self.image_dim * len(self.image_keys)

    def train(self, mode: bool = True) -> "ObsEncoder":
        super().train(mode)
        if self.frozen_images:  # frozen pretrained camera encoders: deterministic center crop
            self.image_encoders.eval()
        return self

    def _encode_image(self, key: str, frames: torch.Tensor) -> torch.Tensor:
        b = frames.shape[0]
        enc = self.image_encoders["shared" if self.shared else module_key(key)]
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
    """Load exported encoder weights (safetensors, no pickle) into ``encoder``.

    ``path`` is a directory from ``robolearn pretrain`` (encoder.safetensors + encoder.json: one
    ``ResNetImageEncoder``, loaded into every camera encoder after checking the cameras' image shape
    and the architecture against encoder.json) or a bare .safetensors whose keys match either
    ``encoder.state_dict()`` or one ``ResNetImageEncoder``. Mismatches are one-line UserErrors
    naming ``policy.encoder.pretrained``."""
    from safetensors.torch import load_file

    where = PRETRAINED_FIELD
    p = Path(path)
    info_path = p / "encoder.json" if p.is_dir() else p.with_name("encoder.json")
    file = p / "encoder.safetensors" if p.is_dir() else p
    if p.is_dir() and not file.is_file():
        raise UserError(f"{where}: {p} has no encoder.safetensors (expected a `robolearn pretrain` encoder directory)")
    if info_path.is_file() and (p.is_dir() or p.name == "encoder.safetensors"):
        try:
            info = json.loads(info_path.read_text())
        except json.JSONDecodeError as exc:
            raise UserError(f"{where}: {info_path} is not valid JSON ({exc})") from None
        check_encoder_info(encoder, info, str(p))
    try:
        weights = load_file(str(file))
    except (OSError, ValueError) as exc:
        raise UserError(f"{where}: cannot read {file} ({exc})") from None
    targets: list[nn.Module] = [encoder] if set(weights) <= set(encoder.state_dict()) else list(encoder.image_encoders.values())
    if not targets:
        raise UserError(f"{where}: {file} has image-encoder weights but the policy has no cameras")
    for module in targets:
        try:
            module.load_state_dict(weights, strict=module is not encoder)
        except RuntimeError as exc:
            raise UserError(f"{where}: {file} does not fit the encoder ({str(exc).splitlines()[0]})") from None
        if freeze:
            module.requires_grad_(False)
    if freeze and encoder.image_keys:
        encoder.frozen_images = True
        encoder.train(encoder.training)


def check_encoder_info(encoder: ObsEncoder, info: dict, where: str) -> None:
    """Compare an exported encoder's encoder.json with the policy's cameras and encoder config."""
    where_field = PRETRAINED_FIELD
    if not encoder.image_keys:
        raise UserError(f"{where_field}: {where} is an image encoder but the policy has no cameras among obs_keys")
    shape = [int(s) for s in info.get("image_shape", [])]
    for key, cam_shape in encoder.image_shapes.items():
        if cam_shape != shape:
            raise UserError(f"{where_field}: {where} was trained on {'x'.join(map(str, shape))} images, "
                            f"policy camera {key!r} is {'x'.join(map(str, cam_shape))}")
    cfg = encoder.cfg
    names = ["image_width", "image_feature_dim", "image_pooling"] + (["num_keypoints"] if cfg.image_pooling == "spatial_softmax" else [])
    diff = [f"{n} {info.get(n)!r} (policy {getattr(cfg, n)!r})" for n in names if info.get(n) != getattr(cfg, n)]
    if diff:
        raise UserError(f"{where_field}: {where} has a different architecture: " + ", ".join(diff))
    if info.get("crop_size") != cfg.crop_size:
        log.warning("%s: %s was pretrained with crop_size %s, the policy uses %s", where_field, where, info.get("crop_size"), cfg.crop_size)


def module_key(key: str) -> str:
    """An obs key as an nn.ModuleDict key (letters, digits and underscores)."""
    return "".join(c if c.isalnum() else "_" for c in key)

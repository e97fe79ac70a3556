"""The Pretrainer protocol, its base class, the method registry, and encoder export.

A pretrainer is a config dataclass plus an ``nn.Module`` that the policy ``Trainer`` trains
unchanged (same checkpoints, progress, plots, resume):

    compute_loss(batch) -> dict[str, Tensor]   # "loss" is optimised, the rest is logged
    window -> (obs_horizon, obs_future, action_horizon)   # the sampler windows it needs
    encoder                                    # a ResNetImageEncoder shared by all cameras, or None
    export_encoder(dir)                        # encoder.safetensors + encoder.json
    finish(out, store_path) -> dict            # after training: export the encoder (InfoCon: label the store)
    write_files(dir)                           # model.safetensors + config.json + stats.json

``load_pretrainer(dir)`` rebuilds one from those files (a training checkpoint).

``batch`` is a collated `WindowDataset` item: obs {key: (B, To + Tf, ...)} with To = obs_horizon
past/current steps followed by Tf = obs_future future steps, obs_is_pad (B, To + Tf) when Tf > 0,
action (B, Ta, Da), action_is_pad (B, Ta). Camera frames stay uint8 HWC; low-dim keys are
normalised with ``self.normalizer``.

The exported encoder is exactly one ``ResNetImageEncoder``: a policy recipe names its directory
(``[policy.encoder] pretrained = "runs/<run>/encoder"``) and every camera encoder of the policy
starts from it (see ``robolearn.nn.obs_encoder.load_pretrained``).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from einops import rearrange
from safetensors.torch import save_file
from torch import nn

from robolearn.errors import UserError
from robolearn.nn.normalizer import Normalizer
from robolearn.nn.obs_encoder import EncoderConfig
from robolearn.nn.vision import ResNetImageEncoder, crop_images
from robolearn.files import atomic_dir, cpu_tensors, read_model_files, write_model_files
from robolearn.config_io import from_dict, to_dict

FORMAT = "robolearn.pretrainer"
ENCODER_FORMAT = "robolearn.image_encoder"
FORMAT_VERSION = 1
CROPS = ("center", "window", "frame")  # how ``Pretrainer.encode`` crops a window of frames


def small_encoder() -> EncoderConfig:
    """The CPU default: ResNet-18 layout at a quarter width (16) with spatial-softmax 64-d features,
    close to the inverse-dynamics paper's small conv + spatial-softmax encoder."""
    return EncoderConfig(image_width=16, image_feature_dim=64, crop_size=76)


@dataclass
class PretrainConfig:
    method: str = ""
    obs_keys: list[str] = field(default_factory=lambda: ["agentview_image"])  # cameras (+ low-dim keys a method uses)
    image_keys: list[str] = field(default_factory=list)  # filled from the store: the uint8 HWC keys of obs_keys
    action_key: str = "action"
    action_dim: int = 0  # filled from the store
    obs_shapes: dict[str, list[int]] = field(default_factory=dict)  # filled from the store
    env: dict[str, Any] = field(default_factory=dict)  # store attrs (task, env kwargs), for the record
    obs_norm: str = "meanstd"
    action_norm: str = "minmax"
    encoder: EncoderConfig = field(default_factory=small_encoder)

    def validate(self, where: str = "pretrain") -> None:
        if not self.obs_keys:
            raise UserError(f"{where}.obs_keys: expected at least one key")

    @property
    def lowdim_keys(self) -> list[str]:
        return [k for k in self.obs_keys if k not in self.image_keys]


def masked_mean(x: torch.Tensor, valid: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
    """Mean of x (B, T) over valid (B, T) entries, each sample weighted by weight (B,)."""
    w = valid.float() * (weight[:, None] if weight is not None else 1.0)
    return (x * w).sum() / w.sum().clamp_min(1e-6)


# method name -> pretrainer class (its ``config_class`` attribute is the config dataclass)
PRETRAINER_REGISTRY: dict[str, type["Pretrainer"]] = {}


def register_pretrainer(method: str):
    def deco(cls: type[Pretrainer]) -> type[Pretrainer]:
        cls.method = method
        PRETRAINER_REGISTRY[method] = cls
        return cls

    return deco


def pretrainer_class(method: str) -> type["Pretrainer"]:
    import importlib

    from robolearn.pretrain import METHOD_MODULES

    for name in METHOD_MODULES:  # fills the registry (imported lazily: they pull in torch)
        importlib.import_module(name)

    if method not in PRETRAINER_REGISTRY:
        raise UserError(f"method: unknown pretraining method {method!r} (known: {', '.join(sorted(PRETRAINER_REGISTRY))})")
    return PRETRAINER_REGISTRY[method]


class Pretrainer(nn.Module):
    config_class: type[PretrainConfig] = PretrainConfig
    method: str = ""
    needs_images: bool = True  # the store must have at least one camera among obs_keys
    needs_actions: bool = False  # the store must have the action key
    min_episodes: int = 1  # demos the method compares across (EIL votes, OOD-IL scores demo against demo)

    def __init__(self, config: PretrainConfig, stats: dict[str, dict]):
        super().__init__()
        config.method = self.method
        config.validate()
        if self.needs_images and not config.image_keys:
            raise UserError(f"pretrain.obs_keys: {self.method} needs camera images, none among {config.obs_keys}")
        self.config = config
        self.normalizer = Normalizer(stats)
        self.encoder: ResNetImageEncoder | None = None
        if config.image_keys:
            shapes = {tuple(config.obs_shapes[k]) for k in config.image_keys}
            if len(shapes) != 1:
                raise UserError(f"pretrain.obs_keys: cameras must share one image shape to share an encoder, got {sorted(shapes)}")
            e = config.encoder
            self.encoder = ResNetImageEncoder(config.obs_shapes[config.image_keys[0]][-1], e.image_width,
                                              e.image_feature_dim, e.image_pooling, e.num_keypoints, e.crop_size)

    # --- the protocol -------------------------------------------------------------------
    @classmethod
    def check_store(cls, store, config: PretrainConfig) -> None:
        """Checks on the opened training store (UserError), before anything is written: enough demos;
        a method with more to check extends it (calling this first)."""
        if store.n_episodes < cls.min_episodes:
            raise UserError(f"{store.path}: {cls.method} needs at least {cls.min_episodes} episodes, "
                            f"the store has {store.n_episodes}")

    @property
    def window(self) -> tuple[int, int, int]:
        """(obs_horizon, obs_future, action_horizon) of the sampler windows this objective needs."""
        raise NotImplementedError

    def forward(self, batch: dict) -> dict[str, torch.Tensor]:
        return self.compute_loss(batch)

    def compute_loss(self, batch: dict) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    @torch.no_grad()
    def finish(self, out: Path, store_path: str) -> dict[str, str]:
        """Called once after training on the final (EMA) weights; returns what it wrote (name -> path).
        Encoder methods export ``out/encoder``; InfoCon overrides this to write its labels."""
        return {"encoder": str(self.export_encoder(Path(out) / "encoder", source=store_path))}

    # --- helpers ---------------------------------------------------------------------------
    @property
    def feature_dim(self) -> int:
        """Per-step feature size of ``encode``: one encoder output per camera, concatenated."""
        return self.config.encoder.image_feature_dim * len(self.config.image_keys)

    def encode(self, obs: dict[str, torch.Tensor], crop: str = "frame") -> torch.Tensor:
        """uint8 frames {camera: (B, T, H, W, C)} -> (B, T, n_cams * d), the shared encoder per camera.

        ``crop`` (to ``encoder.crop_size``): "frame" = the encoder's own crop, random per frame while
        training; "window" = one random crop per window, the same offset for all its T frames (no fake
        motion between them); "center" = always the center crop (no augmentation)."""
        assert self.encoder is not None
        if crop not in CROPS:
            raise UserError(f"pretrain.crop: expected one of {', '.join(CROPS)}, got {crop!r}")
        b, t = obs[self.config.image_keys[0]].shape[:2]
        feats = []
        for k in self.config.image_keys:
            if crop == "frame":
                x = rearrange(obs[k], "b t h w c -> (b t) h w c")
            else:  # time folded into channels: one offset per window; the encoder's own crop is then a no-op
                x = crop_images(rearrange(obs[k], "b t h w c -> b h w (t c)"), self.config.encoder.crop_size,
                                random=self.training and crop == "window")
                x = rearrange(x, "b h w (t c) -> (b t) h w c", t=t)
            feats.append(self.encoder(x))
        return rearrange(torch.cat(feats, dim=-1), "(b t) d -> b t d", b=b)

    def lowdim(self, obs: dict[str, torch.Tensor]) -> torch.Tensor:
        """Normalised low-dim keys concatenated: (B, T, D)."""
        return torch.cat([self.normalizer.normalize(k, obs[k].float()) for k in self.config.lowdim_keys], dim=-1)

    def normalized_actions(self, batch: dict) -> torch.Tensor:
        return self.normalizer.normalize(self.config.action_key, batch["action"].float())  # (B, Ta, Da)

    # --- files ------------------------------------------------------------------------------
    def write_files(self, path: Path) -> None:
        """The full pretrainer (encoder + heads) into an existing directory (the Trainer's checkpoints)."""
        write_model_files(path, FORMAT, FORMAT_VERSION, self.method, to_dict(self.config), self.normalizer.to_dict(), self)

    def export_encoder(self, path: str | os.PathLike, source: str = "") -> Path:
        """Write just the image encoder: ``encoder.safetensors`` + ``encoder.json`` (its
        architecture and the camera shape it was trained on), atomically."""
        if self.encoder is None:
            raise UserError(f"{self.method}: has no image encoder to export")
        c, e = self.config, self.config.encoder
        info = {
            "format": ENCODER_FORMAT, "format_version": FORMAT_VERSION, "method": self.method, "source": source,
            "image_shape": c.obs_shapes[c.image_keys[0]], "cameras": c.image_keys,
            "image_width": e.image_width, "image_feature_dim": e.image_feature_dim, "image_pooling": e.image_pooling,
            "num_keypoints": e.num_keypoints, "crop_size": e.crop_size,
        }
        path = Path(path)
        with atomic_dir(path) as tmp:
            save_file(cpu_tensors(self.encoder), str(tmp / "encoder.safetensors"), metadata={"format": ENCODER_FORMAT})
            (tmp / "encoder.json").write_text(json.dumps(info, indent=2, sort_keys=True))
        return path


def load_pretrainer(path: str | os.PathLike, device: str | torch.device = "cpu") -> Pretrainer:
    """Rebuild a pretrainer (eval mode) from a checkpoint dir (checkpoints/step_N, or a run dir's
    checkpoints/last): model.safetensors + config.json + stats.json, sha-checked; nothing pickled."""
    path = Path(path)
    if (path / "checkpoints" / "last").exists():
        path = path / "checkpoints" / "last"
    data, stats, tensors = read_model_files(path, FORMAT, name_stale_file=False)
    cls = pretrainer_class(data.get("method", ""))
    pretrainer = cls(from_dict(cls.config_class, data, str(path / "config.json")), stats)
    try:
        pretrainer.load_state_dict(tensors)
    except RuntimeError as exc:
        raise UserError(f"{path}: weights do not match config ({str(exc).splitlines()[0]})") from None
    return pretrainer.to(device).eval()

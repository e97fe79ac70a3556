"""Image encoder trained from scratch: ResNet-18 layout with GroupNorm, spatial softmax
(or global average) pooling, and random-crop augmentation (center crop at eval).

No torchvision: the blocks are written out here. Input uint8 HWC frames, output a
feature vector per frame.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn


def _gn(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(max(1, min(32, channels // 4)), channels)


class BasicBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.norm1 = _gn(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.norm2 = _gn(c_out)
        self.skip = (
            nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), _gn(c_out))
            if stride != 1 or c_in != c_out
            else nn.Identity()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.norm1(self.conv1(x)))
        y = self.norm2(self.conv2(y))
        return F.relu(y + self.skip(x))


class SpatialSoftmax(nn.Module):
    """Per-channel soft-argmax keypoints: (N, C, H, W) -> (N, 2K) after a 1x1 conv to K maps."""

    def __init__(self, channels: int, num_kp: int):
        super().__init__()
        self.proj = nn.Conv2d(channels, num_kp, 1)
        self.num_kp = num_kp

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.proj(x)  # (N, K, H, W)
        h, w = x.shape[-2:]
        ys = torch.linspace(-1.0, 1.0, h, device=x.device, dtype=x.dtype)
        xs = torch.linspace(-1.0, 1.0, w, device=x.device, dtype=x.dtype)
        attn = torch.softmax(rearrange(x, "n k h w -> n k (h w)"), dim=-1)  # (N, K, HW)
        grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
        kx = attn @ grid_x.reshape(-1, 1)  # (N, K, 1)
        ky = attn @ grid_y.reshape(-1, 1)
        return rearrange(torch.cat([kx, ky], dim=-1), "n k two -> n (k two)")


def crop_images(x: torch.Tensor, size: int, random: bool) -> torch.Tensor:
    """Crop (N, H, W, C) frames to (N, size, size, C): per-frame random offsets or the center."""
    n, h, w, _ = x.shape
    if size <= 0 or (size >= h and size >= w):
        return x
    size_h, size_w = min(size, h), min(size, w)
    if random:
        top = torch.randint(0, h - size_h + 1, (n,), device=x.device)
        left = torch.randint(0, w - size_w + 1, (n,), device=x.device)
    else:
        top = torch.full((n,), (h - size_h) // 2, device=x.device)
        left = torch.full((n,), (w - size_w) // 2, device=x.device)
    rows = top[:, None, None] + torch.arange(size_h, device=x.device)[None, :, None]  # (N, h', 1)
    cols = left[:, None, None] + torch.arange(size_w, device=x.device)[None, None, :]  # (N, 1, w')
    idx = torch.arange(n, device=x.device)[:, None, None]
    return x[idx, rows, cols]  # (N, h', w', C)


class ResNetImageEncoder(nn.Module):
    """uint8 (N, H, W, C) -> (N, out_dim). ResNet-18 stages [2, 2, 2, 2] at widths w, 2w, 4w, 8w."""

    def __init__(
        self,
        in_channels: int = 3,
        width: int = 64,
        out_dim: int = 64,
        pooling: str = "spatial_softmax",
        num_kp: int = 32,
        crop_size: int = 0,
    ):
        super().__init__()
        self.crop_size = crop_size
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, width, 7, 2, 3, bias=False), _gn(width), nn.ReLU(), nn.MaxPool2d(3, 2, 1)
        )
        stages, c = [], width
        for i, c_out in enumerate([width, 2 * width, 4 * width, 8 * width]):
            stride = 1 if i == 0 else 2
            stages += [BasicBlock(c, c_out, stride), BasicBlock(c_out, c_out, 1)]
            c = c_out
        self.stages = nn.Sequential(*stages)
        if pooling == "spatial_softmax":
            self.pool: nn.Module = SpatialSoftmax(c, num_kp)
            pooled = 2 * num_kp
        elif pooling == "avg":
            self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
            pooled = c
        else:
            raise ValueError(f"pooling: expected 'spatial_softmax' or 'avg', got {pooling!r}")
        self.head = nn.Sequential(nn.Linear(pooled, out_dim), nn.LayerNorm(out_dim))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = crop_images(images, self.crop_size, random=self.training)  # (N, h, w, C) uint8
        x = rearrange(x, "n h w c -> n c h w").float() / 127.5 - 1.0
        return self.head(self.pool(self.stages(self.stem(x))))  # (N, out_dim)

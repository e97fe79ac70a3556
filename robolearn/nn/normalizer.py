"""Per-key affine normalisation as a torch module (lives inside every policy).

Stats come from the episode store (`store.stats`: per-key min/max/mean/std lists over
the last-dim channels) plus a mode per key. ``minmax`` maps [min, max] to [-1, 1],
``meanstd`` standardises; keys without a mode pass through. The math matches
`robolearn.datasets.normalize.Normalizer`. Buffers are non-persistent: the numbers are
saved in the checkpoint's ``stats.json``, not in ``model.safetensors``.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from robolearn.errors import UserError

MODES = ("minmax", "meanstd")
_EPS = 1e-8  # same constant-channel rule as robolearn.datasets.normalize


def _scale_offset(entry: dict, mode: str) -> tuple[list[float], list[float]]:
    if mode == "minmax":
        half = [(h - l) / 2 for l, h in zip(entry["min"], entry["max"])]
        scale = [1.0 / r if r > _EPS else 1.0 for r in half]  # constant channels map to 0
        offset = [-(l + r) * s for l, r, s in zip(entry["min"], half, scale)]
    elif mode == "meanstd":
        scale = [1.0 / s if s > _EPS else 1.0 for s in entry["std"]]
        offset = [-m * s for m, s in zip(entry["mean"], scale)]
    else:
        raise UserError(f"normalisation mode: expected one of {MODES}, got {mode!r}")
    return scale, offset


class Normalizer(nn.Module):
    """y = x * scale + offset per key; ``stats`` = {key: {"mode", "min", "max", "mean", "std"}}."""

    def __init__(self, stats: dict[str, dict]):
        super().__init__()
        self.stats = {k: dict(v) for k, v in stats.items()}
        self.keys = sorted(stats)
        for key, entry in self.stats.items():
            need = ("min", "max") if entry.get("mode") == "minmax" else ("mean", "std")
            for field in need:
                values = entry.get(field)
                if not isinstance(values, list) or not all(
                    isinstance(x, (int, float)) and math.isfinite(x) for x in values
                ):
                    raise UserError(f"stats[{key!r}].{field}: expected a list of finite numbers")
            scale, offset = _scale_offset(entry, entry.get("mode", ""))
            self.register_buffer(f"{_safe(key)}_scale", torch.tensor(scale, dtype=torch.float32), persistent=False)
            self.register_buffer(f"{_safe(key)}_offset", torch.tensor(offset, dtype=torch.float32), persistent=False)

    def __contains__(self, key: str) -> bool:
        return key in self.stats

    def dim(self, key: str) -> int:
        return len(self.stats[key]["min" if self.stats[key]["mode"] == "minmax" else "mean"])

    def normalize(self, key: str, x: torch.Tensor) -> torch.Tensor:
        if key not in self.stats:
            return x
        return x * getattr(self, f"{_safe(key)}_scale") + getattr(self, f"{_safe(key)}_offset")

    def unnormalize(self, key: str, y: torch.Tensor) -> torch.Tensor:
        if key not in self.stats:
            return y
        return (y - getattr(self, f"{_safe(key)}_offset")) / getattr(self, f"{_safe(key)}_scale")

    def to_dict(self) -> dict[str, dict]:
        return {k: dict(v) for k, v in self.stats.items()}


def _safe(key: str) -> str:
    return "n_" + "".join(c if c.isalnum() else "_" for c in key)


def select_stats(store_stats: dict[str, dict], modes: dict[str, str]) -> dict[str, dict]:
    """Pick the keys named in ``modes`` from store stats and attach their mode."""
    out = {}
    for key, mode in modes.items():
        if key not in store_stats:
            raise UserError(f"store stats: no entry for key {key!r} (run compute_stats on the store)")
        if mode not in MODES:
            raise UserError(f"normalisation mode for {key!r}: expected one of {MODES}, got {mode!r}")
        entry = {f: [float(x) for x in store_stats[key][f]] for f in ("min", "max", "mean", "std")}
        out[key] = {"mode": mode, **entry}
    return out

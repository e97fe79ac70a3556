"""The normaliser that lives inside every policy.

The maths is `robolearn.datasets.normalize` (one definition of ``minmax`` -> [-1, 1] and
``meanstd``, constant channels mapped to 0, exact JSON round trip); this module only holds
each key's offset and scale as torch buffers, so they follow the policy to its device
without a host-to-device copy per call. The buffers are non-persistent: the numbers are
saved in the checkpoint's ``stats.json``, not in ``model.safetensors``.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from robolearn.datasets.normalize import MODES, KeyStats
from robolearn.errors import UserError


class Normalizer(nn.Module):
    """y = (x - offset) / scale per key; ``stats`` = {key: {"mode", "min", "max", "mean", "std"}}."""

    def __init__(self, stats: dict[str, dict]):
        super().__init__()
        self.stats = {k: dict(v) for k, v in stats.items()}
        self.keys = sorted(stats)
        for key, entry in self.stats.items():
            for name in ("min", "max", "mean", "std"):
                values = entry.get(name)
                if values is not None and not (
                    isinstance(values, list) and all(isinstance(x, (int, float)) and math.isfinite(x) for x in values)
                ):
                    raise UserError(f"stats[{key!r}].{name}: expected a list of finite numbers")
            ks = KeyStats.from_stats(key, entry.get("mode", ""), entry)
            self.register_buffer(f"{_safe(key)}_offset", torch.tensor(ks.offset, dtype=torch.float32), persistent=False)
            self.register_buffer(f"{_safe(key)}_scale", torch.tensor(ks.scale, dtype=torch.float32), persistent=False)

    def __contains__(self, key: str) -> bool:
        return key in self.stats

    def dim(self, key: str) -> int:
        return len(self.stats[key]["min" if self.stats[key]["mode"] == "minmax" else "mean"])

    def normalize(self, key: str, x: torch.Tensor) -> torch.Tensor:
        if key not in self.stats:
            return x
        return (x - getattr(self, f"{_safe(key)}_offset")) / getattr(self, f"{_safe(key)}_scale")

    def unnormalize(self, key: str, y: torch.Tensor) -> torch.Tensor:
        if key not in self.stats:
            return y
        return y * getattr(self, f"{_safe(key)}_scale") + getattr(self, f"{_safe(key)}_offset")

    def to_dict(self) -> dict[str, dict]:
        return {k: dict(v) for k, v in self.stats.items()}


def _safe(key: str) -> str:
    return "n_" + "".join(c if c.isalnum() else "_" for c in key)


def select_stats(store_stats: dict[str, dict], modes: dict[str, str]) -> dict[str, dict]:
    """Pick the keys named in ``modes`` from store stats and attach their mode."""
    out = {}
    for key, mode in modes.items():
        if key not in store_stats:
            raise UserError(f"store stats: no entry for key {key!r} (run `robolearn data stats STORE`)")
        if mode not in MODES:
            raise UserError(f"normalisation mode for {key!r}: expected one of {MODES}, got {mode!r}")
        entry = {f: [float(x) for x in store_stats[key][f]] for f in ("min", "max", "mean", "std")}
        out[key] = {"mode": mode, **entry}
    return out

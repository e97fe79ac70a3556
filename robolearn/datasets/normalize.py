"""Per-key normalisation with statistics that save and reload exactly.

    minmax   x -> 2 (x - min) / (max - min) - 1   into [-1, 1] (diffusion policy's choice for actions)
    meanstd  x -> (x - mean) / std

Statistics broadcast over the last axis (one value per channel). A channel that (nearly)
never varies -- range or std below RANGE_EPS, e.g. a gripper never used or a float32
quaternion component that only jitters -- is centred but not scaled, instead of dividing
by (almost) zero: scaling 1e-7 of jitter up to [-1, 1] would turn any real deviation at
deployment into a huge input (diffusion_policy's normaliser uses the same 1e-4 floor). Works on numpy arrays and torch tensors alike; stats are kept as
float64 numpy arrays and saved to JSON, whose float repr round-trips exactly.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from robolearn.errors import UserError

MODES = ("minmax", "meanstd")
RANGE_EPS = 1e-4  # a channel whose range (minmax) or std (meanstd) is below this is not scaled


@dataclass
class KeyStats:
    mode: str
    offset: np.ndarray  # subtracted first
    scale: np.ndarray  # then divided by (never zero)
    stats: dict[str, list[float]] = field(default_factory=dict)  # the raw stats it came from

    @classmethod
    def from_stats(cls, key: str, mode: str, stats: Mapping[str, Any]) -> "KeyStats":
        if mode not in MODES:
            raise UserError(f"normaliser mode for {key!r}: expected one of {MODES}, got {mode!r}")
        needed = ("min", "max") if mode == "minmax" else ("mean", "std")
        missing = [n for n in needed if n not in stats]
        if missing:
            raise UserError(f"stats for {key!r}: missing {missing} (needed by {mode})")
        a, b = (np.asarray(stats[n], dtype=np.float64) for n in needed)
        if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
            raise UserError(f"stats for {key!r}: not finite")
        if mode == "minmax":
            half_range = (b - a) / 2
            offset = a + half_range  # the middle of the range
            scale = np.where(2 * half_range >= RANGE_EPS, half_range, 1.0)
        else:
            offset, scale = a, np.where(b >= RANGE_EPS, b, 1.0)
        return cls(mode, offset, scale, {n: [float(v) for v in np.atleast_1d(stats[n])] for n in needed})


class Normalizer:
    """Normalises named arrays; keys it has no stats for pass through unchanged."""

    def __init__(self, keys: Mapping[str, KeyStats] | None = None):
        self.keys: dict[str, KeyStats] = dict(keys or {})

    @classmethod
    def from_stats(cls, stats: Mapping[str, Mapping[str, Any]], modes: Mapping[str, str]) -> "Normalizer":
        """`stats` as stored by EpisodeStore.stats; `modes` maps key -> "minmax" | "meanstd"."""
        missing = [k for k in modes if k not in stats]
        if missing:
            raise UserError(f"no statistics for {missing} (run `robolearn data stats STORE`)")
        return cls({k: KeyStats.from_stats(k, m, stats[k]) for k, m in modes.items()})

    def __contains__(self, key: str) -> bool:
        return key in self.keys

    def _params(self, key: str, x):
        ks = self.keys[key]
        offset, scale = ks.offset, ks.scale
        if hasattr(x, "detach"):  # torch tensor: same device and dtype as x
            import torch

            offset = torch.as_tensor(offset, dtype=x.dtype, device=x.device)
            scale = torch.as_tensor(scale, dtype=x.dtype, device=x.device)
        else:
            offset, scale = offset.astype(np.result_type(x, np.float32)), scale.astype(np.result_type(x, np.float32))
        return offset, scale

    def normalize(self, key: str, x):
        if key not in self.keys:
            return x
        offset, scale = self._params(key, x)
        return (x - offset) / scale

    def unnormalize(self, key: str, x):
        if key not in self.keys:
            return x
        offset, scale = self._params(key, x)
        return x * scale + offset

    # ------------------------------------------------------------------ persistence
    def to_dict(self) -> dict[str, Any]:
        return {k: {"mode": ks.mode, **ks.stats} for k, ks in self.keys.items()}

    @classmethod
    def from_dict(cls, d: Mapping[str, Mapping[str, Any]]) -> "Normalizer":
        try:
            return cls({k: KeyStats.from_stats(k, v["mode"], v) for k, v in d.items()})
        except (KeyError, TypeError, AttributeError) as exc:
            raise UserError(f"normaliser stats: malformed entry ({exc})") from exc

    def save(self, path: str | os.PathLike) -> None:
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(self.to_dict(), indent=1))
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Normalizer":
        try:
            d = json.loads(Path(path).read_text())
        except FileNotFoundError:
            raise UserError(f"{path}: no such stats file") from None
        except json.JSONDecodeError as exc:
            raise UserError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
        if not isinstance(d, dict):
            raise UserError(f"{path}: expected a JSON object of per-key stats")
        return cls.from_dict(d)

"""Success statistics for evaluation reports."""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np


def wilson_interval(successes: int, n: int, z: float = 1.959963984540054) -> tuple[float, float]:
    """95% Wilson score interval for a binomial proportion (sane at 0/n and n/n, unlike the normal one)."""
    if n <= 0:
        return (0.0, 1.0)
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    lo = 0.0 if successes == 0 else max(0.0, centre - half)
    hi = 1.0 if successes == n else min(1.0, centre + half)
    return (lo, hi)


def summarize(outcomes: Sequence[dict]) -> dict:
    """Success rate (errors count as failures), its Wilson interval, and episode lengths."""
    n = len(outcomes)
    ok = [o for o in outcomes if not o.get("error")]
    wins = sum(bool(o.get("success")) for o in ok)
    lengths = np.array([o["length"] for o in ok], dtype=float)
    lo, hi = wilson_interval(wins, n)
    return {
        "episodes": n,
        "successes": wins,
        "errors": n - len(ok),
        "success_rate": wins / n if n else 0.0,
        "wilson95": [lo, hi],
        "mean_length": float(lengths.mean()) if len(lengths) else None,
        "median_length": float(np.median(lengths)) if len(lengths) else None,
    }

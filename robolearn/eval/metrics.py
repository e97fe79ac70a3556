"""Success statistics for evaluation reports."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from robolearn.stats import wilson_interval


def summarize(outcomes: Sequence[dict]) -> dict:
    """Success rate (errors count as failures), its Wilson interval, and episode lengths; for a
    multitask scene (outcomes with a ``goal_kind``) the same per kind under ``by_goal_kind``."""
    out = _summary(outcomes)
    kinds = sorted({o["goal_kind"] for o in outcomes if o.get("goal_kind")})
    if kinds:
        out["by_goal_kind"] = {k: _summary([o for o in outcomes if o.get("goal_kind") == k]) for k in kinds}
    return out


def _summary(outcomes: Sequence[dict]) -> dict:
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

"""Plots for evaluation reports (matplotlib, Agg backend, written atomically)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence


def _save(fig, path: Path) -> None:
    tmp = path.with_name(path.stem + ".tmp.png")
    fig.savefig(tmp, dpi=110, bbox_inches="tight")
    os.replace(tmp, path)


def plot_success(reports: Sequence[dict], path: str | os.PathLike, labels: Sequence[str] | None = None) -> None:
    """Success rate with its 95% Wilson interval, one bar per report (task / checkpoint / method)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = list(labels or [r.get("label") or r["task"] for r in reports])
    rates = [r["success_rate"] for r in reports]
    lo = [max(0.0, r["success_rate"] - r["wilson95"][0]) for r in reports]
    hi = [max(0.0, r["wilson95"][1] - r["success_rate"]) for r in reports]
    fig, ax = plt.subplots(figsize=(max(3.5, 1.1 * len(reports) + 1.5), 3.2))
    ax.bar(range(len(rates)), rates, yerr=[lo, hi], capsize=4, color="#4c78a8")
    for i, r in enumerate(reports):
        ax.text(i, min(1.02, r["wilson95"][1] + 0.02), f"{r['successes']}/{r['episodes']}", ha="center", fontsize=8)
    ax.set_xticks(range(len(rates)), labels, rotation=20 if len(rates) > 3 else 0)
    ax.set_ylim(0, 1.1)
    ax.set_ylabel("success rate (95% Wilson CI)")
    ax.set_title("robolearn eval")
    _save(fig, Path(path))
    plt.close(fig)


def plot_success_over_steps(points: Sequence[tuple[int, dict]], path: str | os.PathLike) -> None:
    """Success rate of the checkpoints evaluated during training, against the training step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [s for s, _ in points]
    rates = [r["success_rate"] for _, r in points]
    lo = [r["wilson95"][0] for _, r in points]
    hi = [r["wilson95"][1] for _, r in points]
    fig, ax = plt.subplots(figsize=(5, 3.2))
    ax.fill_between(steps, lo, hi, alpha=0.25, color="#4c78a8")
    ax.plot(steps, rates, "o-", color="#4c78a8")
    ax.set_xlabel("training step")
    ax.set_ylabel("success rate (95% Wilson CI)")
    ax.set_ylim(0, 1.05)
    _save(fig, Path(path))
    plt.close(fig)

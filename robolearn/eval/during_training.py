"""Evaluation during training: `robolearn train ... eval_every=N`.

Every N steps (and at the end) the trainer saves a checkpoint (its policy files hold the EMA
weights) and calls this evaluator, which runs the ordinary sim evaluation on it. It keeps

    checkpoints/best/       a copy of the policy with the highest success rate so far
    eval/step_<N>/          each evaluation's report.json and success.png
    eval_log.jsonl          one line per evaluation
    eval_summary.json       "max" (best step) and "last", like the Diffusion Policy paper reports
    eval_success.png        success rate (95% Wilson interval) against the training step
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

from robolearn.eval.plots import plot_success_over_steps
from robolearn.eval.runner import EvalConfig, evaluate

log = logging.getLogger(__name__)

POLICY_FILES = ("model.safetensors", "config.json", "stats.json")


def checkpoint_evaluator(run, out: Path) -> CheckpointEvaluator:
    """The evaluator a training run's eval_* fields ask for (``run``: robolearn.train.config.RunConfig);
    what `robolearn train` passes to ``train(..., evaluator=)``."""
    return CheckpointEvaluator(out, run.eval_every, run.eval_episodes, run.eval_workers, run.eval_max_steps or None,
                               task=run.task or None)


class CheckpointEvaluator:
    def __init__(self, out: Path, every: int, episodes: int = 50, workers: int = 2, max_steps: int | None = None,
                 task: str | None = None, seed: int = 100000):
        self.out, self.every = Path(out), every
        self.episodes, self.workers, self.max_steps, self.task, self.seed = episodes, workers, max_steps, task, seed
        self.history: list[tuple[int, dict]] = []

    def __call__(self, step: int, checkpoint: Path, final: bool) -> None:
        if step % self.every and not final:
            return
        report = evaluate(EvalConfig(checkpoint=str(checkpoint), task=self.task, episodes=self.episodes,
                                     workers=self.workers, max_steps=self.max_steps, seed=self.seed, videos=0,
                                     out=str(self.out / "eval" / f"step_{step}")), progress=False)
        entry = {"step": step, "success_rate": report["success_rate"], "wilson95": report["wilson95"],
                 "episodes": report["episodes"], "errors": report["errors"], "checkpoint": str(checkpoint)}
        log.info("eval at step %d: success %.2f", step, report["success_rate"])
        best_before = max((r["success_rate"] for _, r in self.history), default=-1.0)
        self.history.append((step, report))
        if report["success_rate"] > best_before:
            self._keep_best(checkpoint)
        with open(self.out / "eval_log.jsonl", "a") as f:
            f.write(json.dumps(entry) + "\n")
        best_step, best = max(self.history, key=lambda h: (h[1]["success_rate"], -h[0]))
        summary = {
            "max": {"step": best_step, "success_rate": best["success_rate"], "wilson95": best["wilson95"],
                    "checkpoint": str(self.out / "checkpoints" / "best")},
            "last": entry,
            "history": [{"step": s, "success_rate": r["success_rate"], "wilson95": r["wilson95"]} for s, r in self.history],
        }
        tmp = self.out / "eval_summary.json.tmp"
        tmp.write_text(json.dumps(summary, indent=2))
        tmp.replace(self.out / "eval_summary.json")
        plot_success_over_steps(self.history, self.out / "eval_success.png")

    def _keep_best(self, checkpoint: Path) -> None:
        """Copy the policy files into checkpoints/best in one rename (pruning never touches it)."""
        from robolearn.files import atomic_dir

        with atomic_dir(self.out / "checkpoints" / "best") as tmp:
            for name in POLICY_FILES:
                shutil.copy2(Path(checkpoint) / name, tmp / name)

"""`robolearn quickstart`: the main job, end to end, on a laptop CPU.

    1. collect scripted-expert Lift demos (state observations) into a local zarr store
    2. train a diffusion policy (1D UNet, DDIM 10 steps to act) on them
    3. evaluate it over fixed seeds in robosuite, with videos
    4. print the success rate and where the report, plots and videos are

Every step resumes: re-running skips demos already collected and a finished training run.
The defaults below are embedded (no recipe file needed) and sized for about 10 minutes on
2 CPU cores; `--fast` is a reduced run for CI that checks the plumbing, not the success rate.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

# The training run, as a recipe would say it (robolearn train takes the same keys).
RECIPE = {
    "method": "diffusion",
    "task": "lift",
    "policy": {
        "obs_keys": ["state"],
        "obs_horizon": 2,
        "horizon": 16,
        "n_action_steps": 8,
        "denoiser": "unet",
        "down_dims": [64, 128, 256],  # ~4.5M parameters: DP's [256, 512, 1024] is a GPU size
        "num_train_timesteps": 100,
        "num_inference_steps": 10,
    },
    "train": {
        "steps": 3000,
        "batch_size": 64,
        "lr": 1e-3,
        "warmup_steps": 100,
        "ema_decay": 0.999,
        "checkpoint_every": 1000,
        "log_every": 50,
        "seed": 0,
    },
}


@dataclass
class QuickstartConfig:
    out: str = "runs/quickstart"
    demos: int = 50
    train_steps: int = RECIPE["train"]["steps"]
    eval_episodes: int = 50
    workers: int = 2
    videos: int = 2
    max_eval_steps: int | None = None
    progress: bool = True

    @classmethod
    def fast(cls, **kw) -> "QuickstartConfig":
        """The reduced run CI can afford: every stage, tiny sizes."""
        return cls(**{"demos": 4, "train_steps": 60, "eval_episodes": 2, "videos": 1, "max_eval_steps": 40, **kw})


def run_quickstart(cfg: QuickstartConfig) -> dict:
    from robolearn.errors import UserError
    from robolearn.eval.runner import EvalConfig, evaluate
    from robolearn.sim.collect import CollectConfig, collect
    from robolearn.train.config import load_recipe
    from robolearn.train.run import train

    if cfg.demos < 1 or cfg.train_steps < 1 or cfg.eval_episodes < 1:
        raise UserError("quickstart: --demos, --train-steps and --eval-episodes must be >= 1")
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    timings = {}

    t0 = time.perf_counter()
    store = out / "lift_demos.zarr"
    log.info("1/3 collecting %d scripted Lift demos into %s", cfg.demos, store)
    collect(CollectConfig(task="lift", episodes=cfg.demos, out=str(store), workers=cfg.workers, cameras=[],
                          progress=cfg.progress))
    timings["collect_s"] = round(time.perf_counter() - t0, 1)

    t0 = time.perf_counter()
    run_dir = out / "train"
    recipe = {**RECIPE, "dataset": str(store), "out": str(run_dir),
              "train": {**RECIPE["train"], "steps": cfg.train_steps, "progress": cfg.progress,
                        "checkpoint_every": min(RECIPE["train"]["checkpoint_every"], cfg.train_steps)}}
    ckpt = run_dir / "checkpoints" / "last"
    done = _finished_step(run_dir) >= cfg.train_steps
    if done:
        log.info("2/3 training already finished in %s", run_dir)
    else:
        resume = run_dir if ckpt.exists() else None
        log.info("2/3 training a diffusion policy for %d steps (%s)", cfg.train_steps, "resuming" if resume else "fresh")
        train(load_recipe(None, [], base=recipe), resume=resume)
    timings["train_s"] = round(time.perf_counter() - t0, 1)

    t0 = time.perf_counter()
    log.info("3/3 evaluating over %d episodes", cfg.eval_episodes)
    report = evaluate(EvalConfig(checkpoint=str(ckpt), episodes=cfg.eval_episodes, workers=cfg.workers,
                                 videos=cfg.videos, max_steps=cfg.max_eval_steps, out=str(out / "eval")),
                      progress=cfg.progress)
    timings["eval_s"] = round(time.perf_counter() - t0, 1)
    summary = {
        "success_rate": report["success_rate"],
        "wilson95": report["wilson95"],
        "episodes": report["episodes"],
        "timings": timings,
        "store": str(store),
        "checkpoint": str(ckpt.resolve()),
        "train_loss_plot": str(run_dir / "train_loss.png"),
        "report": report["report"],
        "plot": report["plot"],
        "videos": report["videos"],
    }
    (out / "quickstart.json").write_text(json.dumps(summary, indent=2))
    return summary


def _finished_step(run_dir: Path) -> int:
    """The step of the last checkpoint of a run (0 if none)."""
    state = run_dir / "checkpoints" / "last" / "trainer_state.json"
    if not state.is_file():
        return 0
    try:
        return int(json.loads(state.read_text()).get("step", 0))
    except (ValueError, json.JSONDecodeError):
        return 0

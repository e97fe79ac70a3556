"""`robolearn quickstart`: the main job, end to end, on a laptop CPU.

    1. collect scripted-expert Lift demos (state observations) into a local zarr store
    2. train a diffusion policy (1D UNet, DDIM 10 steps to act) on them
    3. evaluate it over fixed seeds in robosuite, with videos
    4. print the success rate and where the report, plots and videos are

Every step resumes: re-running skips demos already collected and a finished training run.
The defaults below are embedded (no recipe file needed) and sized for about 10 minutes on
2 CPU cores; `--fast` is a reduced run for CI that checks the plumbing, not the success rate.
The job spans every layer (sim, train, eval), so it lives at the top of the package; its
sub-command is registered here too. Only the videos need rendering: without an offscreen GL
backend the job runs without them and says so in one line.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from dataclasses import dataclass, replace
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

    from robolearn.sim.gl import offscreen_problem

    if cfg.demos < 1 or cfg.train_steps < 1 or cfg.eval_episodes < 1:
        raise UserError("quickstart: --demos, --train-steps and --eval-episodes must be >= 1")
    videos_skipped = offscreen_problem() if cfg.videos else None  # checked once, before any worker starts
    if videos_skipped:
        cfg = replace(cfg, videos=0)
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
        "videos_skipped": videos_skipped,  # why there are no videos (no offscreen GL), or None
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


# ---------------------------------------------------------------------- command line
def register(sub: argparse._SubParsersAction) -> None:
    q = sub.add_parser(
        "quickstart",
        help="the main job: collect Lift demos, train a diffusion policy, evaluate it",
        description="Collect scripted-expert Lift demos (state) into a zarr store, train a diffusion policy on them "
        "and evaluate it over 50 fixed seeds; prints the success rate and where the report, plots and videos are. "
        "About 10 minutes on 2 CPU cores. Re-running resumes every step. Without an offscreen OpenGL backend "
        "(EGL or OSMesa) it runs without videos.",
    )
    q.add_argument("--out", default="runs/quickstart", help="output directory (default runs/quickstart)")
    q.add_argument("--fast", action="store_true", help="reduced run (tiny sizes) that checks every stage, e.g. in CI")
    q.add_argument("--demos", type=int, help="demos to collect (default 50)")
    q.add_argument("--train-steps", type=int, help="training steps (default 3000)")
    q.add_argument("--eval-episodes", type=int, help="evaluation episodes (default 50)")
    q.add_argument("--workers", type=int, help="collect/eval worker processes (default 2)")
    q.add_argument("--no-progress", action="store_true", help="no progress bars")
    q.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    given = {k: v for k, v in {"out": args.out, "demos": args.demos, "train_steps": args.train_steps,
                               "eval_episodes": args.eval_episodes, "workers": args.workers}.items() if v is not None}
    if args.no_progress:
        given["progress"] = False
    cfg = QuickstartConfig.fast(**given) if args.fast else QuickstartConfig(**given)
    s = run_quickstart(cfg)
    lo, hi = s["wilson95"]
    t = s["timings"]
    print(f"\nLift success rate: {s['success_rate']:.2f} over {s['episodes']} episodes (95% CI {lo:.2f}-{hi:.2f})")
    print(f"time: collect {t['collect_s']} s, train {t['train_s']} s, eval {t['eval_s']} s")
    print(f"demos:      {s['store']}\ncheckpoint: {s['checkpoint']}\nloss plot:  {s['train_loss_plot']}")
    print(f"report:     {s['report']}\nplot:       {s['plot']}")
    for v in s["videos"]:
        print(f"video:      {v}")
    if s["videos_skipped"]:
        print(f"videos:     skipped, {s['videos_skipped']}")
    return 0

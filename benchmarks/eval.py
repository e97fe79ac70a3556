"""Evaluation throughput: `robolearn eval` with 1 and 2 workers vs a bare robosuite loop, in one run.

    python benchmarks/eval.py [--episodes 4] [--steps 200] [--quick] [--out FILE]

baseline   robosuite.make("Lift") stepped with random OSC_POSE actions in this process
           (no policy, no observation wrapper): the ceiling for one core.
eval_<size>_wN  `robolearn.eval.evaluate` of a diffusion policy (the DP default UNet and our CPU size; DDIM 10
           steps, 8 actions executed per prediction) on lift, state observations, N worker
           processes; env-steps/s over the whole run (worker start-up included) and after
           the first worker is ready.

The policy is untrained, so every episode runs the full horizon: the figure is pure throughput.
Prints JSON (and writes it with --out).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def bare_robosuite_steps_per_s(steps: int) -> float:
    import robolearn.sim  # noqa: F401  (headless GL setup)
    import robosuite
    from robosuite.controllers import load_composite_controller_config

    env = robosuite.make("Lift", robots="Panda", controller_configs=load_composite_controller_config(controller="BASIC"),
                         has_renderer=False, has_offscreen_renderer=False, use_camera_obs=False, horizon=10**9,
                         ignore_done=True, control_freq=20)
    env.reset()
    rng = np.random.default_rng(0)
    actions = rng.uniform(-1, 1, size=(steps, 7))
    t0 = time.perf_counter()
    for a in actions:
        env.step(a)
    dt = time.perf_counter() - t0
    env.close()
    return steps / dt


SIZES = {"unet_256_512_1024": [256, 512, 1024], "unet_64_128_256": [64, 128, 256]}  # DP default, our CPU profile


def make_checkpoint(path: Path, down_dims: list[int]) -> str:
    from robolearn.policies import make_policy
    from robolearn.policies.diffusion import DiffusionConfig

    dim = 19  # lift "state": proprio 9 + object 10
    cfg = DiffusionConfig(obs_keys=["state"], obs_shapes={"state": [dim]}, action_dim=7, down_dims=down_dims,
                          env={"task": "lift", "env": {"cameras": []}})
    unit = {"min": [-1.0] * dim, "max": [1.0] * dim, "mean": [0.0] * dim, "std": [1.0] * dim}
    act = {"min": [-1.0] * 7, "max": [1.0] * 7, "mean": [0.0] * 7, "std": [1.0] * 7}
    make_policy(cfg, {"state": unit, "action": act}).save(path)
    return str(path)


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--episodes", type=int, default=4, help="episodes per eval configuration")
    p.add_argument("--steps", type=int, default=200, help="steps per episode (lift horizon: 200)")
    p.add_argument("--quick", action="store_true", help="tiny sizes, for a smoke test")
    p.add_argument("--out", type=Path)
    args = p.parse_args(argv)
    if args.quick:
        args.episodes, args.steps = 2, 10

    from robolearn.eval.runner import EvalConfig, evaluate

    results = {"baseline_bare_robosuite": {"env_steps_per_s": round(bare_robosuite_steps_per_s(args.episodes * args.steps), 1)}}
    with tempfile.TemporaryDirectory() as tmp:
        for size, dims in SIZES.items():
            ckpt = make_checkpoint(Path(tmp) / size, dims)
            for workers in (1, 2):
                r = evaluate(EvalConfig(checkpoint=ckpt, episodes=args.episodes, workers=workers, videos=0,
                                        max_steps=args.steps, out=str(Path(tmp) / f"eval{workers}")), progress=False)
                results[f"eval_{size}_w{workers}"] = {
                    "env_steps_per_s": r["env_steps_per_s"], "wall_s": r["wall_s"], "env_steps": r["env_steps"],
                    "startup_s": r["startup_s"], "env_steps_per_s_after_startup": r["env_steps_per_s_after_startup"]}
    base = results["baseline_bare_robosuite"]["env_steps_per_s"]
    for k, v in results.items():
        v["ratio_to_bare"] = round(v["env_steps_per_s"] / base, 3)
    report = {"benchmark": "eval_throughput",
              "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": sys.version.split()[0],
                          "loadavg_at_start": os.getloadavg()},
              "setup": {"task": "lift", "obs": "state", "policy": "diffusion unet (sizes in the keys), DDIM 10, execute 8",
                        "episodes": args.episodes, "steps_per_episode": args.steps},
              "results": results}
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return report


if __name__ == "__main__":
    main()

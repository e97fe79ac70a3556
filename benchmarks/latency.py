"""`predict_action_chunk` latency at batch 1 (p50/p99, ms), state and image, in one run.

    python benchmarks/latency.py [--device cpu|cuda] [--iters 50] [--compile] [--goals] [--out FILE]

Recipe-sized policies (untrained weights; latency does not depend on them) for lift-like
observations: state 19-D, or two 84x84 cameras + 9-D proprio; 7-D actions. Heads: diffusion
(UNet, DDIM 10 steps; plus the transformer denoiser), act, and bc as the single-forward baseline.
On CUDA, --compile adds rows with `torch.compile(mode="reduce-overhead")` (CUDA graphs) on the
denoiser and encoder. --goals adds goal-conditioned rows, called the way the daemon calls them
(the same `Goal` every request): state obs with a language + goal-state goal (the instruction's
embedding is cached after the first call), image obs with a goal image of the first camera (its
encoder runs every call). Prints JSON (and writes it with --out).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

from robolearn.goal import Goal, GoalConfig
from robolearn.policies import POLICY_REGISTRY, make_policy

DIMS = {"state": 19, "proprio": 9, "action": 7}
CAMS = ["agentview_image", "robot0_eye_in_hand_image"]
HEADS = {
    "bc": ("bc", {}),
    "diffusion_unet_ddim10": ("diffusion", {"num_inference_steps": 10}),
    "diffusion_transformer_ddim10": ("diffusion", {"denoiser": "transformer", "num_inference_steps": 10}),
    "act": ("act", {}),
}


def stats() -> dict:
    return {k: {"min": [-1.0] * d, "max": [1.0] * d, "mean": [0.0] * d, "std": [1.0] * d} for k, d in DIMS.items()}


def build(head: str, image: bool, device: torch.device, goal: bool = False):
    method, kw = HEADS[head]
    cfg = POLICY_REGISTRY[method].config_class(**kw)
    cfg.obs_keys = [*CAMS, "proprio"] if image else ["state"]
    cfg.image_keys = CAMS if image else []
    cfg.obs_shapes = {"state": [19], "proprio": [9], **{c: [84, 84, 3] for c in CAMS}}
    cfg.action_dim = 7
    if goal and image:
        cfg.goal = GoalConfig(modalities=["image"], image_keys=CAMS[:1], image_shapes={CAMS[0]: [84, 84, 3]})
    elif goal:
        cfg.goal = GoalConfig(modalities=["language", "state"], state_keys=["state"], state_dims={"state": 19})
    torch.manual_seed(0)
    return make_policy(cfg, stats()).to(device).eval()


def make_goal(policy) -> Goal | None:
    """The goal the daemon would pass this policy every request (None when it takes none)."""
    cfg = policy.config.goal
    if not cfg.enabled:
        return None
    rng = np.random.default_rng(0)
    images = {k: rng.integers(0, 256, cfg.image_shapes[k], dtype=np.uint8) for k in cfg.image_keys}
    state = {k: rng.standard_normal(cfg.state_dims[k]).astype(np.float32) for k in cfg.state_keys}
    return Goal("lift the red cube" if "language" in cfg.modalities else None, images, state)


def make_obs(policy, device) -> dict:
    to = policy.config.obs_horizon
    obs = {}
    for k in policy.config.obs_keys:
        shape = policy.config.obs_shapes[k]
        if k in policy.config.image_keys:
            obs[k] = torch.randint(0, 256, (1, to, *shape), dtype=torch.uint8, device=device)
        else:
            obs[k] = torch.randn(1, to, *shape, device=device)
    return obs


def time_policy(policy, obs, iters: int, warmup: int, device, goal: Goal | None = None) -> dict:
    times = []
    with torch.inference_mode():
        for i in range(warmup + iters):
            if device.type == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            policy.predict_action_chunk(obs, goal=goal)
            if device.type == "cuda":
                torch.cuda.synchronize()
            if i >= warmup:
                times.append((time.perf_counter() - t0) * 1000)
    t = np.asarray(times)
    return {"p50_ms": round(float(np.percentile(t, 50)), 2), "p99_ms": round(float(np.percentile(t, 99)), 2),
            "mean_ms": round(float(t.mean()), 2), "iters": iters}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--iters", type=int, default=50)
    ap.add_argument("--image-iters", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--heads", default=",".join(HEADS))
    ap.add_argument("--compile", action="store_true", help="CUDA: also time torch.compile(mode='reduce-overhead')")
    ap.add_argument("--goals", action="store_true", help="also time goal-conditioned heads (eager)")
    ap.add_argument("--out")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    rows = []
    for image in (False, True):
        for head in args.heads.split(","):
            policy = build(head, image, device)
            obs = make_obs(policy, device)
            iters = args.image_iters if image else args.iters
            row = {"head": head, "obs": "image" if image else "state", "variant": "eager",
                   **time_policy(policy, obs, iters, args.warmup, device)}
            rows.append(row)
            print(json.dumps(row), file=sys.stderr)
            if args.compile and device.type == "cuda":
                for name in ("denoiser", "encoder", "head"):
                    if hasattr(policy, name):
                        setattr(policy, name, torch.compile(getattr(policy, name), mode="reduce-overhead"))
                row = {"head": head, "obs": row["obs"], "variant": "compile_reduce_overhead",
                       **time_policy(policy, obs, iters, args.warmup + 5, device)}
                rows.append(row)
                print(json.dumps(row), file=sys.stderr)
            if args.goals:
                policy = build(head, image, device, goal=True)
                goal = make_goal(policy)
                row = {"head": head, "obs": row["obs"], "variant": "goal_" + "+".join(goal.modalities),
                       **time_policy(policy, obs, iters, args.warmup, device, goal)}
                rows.append(row)
                print(json.dumps(row), file=sys.stderr)
    for r in rows:
        base = next(b for b in rows if b["head"] == "bc" and b["obs"] == r["obs"] and b["variant"] == "eager") if "bc" in args.heads else None
        if base:
            r["ratio_to_bc"] = round(r["p50_ms"] / base["p50_ms"], 2)
    result = {"benchmark": "latency", "device": str(device), "torch": torch.__version__, "threads": args.threads,
              "batch": 1, "machine": platform.processor() or platform.machine(), "results": rows}
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()

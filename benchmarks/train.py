"""Training throughput (samples/s) per policy head, state and image observations, in one run.

    python benchmarks/train.py [--device cpu|cuda] [--batch-size 16] [--steps 4] [--full] [--out FILE]

Builds a small synthetic lift-like store (state 19-D, proprio 9-D, two 84x84 cameras, 7-D actions),
then times `Trainer.train_step` (forward, backward, AdamW, EMA) through the real WindowDataset +
DataLoader for bc (the baseline), diffusion (UNet and transformer) and act. By default the image
encoders are the standard ResNet-18 width (64) and the recipe-sized heads; `--small` shrinks them.
Reports samples/s and each head's ratio to bc. Prints JSON (and writes it with --out).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from robolearn.datasets.store import EpisodeStore
from robolearn.train.config import load_recipe
from robolearn.train.data import open_training_data
from robolearn.train.distributed import resolve_device
from robolearn.policies import make_policy
from robolearn.train.trainer import Trainer

HEADS = {
    "bc": {"method": "bc"},
    "diffusion_unet": {"method": "diffusion"},
    "diffusion_transformer": {"method": "diffusion", "policy.denoiser": '"transformer"'},
    "act": {"method": "act"},
}
IMAGE_KEYS = ["agentview_image", "robot0_eye_in_hand_image", "proprio"]


def make_store(path: Path, episodes: int = 4, length: int = 60) -> str:
    rng = np.random.default_rng(0)
    store = EpisodeStore.create(str(path), attrs={"task": "lift", "env": {}})
    for _ in range(episodes):
        data = {
            "state": rng.normal(size=(length, 19)).astype(np.float32),
            "proprio": rng.normal(size=(length, 9)).astype(np.float32),
            "action": rng.uniform(-1, 1, size=(length, 7)).astype(np.float32),
            "agentview_image": rng.integers(0, 255, (length, 84, 84, 3), dtype=np.uint8),
            "robot0_eye_in_hand_image": rng.integers(0, 255, (length, 84, 84, 3), dtype=np.uint8),
        }
        store.append_episode(data)
    store.compute_stats()
    return str(path)


def bench(store: str, head: str, image: bool, args) -> dict:
    overrides = [f"dataset={store}", f"train.batch_size={args.batch_size}", "train.progress=false",
                 "train.tensorboard=false", f'device="{args.device}"', "data.in_ram=true"]
    overrides += [f"{k}={v}" for k, v in HEADS[head].items() if k != "method"]
    overrides.append(f"method={HEADS[head]['method']}")
    obs = IMAGE_KEYS if image else ["state"]
    overrides.append("policy.obs_keys=" + json.dumps(obs))
    if args.small:
        overrides += ["policy.encoder.image_width=16"]
    run = load_recipe(None, overrides)
    dataset, stats = open_training_data(run)
    torch.manual_seed(0)
    policy = make_policy(run.policy, stats)
    device = resolve_device(args.device)
    if args.compile and device.type == "cuda":
        policy.compile()
    with tempfile.TemporaryDirectory() as out:
        trainer = Trainer(policy, dataset, run.train, Path(out), device, num_workers=args.workers)
        batches = iter(trainer._loader())
        for _ in range(args.warmup):
            trainer.train_step(next(batches))
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(args.steps):
            trainer.train_step(next(batches))
        if device.type == "cuda":
            torch.cuda.synchronize()
        dt = time.perf_counter() - t0
    n_params = sum(p.numel() for p in policy.parameters())
    return {"head": head, "obs": "image" if image else "state", "params_m": round(n_params / 1e6, 2),
            "samples_per_s": round(args.steps * args.batch_size / dt, 1), "s_per_step": round(dt / args.steps, 4)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--workers", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--small", action="store_true", help="ResNet width 16 instead of 64")
    ap.add_argument("--compile", action="store_true", help="torch.compile the policy (CUDA only)")
    ap.add_argument("--heads", default=",".join(HEADS))
    ap.add_argument("--no-image", action="store_true")
    ap.add_argument("--out")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        store = make_store(Path(tmp) / "bench.zarr")
        for image in (False,) if args.no_image else (False, True):
            for head in args.heads.split(","):
                rows.append(bench(store, head, image, args))
                print(json.dumps(rows[-1]), file=sys.stderr)
    for r in rows:
        base = next((b for b in rows if b["head"] == "bc" and b["obs"] == r["obs"]), None)
        if base:
            r["ratio_to_bc"] = round(r["samples_per_s"] / base["samples_per_s"], 3)
    result = {"benchmark": "train", "device": args.device, "torch": torch.__version__, "threads": args.threads,
              "batch_size": args.batch_size, "steps": args.steps, "machine": platform.processor() or platform.machine(),
              "results": rows}
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()

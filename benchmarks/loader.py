"""Window sampler throughput vs the in-RAM limit, in one run.

    python benchmarks/loader.py [--episodes 20] [--steps 150] [--batches 40] [--quick] [--out FILE]

Builds a local store of synthetic episodes (two 84x84 RGB cameras, proprio, actions),
then measures windows/s (obs horizon 2, 16-step action windows, batch 64) for:

    limit         the same windows sliced from numpy arrays already in RAM (no store, no torch)
    ram           WindowDataset(in_ram=True) through a DataLoader, workers 0 and 2
    store         WindowDataset reading frames from the zarr store, workers 0 and 2

for the image set and for state only. Prints JSON (and writes it with --out); each
configuration also reports its ratio to the limit.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from robolearn.datasets.sampler import WindowDataset
from robolearn.datasets.store import EpisodeStore

OBS_HORIZON, ACTION_HORIZON, BATCH = 2, 16, 64
CAMERAS = ("agentview_image", "wrist_image")


def synthetic_frames(rng: np.random.Generator, T: int, size: int = 84) -> np.ndarray:
    """Smooth moving gradients plus sensor noise: compresses about like rendered scenes."""
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) / size
    t = np.arange(T, dtype=np.float32)[:, None, None] / T
    base = np.stack([np.sin(6 * x + 3 * t), np.cos(5 * y - 2 * t), np.sin(4 * (x + y) + t)], -1) * 100 + 128
    noise = rng.normal(0, 4, size=base.shape)
    return np.clip(base + noise, 0, 255).astype(np.uint8)  # (T, H, W, 3)


def build_store(path: Path, episodes: int, steps: int) -> EpisodeStore:
    rng = np.random.default_rng(0)
    store = EpisodeStore.create(path)
    for _ in range(episodes):
        T = int(steps * rng.uniform(0.8, 1.2))
        data = {cam: synthetic_frames(rng, T) for cam in CAMERAS}
        data["proprio"] = rng.normal(size=(T, 9)).astype(np.float32)
        data["action"] = rng.normal(size=(T, 7)).astype(np.float32)
        store.append_episode(data)
    return store


def limit_windows_per_s(store: EpisodeStore, obs_keys: list[str], n_windows: int) -> float:
    """The same windows sliced straight from numpy arrays in RAM."""
    arrays = {k: store.get(k) for k in [*obs_keys, "action"]}
    ends = store.episode_ends
    starts = np.concatenate([[0], ends[:-1]])
    ep_of_step = np.repeat(np.arange(len(ends)), np.diff(ends, prepend=0))
    rng = np.random.default_rng(1)
    picks = rng.integers(0, store.n_steps, size=n_windows)
    t0 = time.perf_counter()
    for i in range(0, n_windows, BATCH):
        batch = []
        for t in picks[i : i + BATCH]:
            s, e = starts[ep_of_step[t]], ends[ep_of_step[t]]
            obs_idx = np.clip(np.arange(t - OBS_HORIZON + 1, t + 1), s, e - 1)
            act_idx = np.minimum(np.arange(t, t + ACTION_HORIZON), e - 1)
            batch.append(({k: arrays[k][obs_idx] for k in obs_keys}, arrays["action"][act_idx]))
        _ = {k: np.stack([b[0][k] for b in batch]) for k in obs_keys}, np.stack([b[1] for b in batch])
    return n_windows / (time.perf_counter() - t0)


def loader_windows_per_s(store: EpisodeStore, obs_keys: list[str], in_ram: bool, workers: int, batches: int) -> float:
    ds = WindowDataset(store.path, obs_keys=obs_keys, obs_horizon=OBS_HORIZON, action_horizon=ACTION_HORIZON, in_ram=in_ram)
    g = torch.Generator().manual_seed(0)
    loader = torch.utils.data.DataLoader(ds, batch_size=BATCH, shuffle=True, num_workers=workers, generator=g,
                                         persistent_workers=False, drop_last=True)
    it = iter(loader)
    next(it)  # start-up (worker spawn, first reads) is not throughput
    t0 = time.perf_counter()
    n = 0
    for _ in range(batches):
        try:
            next(it)
        except StopIteration:
            it = iter(loader)
            next(it)
        n += BATCH
    return n / (time.perf_counter() - t0)


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--episodes", type=int, default=20)
    p.add_argument("--steps", type=int, default=150, help="mean steps per episode")
    p.add_argument("--batches", type=int, default=40, help="batches of 64 windows per measurement")
    p.add_argument("--quick", action="store_true", help="tiny sizes, for a smoke test")
    p.add_argument("--out", type=Path, help="also write the JSON here")
    args = p.parse_args(argv)
    if args.quick:
        args.episodes, args.steps, args.batches = 3, 40, 3
    torch.set_num_threads(1)

    tmp = Path(tempfile.mkdtemp(prefix="robolearn-loader-bench-"))
    try:
        t0 = time.perf_counter()
        store = build_store(tmp / "bench.zarr", args.episodes, args.steps)
        build_s = time.perf_counter() - t0
        results = {}
        for name, obs_keys in (("images", [*CAMERAS, "proprio"]), ("state", ["proprio"])):
            limit = limit_windows_per_s(store, obs_keys, args.batches * BATCH)
            rows = {"limit_numpy_in_ram": {"windows_per_s": round(limit, 1), "ratio_to_limit": 1.0}}
            for mode, in_ram in (("store", False), ("ram", True)):
                for workers in (0, 2):
                    wps = loader_windows_per_s(store, obs_keys, in_ram, workers, args.batches)
                    rows[f"{mode}_workers{workers}"] = {"windows_per_s": round(wps, 1), "ratio_to_limit": round(wps / limit, 3)}
            results[name] = rows
        report = {
            "benchmark": "loader",
            "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": sys.version.split()[0],
                        "loadavg_at_start": os.getloadavg(),
                        "torch": torch.__version__},
            "setup": {"episodes": store.n_episodes, "steps": store.n_steps, "cameras": list(CAMERAS), "image": [84, 84, 3],
                      "obs_horizon": OBS_HORIZON, "action_horizon": ACTION_HORIZON, "batch": BATCH,
                      "store_mb_on_disk": round(store.nbytes_stored() / 2**20, 1), "build_store_s": round(build_s, 1)},
            "results": results,
        }
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return report


if __name__ == "__main__":
    main()

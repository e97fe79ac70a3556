"""LeRobotDataset's training-window throughput on a local LeRobot v3.0 dataset (run inside .venv-lerobot).

    .venv-lerobot/bin/python benchmarks/lerobot_read.py DATASET_DIR --obs-horizon 2 --action-horizon 16 \\
        --batch 64 --workers 0 --batches 20

The windows are the ones robolearn's WindowDataset serves (robolearn/datasets/sampler.py), written as
LeRobot `delta_timestamps`: `obs_horizon` frames of every camera and of each observation key, ending at the
sampled step (-(To-1)/fps .. 0), and `action_horizon` actions from it (0 .. (Ta-1)/fps). Like
WindowDataset, LeRobot pads past an episode's ends with the edge value (and flags it in `<key>_is_pad`).
Windows are drawn in random order (DataLoader shuffle, seeded) and batched by torch's default collate.
`--warmup` batches (worker start-up, decoder and file-handle caches filling) are left out of the timing.
`--torch-threads` (default 1) sets torch's intra-op threads in the main process: each window does a few tiny
tensor ops (LeRobot's timestamp matching), and torch's thread pool on a shared 2-core machine made them ~10x
slower (11 ms vs 106 ms per window at load 10); one thread is LeRobot's best case here, and what each
DataLoader worker uses anyway.

Prints one JSON object: windows/s, the timing and the load average, the keys read, and exactly what ran
(`lerobot_compat.describe`: lerobot-dataset, torch, torchvision, PyAV / FFmpeg versions, the decoder).
Video is decoded by LeRobot's PyAV path (see lerobot_compat.py for why not torchcodec here). Nothing is
downloaded: the dataset is read from DATASET_DIR with HF_HUB_OFFLINE=1. Set HF_HOME to keep the `datasets`
Arrow cache somewhere other than ~/.cache/huggingface (LeRobot converts the parquet files there once).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import lerobot_compat  # noqa: E402

lerobot_compat.install()

import torch  # noqa: E402
from ledataset.datasets.lerobot_dataset import LeRobotDataset, LeRobotDatasetMetadata  # noqa: E402

DEFAULT_KEYS = ("timestamp", "frame_index", "episode_index", "index", "task_index")


def window_keys(meta: LeRobotDatasetMetadata, action_key: str, obs_keys: list[str] | None) -> tuple[list[str], list[str]]:
    """(camera keys, low-dim observation keys) to read; by default every camera and observation.* feature."""
    cameras = list(meta.camera_keys)
    if obs_keys is None:
        lowdim = [k for k, ft in meta.features.items()
                  if k not in cameras and k != action_key and k not in DEFAULT_KEYS and ft["dtype"] != "string"
                  and k.startswith("observation")]
    else:
        missing = [k for k in obs_keys if k not in meta.features]
        if missing:
            raise SystemExit(f"{meta.root}: no feature(s) {missing}; has {sorted(meta.features)}")
        lowdim = [k for k in obs_keys if k not in cameras]
        cameras = [k for k in obs_keys if k in cameras]
    return cameras, lowdim


def delta_timestamps(fps: int, obs: list[str], action_key: str, obs_horizon: int, action_horizon: int) -> dict:
    past = [(i - obs_horizon + 1) / fps for i in range(obs_horizon)]
    out = {k: past for k in obs}
    if action_horizon:
        out[action_key] = [i / fps for i in range(action_horizon)]
    return out


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("dataset", help="local LeRobot v3.0 dataset directory (meta/info.json inside)")
    p.add_argument("--obs-horizon", type=int, default=2)
    p.add_argument("--action-horizon", type=int, default=16)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--workers", type=int, default=0, help="DataLoader workers")
    p.add_argument("--batches", type=int, default=20, help="timed batches")
    p.add_argument("--warmup", type=int, default=2, help="untimed batches first")
    p.add_argument("--action-key", default="action")
    p.add_argument("--obs-keys", nargs="*", default=None, help="features to window (default: cameras + observation.*)")
    p.add_argument("--video-backend", default="pyav", help="LeRobot's video_backend (pyav is what loads here)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--torch-threads", type=int, default=1, help="torch intra-op threads in the main process")
    p.add_argument("--out", default=None, help="also write the JSON here")
    args = p.parse_args(argv)

    torch.set_num_threads(args.torch_threads)
    root = Path(args.dataset)
    if not (root / "meta" / "info.json").is_file():
        raise SystemExit(f"{root / 'meta' / 'info.json'}: missing; expected a LeRobot v3.0 dataset directory")
    t0 = time.perf_counter()
    meta = LeRobotDatasetMetadata(repo_id=f"local/{root.name}", root=root)
    cameras, lowdim = window_keys(meta, args.action_key, args.obs_keys)
    deltas = delta_timestamps(meta.fps, cameras + lowdim, args.action_key, args.obs_horizon, args.action_horizon)
    dataset = LeRobotDataset(repo_id=f"local/{root.name}", root=root, delta_timestamps=deltas,
                             video_backend=args.video_backend)
    open_s = time.perf_counter() - t0

    generator = torch.Generator().manual_seed(args.seed)
    loader = torch.utils.data.DataLoader(dataset, batch_size=args.batch, shuffle=True, num_workers=args.workers,
                                         generator=generator, drop_last=True,
                                         persistent_workers=args.workers > 0)
    total = args.warmup + args.batches
    if total * args.batch > len(dataset):
        print(f"note: {total} batches of {args.batch} > {len(dataset)} windows; the loader is restarted (reshuffled)",
              file=sys.stderr)

    def batches():
        while True:
            yield from loader

    it = batches()
    t1 = time.perf_counter()
    first = None
    for _ in range(args.warmup):
        batch = next(it)
        first = first if first is not None else time.perf_counter() - t1
    t2 = time.perf_counter()
    for _ in range(args.batches):
        batch = next(it)
    elapsed = time.perf_counter() - t2
    shapes = {k: list(v.shape) for k, v in batch.items() if isinstance(v, torch.Tensor) and k in deltas}

    result = {
        "dataset": str(root),
        "windows_per_s": args.batches * args.batch / elapsed,
        "batches": args.batches,
        "batch": args.batch,
        "workers": args.workers,
        "warmup_batches": args.warmup,
        "elapsed_s": elapsed,
        "first_batch_s": first,
        "open_s": open_s,
        "obs_horizon": args.obs_horizon,
        "action_horizon": args.action_horizon,
        "fps": meta.fps,
        "episodes": meta.total_episodes,
        "frames": meta.total_frames,
        "camera_keys": cameras,
        "video_keys": [k for k in cameras if k in meta.video_keys],
        "lowdim_obs_keys": lowdim,
        "delta_timestamps": deltas,
        "batch_shapes": shapes,
        "video_codecs": {k: meta.features[k].get("info", {}).get("video.codec") for k in meta.video_keys},
        "load_avg": list(os.getloadavg()),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "lerobot": lerobot_compat.describe(args.video_backend),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
    }
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    return result


if __name__ == "__main__":
    main()

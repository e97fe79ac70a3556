"""LeRobot's own code on both ends of robolearn's LeRobot import/export (run inside .venv-lerobot).

    .venv-lerobot/bin/python benchmarks/lerobot_roundtrip.py read DATASET_DIR OUT.npz [write SPEC.npz NEW_DIR] ...

Commands run in order in one process (LeRobot's imports take seconds, so tests batch them):

read DATASET_DIR OUT.npz   LeRobotDataset(root=DATASET_DIR) reads every frame, in index order, with LeRobot's
                           PyAV decode path; OUT.npz gets one array per feature stacked over frames (cameras
                           as uint8 (N, H, W, C), converted back from LeRobot's float CHW in [0, 1]), plus
                           "__meta__": JSON with each frame's task string and episode index, fps, the features
                           and what ran (lerobot_compat.describe).
write SPEC.npz NEW_DIR     LeRobotDataset.create + add_frame + save_episode, as a LeRobot user records a dataset.
                           SPEC.npz: "__spec__" = JSON {"fps", "features" (LeRobot feature dicts), "episodes":
                           [{"task", "length"}], "vcodec"}, and "ep<i>/<feature>" = that episode's (T, ...) values
                           (cameras (T, H, W, C) uint8).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("SVT_LOG", "1")  # SVT-AV1: errors only
sys.path.insert(0, str(Path(__file__).resolve().parent))

import lerobot_compat  # noqa: E402

lerobot_compat.install()

import numpy as np  # noqa: E402
from ledataset.datasets.lerobot_dataset import LeRobotDataset  # noqa: E402

BACKEND = "pyav"


def read(root: Path, out: Path) -> None:
    ds = LeRobotDataset(repo_id=f"local/{root.name}", root=root, video_backend=BACKEND)
    cameras = set(ds.meta.camera_keys)
    columns: dict[str, list] = {}
    tasks, episodes = [], []
    for i in range(len(ds)):
        item = ds[i]
        for key, value in item.items():
            if key == "task":
                tasks.append(value)
                continue
            if not hasattr(value, "numpy"):
                continue
            if key in cameras:  # float (C, H, W) in [0, 1] -> uint8 (H, W, C)
                value = (value.permute(1, 2, 0) * 255).round().clamp(0, 255).to(dtype=__import__("torch").uint8)
            columns.setdefault(key, []).append(value.numpy())
        episodes.append(int(item["episode_index"]))
    meta = {"tasks": tasks, "episode_index": episodes, "fps": ds.fps, "num_episodes": ds.num_episodes,
            "features": ds.meta.features, "lerobot": lerobot_compat.describe(BACKEND)}
    np.savez(out, __meta__=np.array(json.dumps(meta)), **{k: np.stack(v) for k, v in columns.items()})
    print(f"read {root}: {len(ds)} frames, {ds.num_episodes} episodes -> {out}")


def write(spec_path: Path, root: Path) -> None:
    arrays = np.load(spec_path)
    spec = json.loads(str(arrays["__spec__"]))
    features = {k: {**ft, "shape": tuple(ft["shape"])} for k, ft in spec["features"].items()}
    ds = LeRobotDataset.create(repo_id=f"local/{root.name}", fps=spec["fps"], features=features, root=root,
                               video_backend=BACKEND, vcodec=spec.get("vcodec", "libsvtav1"))
    for i, ep in enumerate(spec["episodes"]):
        for t in range(ep["length"]):
            frame = {k: arrays[f"ep{i}/{k}"][t] for k in features}
            ds.add_frame({**frame, "task": ep["task"]})
        ds.save_episode()
    ds.finalize()
    print(f"wrote {root}: {len(spec['episodes'])} episodes with LeRobotDataset.create/add_frame/save_episode")


def main(argv: list[str]) -> None:
    ops = {"read": read, "write": write}
    while argv:
        op, a, b, argv = argv[0], argv[1], argv[2], argv[3:]
        if op not in ops:
            raise SystemExit(f"unknown command {op!r}; expected read or write")
        ops[op](Path(a), Path(b))


if __name__ == "__main__":
    main(sys.argv[1:])

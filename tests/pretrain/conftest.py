"""Shared fixtures for the pretraining tests: a tiny synthetic image store (no robosuite) and tiny
recipes. Test modules get the builders through fixtures:

    make_square_store(path, ...)  -> str   episodes of a square moving on a 32x32 camera image
    square_store                  -> str   the default one, fresh per test (tmp_path)
    tiny_recipe(store, method, out, **sections) -> dict   a recipe dict (what a TOML file holds)
    to_toml(recipe)               -> str   the recipe dict as TOML (for the CLI tests)
    tiny_encoder                  -> dict  TINY_ENCODER: width-8 ResNet-18, 16-d features, 28x28 crops

TINY_ENCODER pools by global average: the ResNet downsamples 32x, so a 28x28 crop ends in a 1x1
feature map, over which a spatial softmax would output the same keypoints for every image.

The square store: a 6x6 bright square moves on a dark 32x32 background, 2 px/step at most, first
towards a random waypoint (phase 0), then towards a random goal (phase 1). Its top-left corner (in
[-1, 1]) is the state: ``proprio`` (2,) the square, ``object`` (2,) the goal, ``state`` = both;
``action`` (2,) is the position delta of each step (pixels / 2, in [-1, 1]); ``phase`` (int16) is
the true phase. Everything an image method needs is visible in the frames.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from robolearn.datasets.store import EpisodeStore

SIZE, SQUARE, MAX_STEP = 32, 6, 2
TINY_ENCODER = {"image_width": 8, "image_feature_dim": 16, "image_pooling": "avg", "crop_size": 28}


def _frame(pos: np.ndarray, mirror: bool = False) -> np.ndarray:
    img = np.full((SIZE, SIZE, 3), 20, np.uint8)
    r, c = int(pos[0]), int(pos[1])
    img[r : r + SQUARE, c : c + SQUARE] = (230, 200, 60)
    return img[:, ::-1].copy() if mirror else img


def make_square_store(path, n_episodes: int = 6, length: int = 20, images: bool = True, actions: bool = True,
                      second_camera: bool = False, image_size: int = SIZE, seed: int = 0) -> str:
    """Write the square store at ``path`` (see the module docstring); returns the path."""
    rng = np.random.default_rng(seed)
    hi = SIZE - SQUARE
    store = EpisodeStore.create(str(path), attrs={"task": "square", "env": {"size": SIZE}})
    for e in range(n_episodes):
        pos = rng.integers(0, hi + 1, 2)
        waypoint, goal = rng.integers(0, hi + 1, 2), rng.integers(0, hi + 1, 2)
        rows: dict[str, list] = {k: [] for k in ("proprio", "object", "action", "phase", "cam", "cam2")}
        phase = 0
        for _ in range(length):
            if phase == 0 and np.array_equal(pos, waypoint):
                phase = 1
            target = waypoint if phase == 0 else goal
            delta = np.clip(target - pos, -MAX_STEP, MAX_STEP)
            rows["proprio"].append(pos / hi * 2 - 1)
            rows["object"].append(goal / hi * 2 - 1)
            rows["action"].append(delta / MAX_STEP)
            rows["phase"].append(phase)
            rows["cam"].append(_frame(pos))
            rows["cam2"].append(_frame(pos, mirror=True))
            pos = pos + delta
        data = {
            "proprio": np.asarray(rows["proprio"], np.float32),
            "object": np.asarray(rows["object"], np.float32),
            "phase": np.asarray(rows["phase"], np.int16),
        }
        data["state"] = np.concatenate([data["proprio"], data["object"]], axis=1)
        if actions:
            data["action"] = np.asarray(rows["action"], np.float32)
        if images:
            cam = np.stack(rows["cam"])
            data["agentview_image"] = cam if image_size == SIZE else _resize(cam, image_size)
            if second_camera:
                data["wrist_image"] = np.stack(rows["cam2"])
        store.append_episode(data, meta={"task": "square", "success": True, "instruction": ""})
    store.compute_stats()
    return str(path)


def _resize(frames: np.ndarray, size: int) -> np.ndarray:
    idx = np.arange(size) * SIZE // size  # nearest neighbour
    return np.ascontiguousarray(frames[:, idx][:, :, idx])


def tiny_recipe(store: str, method: str, out, **sections) -> dict:
    """A tiny CPU recipe dict for ``method`` on ``store``; ``sections`` (pretrain=..., train=...,
    data=...) update the defaults of that table."""
    recipe = {
        "dataset": str(store), "method": method, "out": str(out), "device": "cpu",
        "pretrain": {"obs_keys": ["agentview_image"], "encoder": dict(TINY_ENCODER)},
        "train": {"steps": 20, "batch_size": 16, "lr": 1e-3, "warmup_steps": 5, "log_every": 1,
                  "checkpoint_every": 1000, "progress": False, "tensorboard": False, "ema_decay": 0.99},
        "data": {"in_ram": True},
    }
    for name, values in sections.items():
        recipe[name] = {**recipe[name], **values} if isinstance(recipe.get(name), dict) else values
    return recipe


def to_toml(d: dict, prefix: str = "") -> str:
    """Minimal TOML writer for recipe dicts (tables after scalars)."""
    import json

    text = "".join(f"{k} = {json.dumps(v)}\n" for k, v in d.items() if not isinstance(v, dict))
    for k, v in d.items():
        if isinstance(v, dict):
            name = f"{prefix}{k}"
            text += f"\n[{name}]\n" + to_toml(v, prefix=name + ".")
    return text


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


@pytest.fixture
def square_store(tmp_path) -> str:
    return make_square_store(tmp_path / "square.zarr")


@pytest.fixture(name="make_square_store")
def _make_square_store_fixture():
    return make_square_store


@pytest.fixture(name="tiny_recipe")
def _tiny_recipe_fixture():
    return tiny_recipe


@pytest.fixture(name="to_toml")
def _to_toml_fixture():
    return to_toml


@pytest.fixture(name="tiny_encoder")
def _tiny_encoder_fixture() -> dict:
    return dict(TINY_ENCODER)


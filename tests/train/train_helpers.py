"""Tiny toy stores for trainer tests: a 2-D point moving to one of two goals."""

from __future__ import annotations

import numpy as np

from robolearn.datasets.store import EpisodeStore




def make_toy_store(
    path, n_episodes: int = 8, length: int = 12, image: bool = False, seed: int = 0, bimodal: bool = True
) -> str:
    """state (2,) position, action (2,) step toward a goal: (+-1, 0) alternating per episode (bimodal) or
    always (1, 0) from a random start in [-1, 1]^2 (unimodal); optional 16x16 camera."""
    rng = np.random.default_rng(seed)
    store = EpisodeStore.create(str(path), attrs={"task": "toy", "env": {"size": 16}})
    for e in range(n_episodes):
        goal = np.array([1.0 if e % 2 == 0 or not bimodal else -1.0, 0.0], np.float32)
        pos = (rng.normal(0, 0.05, 2) if bimodal else rng.uniform(-1, 1, 2)).astype(np.float32)
        states, actions, frames = [], [], []
        for _ in range(length):
            act = np.clip(goal - pos, -0.2, 0.2).astype(np.float32)
            states.append(pos.copy())
            actions.append(act)
            frame = np.zeros((16, 16, 3), np.uint8)
            r, c = np.clip(((pos + 1.5) / 3 * 15).astype(int), 0, 15)
            frame[r, c] = 255
            frames.append(frame)
            pos = pos + act
        data = {"state": np.stack(states), "action": np.stack(actions)}
        if image:
            data["agentview_image"] = np.stack(frames)
        store.append_episode(data, meta={"mode": int(e % 2), "weight": 1.0 if e % 2 == 0 else 0.0})
    store.compute_stats()
    return str(path)








TINY_POLICY = {
    "bc": {"hidden": [32, 32]},
    "diffusion": {"down_dims": [16, 32], "step_embed_dim": 16, "num_train_timesteps": 20, "num_inference_steps": 5},
    "act": {"d_model": 32, "n_heads": 4, "dim_feedforward": 64, "n_encoder_layers": 1, "n_vae_encoder_layers": 1, "latent_dim": 4, "kl_weight": 1.0},
}
TINY_ENCODER = {"image_width": 8, "image_feature_dim": 8, "num_keypoints": 4, "crop_size": 14}


def toy_recipe(store: str, method: str, out, image: bool = False, **train) -> dict:
    """A recipe dict (what a TOML file holds) for a tiny run on a toy store."""
    policy = {**TINY_POLICY[method], "horizon": 8, "n_action_steps": 4,
              "obs_keys": ["state", "agentview_image"] if image else ["state"], "encoder": TINY_ENCODER}
    return {
        "dataset": store, "method": method, "out": str(out), "device": "cpu",
        "policy": policy,
        "train": {"steps": 30, "batch_size": 16, "lr": 1e-3, "warmup_steps": 2, "log_every": 1,
                  "checkpoint_every": 10, "progress": False, "tensorboard": False, **train},
    }


def to_toml(d: dict, prefix: str = "") -> str:
    """Minimal TOML writer for recipe dicts (tables after scalars)."""
    import json

    scalars = [f"{k} = {json.dumps(v)}" for k, v in d.items() if not isinstance(v, dict)]
    text = "\n".join(scalars) + "\n"
    for k, v in d.items():
        if isinstance(v, dict):
            name = f"{prefix}{k}"
            text += f"\n[{name}]\n" + to_toml(v, prefix=name + ".")
    return text

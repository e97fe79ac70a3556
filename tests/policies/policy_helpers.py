"""Tiny configs and synthetic sampler-format batches for every registered policy."""

from __future__ import annotations

import torch

from robolearn.nn.obs_encoder import EncoderConfig
from robolearn.policies import POLICY_REGISTRY, make_policy

STATE_DIM, ACTION_DIM, IMG = 5, 3, 24
# the library's heads (test doubles registered by other test modules are not heads to contract-test)
# (gravmad needs point clouds and keypose labels this toy store lacks: tests/policies/test_gravmad.py has its contract tests)
METHODS = sorted(m for m, cls in POLICY_REGISTRY.items() if cls.__module__.startswith("robolearn.") and m != "gravmad")
STORE_STATS = {
    "state": {"min": [-1.0] * STATE_DIM, "max": [1.0] * STATE_DIM, "mean": [0.0] * STATE_DIM, "std": [0.5] * STATE_DIM},
    "action": {"min": [-2.0] * ACTION_DIM, "max": [2.0] * ACTION_DIM, "mean": [0.0] * ACTION_DIM, "std": [1.0] * ACTION_DIM},
}
# small overrides per method so each builds in milliseconds
TINY = {
    "bc": dict(hidden=[32, 32]),
    "diffusion": dict(down_dims=[16, 32], step_embed_dim=16, num_train_timesteps=20, num_inference_steps=5),
    "act": dict(d_model=32, n_heads=4, dim_feedforward=64, n_encoder_layers=1, n_vae_encoder_layers=1, latent_dim=4),
    "mdt": dict(d_model=32, n_heads=4, encoder_layers=1, decoder_layers=1, num_inference_steps=4),
}




def tiny_policy(method: str, image: bool = False, **kw):
    cfg = POLICY_REGISTRY[method].config_class(**{**TINY.get(method, {}), "horizon": 8, "n_action_steps": 4, **kw})
    cfg.obs_keys = ["state", "cam_image"] if image else ["state"]
    cfg.image_keys = ["cam_image"] if image else []
    cfg.obs_shapes = {"state": [STATE_DIM], "cam_image": [IMG, IMG, 3]}
    cfg.action_dim = ACTION_DIM
    cfg.env = {"task": "toy", "env": {}}
    cfg.encoder = EncoderConfig(image_width=8, image_feature_dim=8, num_keypoints=4, crop_size=20)
    return make_policy(cfg, STORE_STATS)


def synthetic_batch(policy, b: int = 4, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    c = policy.config
    obs = {"state": torch.rand(b, c.obs_horizon, STATE_DIM, generator=g) * 2 - 1}
    if c.image_keys:
        obs["cam_image"] = torch.randint(0, 256, (b, c.obs_horizon, IMG, IMG, 3), generator=g, dtype=torch.uint8)
    return {
        "obs": obs,
        "action": torch.rand(b, c.horizon, ACTION_DIM, generator=g) * 4 - 2,
        "action_is_pad": torch.zeros(b, c.horizon, dtype=torch.bool),
        "masks": {},
        "weight": torch.ones(b),
        "meta": {},
        "episode": torch.zeros(b, dtype=torch.int64),
        "t": torch.zeros(b, dtype=torch.int64),
    }

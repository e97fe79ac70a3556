"""Stand-in policies following the Policy protocol, for tests, dry runs and the benchmark.

`ToyReachPolicy` (eef_delta actions) steers the end effector back and forth
between two points, with a random offset per chunk standing in for the
sample-to-sample variance of a diffusion head (that is what makes chunk
boundaries jump). It implements the real-time-chunking hook the way a
diffusion head should: the committed prefix is reproduced exactly and the
fresh sample is blended in after it. `faults` switches on the failure modes
the fault-injection tests need. `JointTargetPolicy` emits absolute joint
targets (optionally absurd ones) for the joint action space.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np


@dataclass
class ToyConfig:
    method: str = "toy"
    obs_keys: list[str] = field(default_factory=lambda: ["proprio"])
    image_keys: list[str] = field(default_factory=list)
    action_dim: int = 7
    obs_horizon: int = 2
    horizon: int = 16
    n_action_steps: int = 8
    env: dict = field(default_factory=dict)


class ToyReachPolicy:
    def __init__(self, a: tuple = (-0.05, -0.15, 1.05), b: tuple = (-0.05, 0.15, 1.05), noise: float = 0.3,
                 pos_scale: float = 0.05, gain: float = 0.5, seed: int = 0, latency: float = 0.0,
                 faults: str = "", rtc_hook: bool = True):
        self.config = ToyConfig()
        self.points = [np.array(a), np.array(b)]
        self.goal = 0
        self.noise, self.pos_scale, self.gain = noise, pos_scale, gain
        self.rng = np.random.default_rng(seed)
        self.latency = latency  # seconds of fake compute per call
        self.faults = faults  # "", "raise", "nan" (after the first two calls), "slow" (latency x5)
        self.calls = 0
        if not rtc_hook:  # hide the hook (instance attribute shadows the method)
            self.predict_action_chunk = self._plain

    def reset(self) -> None:
        self.goal = 0

    def _plain(self, obs, goal=None):
        return self._predict(obs, None, 0)

    def predict_action_chunk(self, obs, goal=None, prefix=None, prefix_len: int = 0):
        return self._predict(obs, prefix, prefix_len)

    def _predict(self, obs, prefix, prefix_len):
        import torch

        self.calls += 1
        if self.latency:
            time.sleep(self.latency * (5 if self.faults == "slow" else 1))
        if self.faults == "raise" and self.calls > 2:
            raise RuntimeError("toy policy failure")
        p = obs["proprio"][0, -1, :3].double().numpy()  # (3,) latest eef position
        if np.linalg.norm(self.points[self.goal] - p) < 0.03:
            self.goal = 1 - self.goal
        H = self.config.horizon
        acts = np.zeros((H, 7))
        offset = self.rng.normal(0, self.noise, 3)
        for i in range(H):
            d = np.clip(self.gain * (self.points[self.goal] - p) / self.pos_scale, -1, 1)
            acts[i, :3] = np.clip(d + offset, -1, 1)
            p = p + self.pos_scale * acts[i, :3] * 0.9
        acts[:, 6] = -1.0
        if prefix is not None and prefix_len > 0:  # inpaint the committed prefix, blend the rest in
            pre = prefix[0].double().numpy()
            n = min(prefix_len, H)
            acts[:n] = pre[:n]
            for j, i in enumerate(range(n, H)):
                w = min(1.0, (j + 1) / 4)
                acts[i] = (1 - w) * pre[n - 1] + w * acts[i]
        if self.faults == "nan" and self.calls > 2:
            acts[3, 1] = np.nan
        return torch.from_numpy(acts.astype(np.float32))[None]  # (1, H, 7)


class JointTargetPolicy:
    """Absolute joint targets: a slow sine around `home`, or `wild=True` for targets far beyond every limit."""

    def __init__(self, home: np.ndarray, amplitude: float = 0.2, period_s: float = 2.0, dt: float = 0.05,
                 wild: bool = False):
        self.config = ToyConfig(obs_keys=["joint_pos"], action_dim=len(home) + 1)
        self.home, self.amp, self.period_s, self.dt, self.wild = np.asarray(home), amplitude, period_s, dt, wild
        self.k = 0

    def reset(self) -> None:
        self.k = 0

    def predict_action_chunk(self, obs, goal=None):
        import torch

        H = self.config.horizon
        t = (self.k + np.arange(H)) * self.dt
        self.k += self.config.n_action_steps
        q = self.home[None] + self.amp * np.sin(2 * np.pi * t / self.period_s)[:, None]
        if self.wild:
            q = q + 10.0 * np.sign(np.sin(np.arange(H)))[:, None]
        g = np.ones((H, 1))
        return torch.from_numpy(np.concatenate([q, g], axis=1).astype(np.float32))[None]


class ScriptedLiftPolicy:
    """Privileged scripted lift (like the sim experts) behind the Policy protocol: eef_delta actions from
    `state` = proprio (eef pos 3, quat 4, fingers 2) + object (cube pos 3, quat 4, cube - eef 3).
    Approach above the cube, descend, close, lift. Used to check the daemon's whole command path
    (IK, gripper, physics) can lift the cube; a trained checkpoint goes through exactly the same path."""

    def __init__(self, lift_height: float = 0.15, pos_scale: float = 0.05):
        self.config = ToyConfig(obs_keys=["state"])
        self.phase, self.grasp_calls, self.cube0 = 0, 0, None
        self.lift_height, self.pos_scale = lift_height, pos_scale

    def reset(self) -> None:
        self.phase, self.grasp_calls, self.cube0 = 0, 0, None

    def predict_action_chunk(self, obs, goal=None):
        import torch

        s = obs["state"][0, -1].double().numpy()
        eef, cube = s[:3], s[9:12]
        if self.cube0 is None:
            self.cube0 = cube.copy()
        if self.phase == 0 and np.linalg.norm(eef - (cube + [0, 0, 0.06])) < 0.01:
            self.phase = 1
        if self.phase == 1 and np.linalg.norm(eef - cube) < 0.008:
            self.phase = 2
        if self.phase == 2:
            self.grasp_calls += 1
            if self.grasp_calls > 3:
                self.phase = 3
        target = {0: cube + [0, 0, 0.06], 1: cube, 2: eef, 3: self.cube0 + [0, 0, self.lift_height]}[self.phase]
        grip = 1.0 if self.phase >= 2 else -1.0
        H, p = self.config.horizon, eef.copy()
        acts = np.zeros((H, 7))
        for i in range(H):
            acts[i, :3] = np.clip(0.6 * (target - p) / self.pos_scale, -1, 1)
            acts[i, 6] = grip
            p = p + self.pos_scale * acts[i, :3] * 0.6
        return torch.from_numpy(acts.astype(np.float32))[None]

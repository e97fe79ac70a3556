"""Test doubles for the eval tests (never part of the library).

- `faulty_worker`: the eval worker process, made to die or hang on one seed (the runner's job is
  to survive both): `monkeypatch.setattr(runner, "_worker", partial(faulty_worker, crash_seed=s))`.
  The spawned worker imports this module by name (pytest puts tests/eval on sys.path, and spawn
  hands the parent's sys.path to the child).
- `GoalLiftPolicy` (registered as "test_goal_lift"): lifts the Lift cube seeing only `proprio`;
  where the cube is comes from the goal state `object` (the cube's pose at the end of the expert's
  demo), so without the goal it cannot find the cube and holds still.
- `ScriptedChunks`: a deterministic stand-in whose every chunk is a known function of the call
  number, with an optional real-time-chunking hook; it records what it was asked and returned.
- `CountingEnv`: a gym-like env whose observation counts steps (no physics), for executor tests.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

import numpy as np
import torch

from robolearn.goal import Goal
from robolearn.policies import PolicyConfig, register_policy
from robolearn.policies.base import Policy
from robolearn.sim.experts.base import quat_xyzw_to_mat, rot_error, rotz, wrap, yaw_of


# ---------------------------------------------------------------------- faults
class _FaultyJobs:
    """The worker's job queue, dying or hanging when it hands out one seed (mid-episode for the parent)."""

    def __init__(self, jobs, crash_seed: int | None, hang_seed: int | None):
        self.jobs, self.crash_seed, self.hang_seed = jobs, crash_seed, hang_seed

    def get(self):
        job = self.jobs.get()
        if job is not None and job[1] == self.crash_seed:
            os._exit(3)
        if job is not None and job[1] == self.hang_seed:
            time.sleep(3600)
        return job


def faulty_worker(*args, crash_seed: int | None = None, hang_seed: int | None = None) -> None:
    from robolearn.eval import runner

    *head, jobs, results = args
    runner._worker(*head, _FaultyJobs(jobs, crash_seed, hang_seed), results)


# ---------------------------------------------------------------------- a goal-conditioned Lift controller
TABLE_TOP_Z = 0.8  # robosuite Lift's table top; the cube (half size 0.02) rests with its centre ~2 cm above


def goal_object(goal) -> np.ndarray | None:
    """The goal state `object` (cube pos 3, quat xyzw 4, ...) from a Goal or a B=1 GoalBatch."""
    if goal is None:
        return None
    if isinstance(goal, Goal):
        s = goal.state.get("object")
    else:
        present = goal.get("present", {}).get("state")
        s = goal.get("state", {}).get("object") if present is None or bool(np.asarray(present).reshape(-1)[0]) else None
        s = None if s is None else np.asarray(s.cpu() if hasattr(s, "cpu") else s)[0]
    return None if s is None else np.asarray(s, dtype=np.float64)


@register_policy("test_goal_lift")
class GoalLiftPolicy(Policy):
    """Approach above the goal cube, descend, close, lift: OSC_POSE deltas from `proprio` and the goal."""

    config_class = PolicyConfig
    goal_modalities = ("state",)

    def __init__(self, config: PolicyConfig, stats: dict[str, dict]):
        super().__init__(config, stats)
        self.anchor = torch.nn.Parameter(torch.zeros(1))  # a checkpoint needs one tensor
        self.goals_seen: list[np.ndarray | None] = []
        self.reset()

    def reset(self) -> None:
        self.phase, self.steps, self.r_down, self.hold = 0, 0, None, None

    def compute_loss(self, batch: dict) -> dict[str, torch.Tensor]:
        raise NotImplementedError("a scripted controller")

    @torch.no_grad()
    def predict_action_chunk(self, obs, goal=None) -> torch.Tensor:
        p = np.asarray(obs["proprio"][0, -1], dtype=np.float64)
        eef, r_cur = p[:3], quat_xyzw_to_mat(p[3:7])
        if self.r_down is None:
            self.r_down = r_cur
        cube = goal_object(goal)
        self.goals_seen.append(cube)
        action = np.zeros(7)
        action[6] = -1.0
        if cube is not None:
            action = self._act(eef, r_cur, cube)
        chunk = np.repeat(action[None], self.config.horizon, axis=0)
        return torch.from_numpy(chunk.astype(np.float32))[None]

    def _act(self, eef: np.ndarray, r_cur: np.ndarray, cube: np.ndarray) -> np.ndarray:
        yaw0 = yaw_of(self.r_down)
        yaw = yaw0 + wrap(yaw_of(quat_xyzw_to_mat(cube[3:7])) - yaw0, np.pi / 2)  # a face pair near the reset yaw
        grasp = np.array([cube[0], cube[1], TABLE_TOP_Z + 0.02])
        self.steps += 1
        if self.phase == 0:  # above the cube, turned to its faces
            target, grip = grasp + [0, 0, 0.06], -1.0
            if np.linalg.norm(target - eef) < 0.01 or self.steps > 80:
                self.phase, self.steps = 1, 0
        elif self.phase == 1:  # descend
            target, grip = grasp, -1.0
            if np.linalg.norm(target - eef) < 0.008 or self.steps > 40:
                self.phase, self.steps, self.hold = 2, 0, eef.copy()
        elif self.phase == 2:  # close
            target, grip = self.hold, 1.0
            if self.steps > 8:
                self.phase, self.steps = 3, 0
        else:  # lift
            target, grip = np.array([eef[0], eef[1], TABLE_TOP_Z + 0.2]), 1.0
        rerr = rot_error(rotz(yaw - yaw0) @ self.r_down, r_cur)
        return np.concatenate([np.clip((target - eef) / 0.05, -1, 1), np.clip(rerr / 0.5, -0.5, 0.5), [grip]])


def save_goal_lift_checkpoint(path, with_goal: bool = True) -> str:
    """A test_goal_lift checkpoint for robosuite Lift (state obs: proprio 9, object 10)."""
    from robolearn.goal import GoalConfig
    from robolearn.policies import make_policy

    goal = GoalConfig(modalities=["state"], state_keys=["object"], state_dims={"object": 10}) if with_goal else GoalConfig()
    cfg = PolicyConfig(method="test_goal_lift", obs_keys=["proprio"], obs_shapes={"proprio": [9], "object": [10]},
                       action_dim=7, obs_horizon=1, horizon=2, n_action_steps=1, goal=goal,
                       env={"task": "lift", "env": {"cameras": []}})
    unit = lambda d: {"min": [-1.0] * d, "max": [1.0] * d, "mean": [0.0] * d, "std": [1.0] * d}  # noqa: E731
    make_policy(cfg, {"proprio": unit(9), "object": unit(10), "action": unit(7)}).save(path)
    return str(path)


# ---------------------------------------------------------------------- executor doubles
@dataclass
class ToyChunkConfig:
    obs_keys: list[str] = field(default_factory=lambda: ["count"])
    obs_horizon: int = 1
    horizon: int = 6
    n_action_steps: int = 3
    action_dim: int = 7


class ScriptedChunks:
    """Chunk n (n = 0, 1, ...) is `base(n)[i] = 10 n + i` in dim 0 and sin(n + i + j) in dim j; with the
    hook, a given prefix replaces the chunk's first `prefix_len` actions. Records every call."""

    def __init__(self, horizon: int = 6, n_action_steps: int = 3, hook: bool = True):
        self.config = ToyChunkConfig(horizon=horizon, n_action_steps=n_action_steps)
        self.calls: list[dict] = []  # {"step": obs count, "chunk": (H, D) returned, "prefix_len": int, "goal": ...}
        if not hook:
            self.predict_action_chunk = self._plain

    def reset(self) -> None:
        self.calls.clear()

    def base(self, n: int) -> np.ndarray:
        i = np.arange(self.config.horizon)[:, None]
        j = np.arange(1, self.config.action_dim)[None]
        return np.concatenate([10.0 * n + i, np.sin(n + i + j)], axis=1)

    def _plain(self, obs, goal=None):
        return self._chunk(obs, goal, None, 0)

    def predict_action_chunk(self, obs, goal=None, prefix=None, prefix_len: int = 0):
        return self._chunk(obs, goal, prefix, prefix_len)

    def _chunk(self, obs, goal, prefix, prefix_len):
        a = self.base(len(self.calls))
        if prefix is not None and prefix_len > 0:
            a[:prefix_len] = prefix[0, :prefix_len].double().numpy()
        a = a.astype(np.float32)  # what a head returns
        self.calls.append({"step": int(obs["count"][0, -1, 0]), "chunk": a.astype(np.float64),
                           "prefix_len": int(prefix_len), "goal": goal})
        return torch.from_numpy(a)[None]


class CountingEnv:
    """Observation {"count": [t]}; records the actions it is given; never succeeds."""

    @dataclass
    class Spec:
        control_freq: int = 20

    def __init__(self, horizon: int = 20):
        self.horizon, self.spec_, self.t = horizon, self.Spec(), 0
        self.actions: list[np.ndarray] = []

    def reset(self, seed: int | None = None):
        self.t, self.actions = 0, []
        return {"count": np.array([0.0], dtype=np.float32)}, {"success": False}

    def step(self, action):
        self.actions.append(np.asarray(action, dtype=np.float64).copy())
        self.t += 1
        return {"count": np.array([float(self.t)], dtype=np.float32)}, 0.0, False, self.t >= self.horizon, {"success": False}

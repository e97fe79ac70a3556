"""One policy episode in a sim env: observation history and goal in, chunks executed by the scheduler.

The policy sees the last `obs_horizon` observations (the first one repeated at the start, exactly
as the sampler pads training windows) and predicts a chunk of `horizon` actions. The chunks are
executed by `robolearn.policies.scheduling.ChunkScheduler`, the same scheduler the control daemon
runs on the arm, stepped by the sim clock: slot k = env step k, time k * dt with
dt = 1 / control_freq. When a new chunk is asked for is the daemon's rule:

* ``receding`` (default): when at most `horizon - n_action_steps` planned actions are left, so
  `n_action_steps` actions of every chunk execute (Diffusion Policy's chunked execution);
* ``ensemble``: every step; each step executes the average of every chunk's prediction for it,
  weighted exp(-k * i) with i = 0 for the oldest (ACT's temporal ensembling, k = 0.01);
* ``rtc``: as receding, and the next `rtc_prefix_s` of the current plan (what the arm executes
  while inference runs) is passed to a policy with the prefix hook (``prefix``/``prefix_len``),
  which continues it; a policy without the hook gets its chunk blended in over `rtc_blend_steps`.

By default inference is instantaneous in sim: a chunk predicted from the observation at step k
starts at step k. With `latency_steps = d` it is scheduled at step k + d, as the daemon schedules a
chunk that arrives late: the d steps in between run the old plan and the chunk's first d actions
are dropped; no new chunk is asked for while one is on its way; a step with nothing planned holds
the pose (zero motion, gripper unchanged: the arm's hold); the episode starts once its first chunk
is there (that one is scheduled at step 0). Note that rtc passes the next `rtc_prefix_s` of the plan to the
policy whatever the latency (the daemon's setting: its expected inference delay), so at latency 0
rtc still executes 0.2 s of the old plan at every chunk. The defaults are the daemon's
(`[scheduling]` of a robot config).

The goal (``--goal``) comes from the env: the task's instruction, and the final frame / final
low-dim values of the task's scripted expert run from the same seed (`episode_goal`). It is passed
at every prediction as ``predict_action_chunk(obs, goal=goal)``.

The episode stops at the first step robosuite reports success, or at the task's horizon. Torch's
RNG is seeded from the episode seed, so a stochastic head (diffusion) gives the same episode for
the same seed whichever worker runs it.
"""

from __future__ import annotations

import hashlib
import math
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch

from robolearn.goal import Goal
from robolearn.policies.scheduling import Chunk, ChunkScheduler, boundary_jumps, supports_prefix


@dataclass
class ExecutionConfig:
    """How chunks are executed (the daemon's `[scheduling]` defaults)."""

    mode: str = "receding"  # receding | ensemble | rtc
    ensemble_k: float = 0.01  # ensemble: weight exp(-k * i), i = 0 for the oldest chunk
    rtc_prefix_s: float = 0.2  # rtc: this much of the current plan is passed to the policy as committed
    rtc_blend_steps: int = 4  # rtc without the policy's prefix hook: blend the new chunk in over this many steps
    latency_steps: int = 0  # modelled inference latency: a chunk predicted at step k is scheduled at step k + this


class ChunkExecutor:
    """A policy's chunks through `ChunkScheduler` on the sim clock: `action(k, window)` for step k."""

    def __init__(self, policy, dt: float, execution: ExecutionConfig, goal: Goal | None = None):
        c = policy.config
        self.policy, self.goal, self.dt = policy, goal, float(dt)
        self.mode = execution.mode
        self.sched = ChunkScheduler(execution.mode, dt, exec_latency=0.0, ensemble_k=execution.ensemble_k,
                                    blend_steps=execution.rtc_blend_steps)
        self.sched.anchor(0.0)
        self.horizon, self.n_action_steps = int(c.horizon), int(c.n_action_steps)
        self.n_prefix = min(max(1, math.ceil(execution.rtc_prefix_s / dt - 1e-9)), int(c.horizon) - 1)
        self.prefix_hook = supports_prefix(policy)
        self.action_dim = int(c.action_dim)
        self.latency = int(execution.latency_steps)
        self.seq = 0
        self.in_flight: tuple[int, Chunk] | None = None  # (step it is scheduled at, chunk) while "inference runs"
        self.held = 0  # steps with nothing planned (the arm would hold)
        self._last: np.ndarray | None = None

    def wants_chunk(self, k: int) -> bool:
        return self.in_flight is None and self.sched.wants_chunk(k, self.horizon, self.n_action_steps)

    def action(self, k: int, window: Callable[[], dict[str, torch.Tensor]]) -> np.ndarray:
        """The action executed at step k; predicts a chunk first when the plan runs low.
        `window()` gives the observation window {key: (1, To, ...)}."""
        now = k * self.dt
        if self.in_flight is not None and self.in_flight[0] <= k:  # it arrives: late actions are dropped
            self.sched.add(self.in_flight[1], now)
            self.in_flight = None
        if self.wants_chunk(k):
            prefix = self.sched.prefix(k, self.n_prefix) if self.mode == "rtc" and self.n_prefix > 0 else None
            actions, used = self._predict(window(), prefix, k)
            self.seq += 1
            chunk = Chunk(k, actions, self.seq, now, used)
            if self.latency == 0 or self.seq == 1:
                self.sched.add(chunk, now)
            else:
                self.in_flight = (k + self.latency, chunk)
        a, slot = self.sched.action_at(now)
        if a is None:  # nothing planned (a chunk still on its way): hold the pose, keep the gripper
            self.held += 1
            a = np.zeros(self.action_dim)
            a[-1] = self._last[-1] if self._last is not None else -1.0
        elif slot != k:
            raise RuntimeError(f"the scheduler put step {k} in slot {slot}")
        self._last = a
        return a

    def _predict(self, obs: dict[str, torch.Tensor], prefix: np.ndarray | None, k: int) -> tuple[np.ndarray, int]:
        with torch.inference_mode():
            if prefix is not None and self.prefix_hook:
                p = torch.from_numpy(prefix.astype(np.float32))[None]  # (1, P, Da)
                out = self.policy.predict_action_chunk(obs, goal=self.goal, prefix=p, prefix_len=len(prefix))
                used = len(prefix)
            else:
                out = self.policy.predict_action_chunk(obs, goal=self.goal)
                used = 0
        chunk = out.detach().float().cpu().numpy() if hasattr(out, "detach") else np.asarray(out, dtype=np.float32)
        if chunk.ndim != 3 or chunk.shape[0] != 1 or chunk.shape[2] != self.action_dim or chunk.shape[1] < 1:
            raise ValueError(f"policy returned shape {tuple(chunk.shape)}, expected (1, H, {self.action_dim})")
        if not np.all(np.isfinite(chunk)):
            raise FloatingPointError(f"policy returned non-finite actions at step {k}")
        return chunk[0].astype(np.float64), used


def stack_history(history: deque) -> dict[str, torch.Tensor]:
    """(To,) list of obs dicts -> {key: (1, To, ...)} tensors."""
    return {k: torch.from_numpy(np.stack([o[k] for o in history]))[None] for k in history[0]}


def episode_goal(env, seed: int, modalities: list[str], image_keys: list[str] = (), state_keys: list[str] = ()) -> Goal | None:
    """The goal of the episode at `seed`, from the env (the env is left at the expert's end; the
    rollout resets it to `seed`, which gives the same initial state again):

    language  the task's instruction for this episode (the env's, after reset)
    image     each camera key of `image_keys` ("<camera>_image"): the final frame of the task's
              scripted expert run from `seed`, as a demo store records it (the sampler's goal
              image in training), at the env's image size
    state     each low-dim key of `state_keys`: its final value in that expert run
    """
    if not modalities:
        return None
    goal = Goal()
    if "language" in modalities:
        env.reset(seed=seed)
        goal.instruction = env.instruction or None
    if "image" in modalities or "state" in modalities:
        from robolearn.sim.rollout import run_expert

        demo = run_expert(env, seed).data  # as `robolearn collect` runs it: same seed, same expert randomness
        if "image" in modalities:
            goal.images = {k: np.ascontiguousarray(demo[k][-1]) for k in image_keys}
        if "state" in modalities:
            goal.state = {k: np.asarray(demo[k][-1], dtype=np.float32) for k in state_keys}
    return goal


def run_policy_episode(
    env,
    policy,
    seed: int,
    execution: ExecutionConfig | None = None,
    goal: Goal | None = None,
    max_steps: int | None = None,
    on_frame: Callable[[Any], None] | None = None,
) -> dict:
    """Roll `policy` out in `env` from `seed`; returns seed, success, length, a digest of the
    executed actions, the number of chunks and the boundary jumps of the executed schedule."""
    cfg = policy.config
    torch.manual_seed(seed)
    policy.reset()
    obs, info = env.reset(seed=seed)
    keys = list(cfg.obs_keys)
    history: deque = deque([{k: obs[k] for k in keys}] * cfg.obs_horizon, maxlen=cfg.obs_horizon)
    horizon = min(env.horizon, max_steps or env.horizon)
    executor = ChunkExecutor(policy, 1.0 / env.spec_.control_freq, execution or ExecutionConfig(), goal)
    success = False
    digest = hashlib.sha1()  # of every executed action: identical seeds must give identical episodes
    t = 0
    while t < horizon:
        if on_frame is not None:
            on_frame(env)
        action = executor.action(t, lambda: stack_history(history))
        digest.update(np.asarray(action, dtype=np.float32).tobytes())
        obs, _, _, truncated, info = env.step(action)
        history.append({k: obs[k] for k in keys})
        t += 1
        if info["success"]:
            success = True
            break
        if truncated:
            break
    if on_frame is not None:
        on_frame(env)
    out = {"seed": int(seed), "success": bool(success), "length": int(t), "actions_sha1": digest.hexdigest()[:16],
           "chunks": executor.seq, "held_steps": executor.held, "boundary_jumps": boundary_jumps(executor.sched.history)}
    if getattr(env, "goal_kind", ""):
        out["goal_kind"] = env.goal_kind
    return out

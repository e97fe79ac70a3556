"""One policy episode in a sim env: observation history in, action chunks out.

The policy sees the last `obs_horizon` observations (the first one repeated at
the start, exactly as the sampler pads training windows) and predicts a chunk of
`horizon` actions. Two ways to execute it:

* chunked (default): run the first `n_action_steps` actions, then predict again;
* temporal ensembling (ACT): predict every step and execute the exponentially
  weighted average of every chunk's prediction for the current step
  (weight exp(-k * age), oldest prediction weighted most, k = 0.01 as in ACT).

The episode stops at the first step robosuite reports success, or at the task's
horizon. Torch's RNG is seeded from the episode seed, so a stochastic head
(diffusion) gives the same episode for the same seed whichever worker runs it.
"""

from __future__ import annotations

import hashlib
from collections import deque
from typing import Any, Callable

import numpy as np
import torch


class TemporalEnsembler:
    """ACT's temporal ensembling over overlapping chunk predictions."""

    def __init__(self, k: float = 0.01):
        self.k = k
        self._preds: list[tuple[int, np.ndarray]] = []  # (step predicted at, chunk (T, Da))

    def add(self, t: int, chunk: np.ndarray) -> None:
        self._preds.append((t, chunk))
        self._preds = [(s, c) for s, c in self._preds if t - s < len(c)]

    def action(self, t: int) -> np.ndarray:
        candidates = [c[t - s] for s, c in self._preds if 0 <= t - s < len(c)]
        weights = np.exp(-self.k * np.arange(len(candidates)))  # oldest first
        return (weights[:, None] * np.stack(candidates)).sum(0) / weights.sum()


def stack_history(history: deque) -> dict[str, torch.Tensor]:
    """(To,) list of obs dicts -> {key: (1, To, ...)} tensors."""
    return {k: torch.from_numpy(np.stack([o[k] for o in history]))[None] for k in history[0]}


def run_policy_episode(
    env,
    policy,
    seed: int,
    temporal_ensemble: bool = False,
    max_steps: int | None = None,
    on_frame: Callable[[Any], None] | None = None,
) -> dict:
    """Roll `policy` out in `env` from `seed`; returns seed, success, length and a digest of the actions."""
    cfg = policy.config
    torch.manual_seed(seed)
    policy.reset()
    obs, info = env.reset(seed=seed)
    keys = list(cfg.obs_keys)
    history: deque = deque([{k: obs[k] for k in keys}] * cfg.obs_horizon, maxlen=cfg.obs_horizon)
    horizon = min(env.horizon, max_steps or env.horizon)
    ensembler = TemporalEnsembler() if temporal_ensemble else None
    plan: deque = deque()
    success = False
    digest = hashlib.sha1()  # of every executed action: identical seeds must give identical episodes
    t = 0
    while t < horizon:
        if on_frame is not None:
            on_frame(env)
        if ensembler is not None or not plan:
            with torch.inference_mode():
                chunk = policy.predict_action_chunk(stack_history(history))[0].float().cpu().numpy()  # (T, Da)
            if not np.all(np.isfinite(chunk)):
                raise FloatingPointError(f"policy returned non-finite actions at step {t}")
            if ensembler is not None:
                ensembler.add(t, chunk)
            else:
                plan.extend(chunk[: cfg.n_action_steps])
        action = ensembler.action(t) if ensembler is not None else plan.popleft()
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
    return {"seed": int(seed), "success": bool(success), "length": int(t), "actions_sha1": digest.hexdigest()[:16]}

"""Run a scripted expert in an env and record the episode."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from robolearn.sim.experts import PHASE_ID, make_expert


@dataclass
class Episode:
    data: dict[str, np.ndarray]
    meta: dict = field(default_factory=dict)
    extraneous_segments: int = 0

    @property
    def success(self) -> bool:
        return bool(self.meta.get("success", False))


def run_expert(env, seed: int, randomize: bool = True, mode: int | None = None, hold_steps: int = 5,
               expert_seed: int | None = None, record: bool = True, wrapper=None) -> Episode:
    """Reset env at `seed`, run its expert until success (+hold_steps) or the horizon."""
    obs, info = env.reset(seed=seed)
    expert = make_expert(env, seed=seed if expert_seed is None else expert_seed, randomize=randomize, mode=mode)
    if wrapper is not None:
        expert = wrapper(expert)
    steps: dict[str, list] = {}
    success, since_success, truncated = False, 0, False
    while not truncated:
        action, phase = expert.act()
        if record:
            for k, v in obs.items():
                steps.setdefault(k, []).append(v)
            steps.setdefault("action", []).append(action)
            steps.setdefault("phase", []).append(PHASE_ID[phase])
            for k, v in getattr(expert, "step_labels", {}).items():
                steps.setdefault(k, []).append(v)
        obs, _, _, truncated, info = env.step(action)
        if info["success"]:
            success = True
            since_success += 1
            if since_success >= hold_steps:
                break
        else:
            since_success = 0
    data = {k: np.stack(v) for k, v in steps.items()}
    if "phase" in data:
        data["phase"] = data["phase"].astype(np.int16)
    meta = {"task": env.task, "seed": int(seed), "success": bool(success and info["success"]),
            "instruction": env.instruction, "mode": int(getattr(expert, "mode", 0)), "length": int(env.t)}
    ep = Episode(data, meta)
    ep.extraneous_segments = int(getattr(expert, "segments", 0))
    return ep

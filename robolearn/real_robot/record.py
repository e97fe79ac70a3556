"""Record what the daemon commands, at the policy's rate, as episodes of an episode store.

A policy learns the arm it was shown. Demos collected in robosuite come from its OSC controller;
the daemon drives an arm through differential IK and a joint impedance loop (or a vendor's
controller), which answers the same end-effector deltas differently. Recording demonstrations on
the arm that will run the policy — a scripted or teleoperated controller behind the Policy
protocol, driven by `robolearn serve` — gives training data with the deployment's dynamics:

    rec = EpisodeRecorder()
    daemon = Daemon(cfg, driver, scripted_policy, recorder=rec)
    ... run ...
    rec.save(store, success=True, seed=seed)

Each policy action slot adds one step: the observation when the slot started (the same keys
`robolearn.sim` tasks provide, so a store mixes with sim demos) and the action committed for it.
"""

from __future__ import annotations

import numpy as np

from robolearn.datasets.store import EpisodeStore

OBS_KEYS = ("state", "proprio", "object")


class EpisodeRecorder:
    def __init__(self, obs_keys: tuple[str, ...] = OBS_KEYS):
        self.obs_keys = obs_keys
        self.steps: list[tuple[dict[str, np.ndarray], np.ndarray]] = []

    def add(self, obs: dict[str, np.ndarray], action: np.ndarray) -> None:
        """One policy-rate step: the observation at the slot's start and the action committed for it."""
        self.steps.append(({k: np.asarray(obs[k], np.float32) for k in self.obs_keys if k in obs},
                           np.asarray(action, np.float32).copy()))

    def __len__(self) -> int:
        return len(self.steps)

    def save(self, store: EpisodeStore, **meta) -> int:
        """Append the recorded steps as one episode (atomically) and start a new one."""
        if not self.steps:
            raise ValueError("nothing recorded")
        data = {k: np.stack([o[k] for o, _ in self.steps]) for k in self.steps[0][0]}
        data["action"] = np.stack([a for _, a in self.steps])
        self.steps = []
        return store.append_episode(data, meta)

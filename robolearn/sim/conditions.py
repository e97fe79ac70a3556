"""Demo conditions: extraneous segments (EIL) and demonstrator sets (OOD-IL).

`ExtraneousWrapper` wraps an expert: at random moments it inserts a locally
consistent, task-irrelevant sub-trajectory — "wander" (move 5-10 cm away and come
back to where it left) or "pause" (hold still with a small wiggle) — keeping the
gripper as it was, then hands control back to the expert (whose targets are
closed-loop, so it resumes where it stopped). Every step carries
`step_labels["extraneous"]` 0/1.
"""

from __future__ import annotations

import numpy as np

from robolearn.sim.experts.base import POS_SCALE


class ExtraneousWrapper:
    def __init__(self, expert, rng: np.random.Generator, max_segments: int = 2, rate: float = 0.04):
        self.expert, self.rng = expert, rng
        self.max_segments, self.rate = max_segments, rate
        self.segments = 0
        self.eligible_steps = 0
        self.first_at = int(rng.integers(0, 15))  # the first segment starts this many eligible steps in
        self.plan: list[tuple[str, np.ndarray, int]] = []  # (phase, eef target, steps left)
        self.last_grip = -1.0
        self.step_labels = {"extraneous": np.uint8(0)}

    def __getattr__(self, name):
        return getattr(self.expert, name)

    def _start(self) -> None:
        p0 = self.expert.eef_pos()
        if self.rng.random() < 0.5:
            d = self.rng.normal(size=3)
            d[2] = abs(d[2])  # wander upwards/sideways, never into the table
            away = p0 + d / np.linalg.norm(d) * self.rng.uniform(0.05, 0.1)
            self.plan = [("wander", away, 20), ("wander", p0, 25)]
        else:
            self.plan = [("pause", p0, int(self.rng.integers(8, 20)))]
        self.segments += 1

    def act(self):
        ex = self.expert
        can_start = ex.phase in ("approach", "move", "retreat") and not ex.done and not self.plan
        if can_start and self.segments < self.max_segments:
            self.eligible_steps += 1
            first = self.segments == 0 and self.eligible_steps > self.first_at
            if first or self.rng.random() < self.rate:
                self._start()
        if self.plan:
            phase, target, left = self.plan[0]
            err = target - ex.eef_pos()
            a = np.zeros(7, np.float32)
            a[:3] = np.clip(err / POS_SCALE, -0.7, 0.7)
            if phase == "pause":
                a[3:6] = self.rng.normal(0, 0.08, 3)  # wiggle the wrist
            a[6] = self.last_grip
            left -= 1
            if left <= 0 or (phase == "wander" and np.linalg.norm(err) < 0.01):
                self.plan.pop(0)
            else:
                self.plan[0] = (phase, target, left)
            self.step_labels = {"extraneous": np.uint8(1)}
            return np.clip(a, -1, 1).astype(np.float32), phase
        action, phase = ex.act()
        self.last_grip = float(action[6])
        self.step_labels = {"extraneous": np.uint8(0)}
        return action, phase


# Default demonstrator set for other-dynamics demos: id -> Dynamics kwargs.
DEMONSTRATORS = {
    "default": {},
    "heavy_object": {"object_mass_scale": 4.0},
    "strong_gain": {"action_scale": 1.6, "kp_scale": 1.5},
    "damped_joints": {"joint_damping_scale": 8.0, "kp_scale": 0.6},
}

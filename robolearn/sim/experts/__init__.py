"""Scripted experts per task (privileged state -> OSC_POSE actions + phase labels)."""

from __future__ import annotations

from typing import Callable

from robolearn.sim.experts.assembly import DoorExpert, NutAssemblySquareExpert
from robolearn.sim.experts.base import PHASE_ID, PHASES, Expert
from robolearn.sim.experts.pick import LiftExpert, PickPlaceCanExpert, StackExpert, multi_cube_expert

EXPERTS: dict[str, Callable[..., Expert]] = {
    "lift": LiftExpert,
    "stack": StackExpert,
    "pick_place_can": PickPlaceCanExpert,
    "nut_assembly_square": NutAssemblySquareExpert,
    "door": DoorExpert,
    "multi_cube": multi_cube_expert,
    "multi_cube_reach": multi_cube_expert,
}


def make_expert(env, seed: int = 0, randomize: bool = True, mode: int | None = None) -> Expert:
    """The scripted expert for env.task, with its randomness seeded by `seed`."""
    from robolearn.errors import UserError

    if env.task not in EXPERTS:
        raise UserError(f"task: no scripted expert for {env.task!r}; have {sorted(EXPERTS)}")
    return EXPERTS[env.task](env, seed=seed, randomize=randomize, mode=mode)


__all__ = ["EXPERTS", "PHASES", "PHASE_ID", "Expert", "make_expert"]

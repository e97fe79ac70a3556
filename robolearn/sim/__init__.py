"""robolearn.sim: robosuite task suite as gymnasium envs, scripted experts, demo collection.

    from robolearn.sim import make
    env = make("lift", cameras=("agentview",), image_size=84)

Importing this package picks a headless GL backend (see `gl.py`) before mujoco
or robosuite are imported; heavy imports happen lazily on first use.
"""

from __future__ import annotations

from robolearn.sim.gl import configure_gl

GL_BACKEND = configure_gl()


def make(task: str, **kwargs):
    """Build the gymnasium env for `task` (see `robolearn.sim.env.make`)."""
    from robolearn.sim.env import make as _make

    return _make(task, **kwargs)


def list_tasks() -> list[str]:
    """Names of all registered tasks (from sim/tasks.toml)."""
    from robolearn.sim.suite import load_suite

    return sorted(load_suite())


__all__ = ["make", "list_tasks", "GL_BACKEND"]

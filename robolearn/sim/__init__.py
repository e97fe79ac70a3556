"""robolearn.sim: robosuite task suite as gymnasium envs, scripted experts, demo collection.

    from robolearn.sim import make
    env = make("lift", cameras=("agentview",), image_size=84)

Importing this package picks a headless GL backend (see `gl.py`) before mujoco
or robosuite are imported; heavy imports happen lazily on first use.
"""

from __future__ import annotations

import logging
import os

from robolearn.sim.gl import configure_gl

GL_BACKEND = configure_gl()


def _quiet_robosuite() -> None:
    """robosuite logs a dozen warnings per process (private macro file, optional robot packages,
    unused controller parts) that say nothing about our tasks; keep its errors only, unless
    ROBOLEARN_ROBOSUITE_LOG names a level (e.g. INFO)."""
    level = logging.getLevelName(os.environ.get("ROBOLEARN_ROBOSUITE_LOG", "ERROR").upper())
    if isinstance(level, int):
        logging.getLogger("robosuite_logs").addFilter(lambda record: record.levelno >= level)


_quiet_robosuite()


def make(task: str, **kwargs):
    """Build the gymnasium env for `task` (see `robolearn.sim.env.make`)."""
    from robolearn.sim.env import make as _make

    return _make(task, **kwargs)


def list_tasks() -> list[str]:
    """Names of all registered tasks (the packaged suite plus $ROBOLEARN_TASKS, if set)."""
    from robolearn.sim.suite import load_suite

    return sorted(load_suite())


__all__ = ["make", "list_tasks", "GL_BACKEND"]

"""The task suite: task names and their defaults, read from top-level sim/tasks.toml."""

from __future__ import annotations

import functools
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from robolearn.errors import UserError

SIM_DIR = Path(__file__).resolve().parents[2] / "sim"
SUITE_PATH = SIM_DIR / "tasks.toml"


@dataclass(frozen=True)
class TaskSpec:
    name: str
    env: str  # robosuite env name or "robolearn:<Class>"
    horizon: int
    control_freq: int = 20
    robot: str = "Panda"
    controller: str = "OSC_POSE"
    cameras: tuple[str, ...] = ("agentview",)
    image_size: int = 84
    render_mode: str = "fast"
    instruction: str = ""
    env_kwargs: dict = field(default_factory=dict)


@functools.cache
def load_suite(path: str | None = None) -> dict[str, TaskSpec]:
    """Parse the suite TOML into {task name: TaskSpec}."""
    p = Path(path) if path else SUITE_PATH
    try:
        raw = tomllib.loads(p.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise UserError(f"{p}: cannot read task suite ({exc})") from exc
    defaults = raw.get("defaults", {})
    specs = {}
    for name, body in raw.get("tasks", {}).items():
        merged = {**defaults, **body}
        merged["cameras"] = tuple(merged.get("cameras", ()))
        known = TaskSpec.__dataclass_fields__
        unknown = set(merged) - set(known)
        if unknown:
            raise UserError(f"{p}: tasks.{name}: unknown keys {sorted(unknown)}")
        specs[name] = TaskSpec(name=name, **merged)
    return specs


def get_spec(task: str) -> TaskSpec:
    suite = load_suite()
    if task not in suite:
        raise UserError(f"task: unknown task {task!r}; expected one of {sorted(suite)}")
    return suite[task]

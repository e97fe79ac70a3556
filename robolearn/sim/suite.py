"""The task suite: task names and their defaults.

The default suite ships inside the package (`robolearn/sim/data/tasks.toml`, with the MJCF
assets of our own scenes under `robolearn/sim/data/assets/`), so a wheel or a non-editable
install has it. A user suite file (the top-level `sim/tasks.toml` is an example) is read on
top of it when given: `load_suite(path)`, the `ROBOLEARN_TASKS` environment variable, or the
`--tasks FILE` option of `robolearn collect` / `eval` (which sets that variable, so worker
processes read the same file). A task the user file names is added, or merged key by key over
the packaged task of the same name; the user file's `[defaults]` apply to its own tasks only.
"""

from __future__ import annotations

import functools
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from robolearn.errors import UserError

DATA_DIR = Path(__file__).resolve().parent / "data"
ASSETS_DIR = DATA_DIR / "assets"
SUITE_PATH = DATA_DIR / "tasks.toml"
TASKS_ENV = "ROBOLEARN_TASKS"


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


def user_suite_path() -> str | None:
    """The user suite file named by $ROBOLEARN_TASKS, if any."""
    return os.environ.get(TASKS_ENV, "").strip() or None


def use_user_suite(path: str | None) -> None:
    """Make `path` the user suite for this process and the worker processes it starts."""
    if not path:
        return
    p = Path(path).expanduser().resolve()
    if not p.is_file():
        raise UserError(f"--tasks {path}: no such file; expected a task suite TOML (see sim/tasks.toml)")
    os.environ[TASKS_ENV] = str(p)
    load_suite(str(p))  # errors in the file surface now, as one line, before any worker starts


def load_suite(path: str | None = None) -> dict[str, TaskSpec]:
    """{task name: TaskSpec}: the packaged suite plus the user suite at `path` (default: $ROBOLEARN_TASKS)."""
    return _load(path or user_suite_path())


@functools.cache
def _load(user_path: str | None) -> dict[str, TaskSpec]:
    packaged = _read(SUITE_PATH)
    specs = {name: _spec(name, {**packaged["defaults"], **body}, SUITE_PATH) for name, body in packaged["tasks"].items()}
    if user_path:
        user = _read(Path(user_path))
        for name, body in user["tasks"].items():
            merged = {**packaged["defaults"], **user["defaults"], **packaged["tasks"].get(name, {}), **body}
            specs[name] = _spec(name, merged, Path(user_path))
    return specs


@functools.cache
def _read(path: Path) -> dict[str, dict]:
    """A suite file's `[defaults]` and `[tasks.*]` tables; anything else is an error naming the file."""
    try:
        raw = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise UserError(f"{path}: cannot read task suite ({exc})") from exc
    extra = set(raw) - {"defaults", "tasks"}
    if extra:
        raise UserError(f"{path}: unknown top-level keys {sorted(extra)}; expected [defaults] and [tasks.<name>]")
    defaults, tasks = raw.get("defaults", {}), raw.get("tasks", {})
    if not isinstance(defaults, dict):
        raise UserError(f"{path}: defaults: expected a table")
    if not isinstance(tasks, dict) or not all(isinstance(body, dict) for body in tasks.values()):
        raise UserError(f"{path}: tasks: expected tables [tasks.<name>]")
    return {"defaults": defaults, "tasks": tasks}


def _spec(name: str, merged: dict, source: Path) -> TaskSpec:
    known = set(TaskSpec.__dataclass_fields__) - {"name"}
    unknown = set(merged) - known
    if unknown:
        raise UserError(f"{source}: tasks.{name}: unknown keys {sorted(unknown)}; expected some of {sorted(known)}")
    for key in ("env", "horizon"):
        if key not in merged:
            raise UserError(f"{source}: tasks.{name}.{key}: missing; every task needs env and horizon")
    where = f"{source}: tasks.{name}"
    if not isinstance(merged["env"], str) or not merged["env"]:
        raise UserError(f"{where}.env: expected a robosuite env name or 'robolearn:<Class>', got {merged['env']!r}")
    for key in ("horizon", "control_freq", "image_size"):
        value = merged.get(key, 1)
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            raise UserError(f"{where}.{key}: expected a positive integer, got {value!r}")
    cameras = merged.get("cameras", [])
    if not isinstance(cameras, list) or not all(isinstance(c, str) for c in cameras):
        raise UserError(f"{where}.cameras: expected a list of camera names, got {cameras!r}")
    if not isinstance(merged.get("env_kwargs", {}), dict):
        raise UserError(f"{where}.env_kwargs: expected a table, got {merged['env_kwargs']!r}")
    return TaskSpec(name=name, **{**merged, "cameras": tuple(cameras)})


def get_spec(task: str) -> TaskSpec:
    suite = load_suite()
    if task not in suite:
        raise UserError(f"task: unknown task {task!r}; expected one of {sorted(suite)}")
    return suite[task]

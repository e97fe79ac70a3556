"""Robot config: one TOML file per arm (top-level `real_robot/<robot>.toml`).

Everything the safety layer enforces comes from here, never from the policy.
`load_robot_config(path)` parses and validates in one place; any inconsistency
(a lower limit above an upper one, a home pose outside the limits, a wrong
number of entries, a non-positive rate) is refused with a `UserError` that
names the file and the field.
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from robolearn.errors import UserError

SCHEDULING_MODES = ("receding", "ensemble", "rtc")
ACTION_SPACES = ("joint", "eef_delta")


@dataclass
class JointLimits:
    names: list[str]
    pos_min: np.ndarray  # (n,) rad
    pos_max: np.ndarray  # (n,) rad
    vel_max: np.ndarray  # (n,) rad/s
    acc_max: np.ndarray  # (n,) rad/s^2
    max_step: np.ndarray  # (n,) rad per control tick (hard cap, on top of vel_max * dt)
    home: np.ndarray  # (n,) rad

    @property
    def dof(self) -> int:
        return len(self.names)


@dataclass
class Workspace:
    """Axis-aligned box (robot base frame as reported by the driver) the end effector must stay in."""

    min: np.ndarray  # (3,) m
    max: np.ndarray  # (3,) m

    def contains(self, p: np.ndarray) -> bool:
        return bool(np.all(p >= self.min) and np.all(p <= self.max))


@dataclass
class SafetyConfig:
    obs_stale_s: float = 0.1  # no fresh robot state for this long -> hold
    stop_after_s: float = 1.0  # hold for a fault this long -> stopped until re-armed
    inference_deadline_s: float = 0.5  # an inference running longer than this -> hold
    worker_silent_s: float = 2.0  # no heartbeat from the policy worker -> stopped
    driver_silent_s: float = 0.1  # driver read errors for this long -> stopped
    gripper_step: float = 0.1  # max change of the gripper command (0..1) per tick
    policy_restarts: int = 2  # a local policy process (--inference process) that exits is restarted this
    #                           many times in a run (the arm holds meanwhile); one more exit stops the arm


@dataclass
class SchedulingConfig:
    mode: str = "receding"  # receding | ensemble | rtc
    action_dt: float = 0.05  # seconds between consecutive actions of a chunk (policy rate)
    action_offset: int = 0  # action i of a chunk is stamped t_obs + (i + offset) * action_dt
    exec_latency_s: float = 0.0  # drop actions due before now + this when a chunk arrives
    ensemble_k: float = 0.01  # temporal ensembling weight exp(-k * i), i = 0 for the oldest chunk
    rtc_prefix_s: float = 0.2  # expected inference delay: this much of the schedule is frozen for rtc
    rtc_blend_steps: int = 4  # fallback when the policy has no prefix hook: blend over this many actions


@dataclass
class ActionConfig:
    """How a policy action becomes a joint command (see `adapter.py`)."""

    space: str = "eef_delta"  # joint | eef_delta (robosuite OSC_POSE: dpos(3), drot axis-angle(3), gripper)
    pos_scale: float = 0.05  # m per unit action (robosuite OSC output_max for position)
    rot_scale: float = 0.5  # rad per unit action (robosuite OSC output_max for rotation)
    ik_gain: float = 0.5  # fraction of the remaining pose error corrected per control tick
    ik_damping: float = 0.05  # damped least squares lambda


@dataclass
class RobotConfig:
    name: str
    driver: str
    control_hz: float
    joints: JointLimits
    workspace: Workspace
    safety: SafetyConfig = field(default_factory=SafetyConfig)
    scheduling: SchedulingConfig = field(default_factory=SchedulingConfig)
    action: ActionConfig = field(default_factory=ActionConfig)
    model: str = "robosuite:panda"  # MJCF for kinematics (FK for the workspace box, Jacobian for IK)
    base_pos: tuple = (0.0, 0.0, 0.0)  # arm base in the frame of the workspace box / observations
    driver_options: dict = field(default_factory=dict)  # the [driver] table, passed to the driver as is
    control_socket: str = ""  # "tcp://127.0.0.1:PORT" or "" (off): e-stop / re-arm commands
    event_log: str = "runs/serve/events.jsonl"
    source: str = "<memory>"

    @property
    def period(self) -> float:
        return 1.0 / self.control_hz


def _arr(table: dict, key: str, where: str, n: int | None) -> np.ndarray:
    if key not in table:
        raise UserError(f"{where}.{key}: missing (expected a list of numbers)")
    try:
        a = np.asarray(table[key], dtype=np.float64)
    except (TypeError, ValueError):
        raise UserError(f"{where}.{key}: expected a list of numbers, got {table[key]!r}") from None
    if a.ndim != 1 or (n is not None and len(a) != n):
        raise UserError(f"{where}.{key}: expected {n} numbers, got {a.shape[0] if a.ndim == 1 else a.shape}")
    if not np.all(np.isfinite(a)):
        raise UserError(f"{where}.{key}: every entry must be finite")
    return a


def _dataclass_from(cls, table: dict, where: str):
    known = {f for f in cls.__dataclass_fields__}
    unknown = set(table) - known
    if unknown:
        raise UserError(f"{where}: unknown field(s) {sorted(unknown)} (expected some of {sorted(known)})")
    return cls(**table)


def _parse_joints(t: dict, src: str) -> JointLimits:
    where = f"{src}: [joints]"
    names = t.get("names")
    if not isinstance(names, list) or not names or not all(isinstance(x, str) for x in names):
        raise UserError(f"{where}.names: expected a non-empty list of joint names")
    n = len(names)
    pos_min, pos_max = _arr(t, "pos_min", where, n), _arr(t, "pos_max", where, n)
    vel_max, acc_max = _arr(t, "vel_max", where, n), _arr(t, "acc_max", where, n)
    home = _arr(t, "home", where, n)
    max_step = _arr(t, "max_step", where, n) if "max_step" in t else np.full(n, np.inf)
    bad = np.flatnonzero(pos_min >= pos_max)
    if bad.size:
        raise UserError(f"{where}.pos_min/pos_max: lower limit >= upper limit for joint(s) {[names[i] for i in bad]}")
    for key, a in (("vel_max", vel_max), ("acc_max", acc_max), ("max_step", max_step)):
        bad = np.flatnonzero(a <= 0)
        if bad.size:
            raise UserError(f"{where}.{key}: must be > 0 for joint(s) {[names[i] for i in bad]}")
    bad = np.flatnonzero((home < pos_min) | (home > pos_max))
    if bad.size:
        raise UserError(f"{where}.home: outside [pos_min, pos_max] for joint(s) {[names[i] for i in bad]}")
    return JointLimits(names, pos_min, pos_max, vel_max, acc_max, max_step, home)


def robot_config_from_dict(d: dict, source: str = "<memory>") -> RobotConfig:
    """Validate a parsed TOML table into a `RobotConfig` (UserError naming the field on any problem)."""
    src = source
    for key in ("name", "driver", "control_hz", "joints", "workspace"):
        if key not in d:
            raise UserError(f"{src}: missing required field '{key}'")
    d = dict(d)
    hz = d.pop("control_hz")
    if not isinstance(hz, (int, float)) or not (1 <= hz <= 2000):
        raise UserError(f"{src}: control_hz: expected a number in [1, 2000], got {hz!r}")
    joints = _parse_joints(d.pop("joints"), src)
    ws_t = d.pop("workspace")
    ws = Workspace(_arr(ws_t, "min", f"{src}: [workspace]", 3), _arr(ws_t, "max", f"{src}: [workspace]", 3))
    if np.any(ws.min >= ws.max):
        raise UserError(f"{src}: [workspace].min/max: every min must be < max, got {ws.min} / {ws.max}")
    safety = _dataclass_from(SafetyConfig, d.pop("safety", {}), f"{src}: [safety]")
    sched = _dataclass_from(SchedulingConfig, d.pop("scheduling", {}), f"{src}: [scheduling]")
    action = _dataclass_from(ActionConfig, d.pop("action", {}), f"{src}: [action]")
    if sched.mode not in SCHEDULING_MODES:
        raise UserError(f"{src}: [scheduling].mode: expected one of {SCHEDULING_MODES}, got {sched.mode!r}")
    if not sched.action_dt > 0 or sched.action_dt < 1.0 / hz - 1e-9:
        raise UserError(f"{src}: [scheduling].action_dt: must be >= one control period (1/control_hz)")
    if action.space not in ACTION_SPACES:
        raise UserError(f"{src}: [action].space: expected one of {ACTION_SPACES}, got {action.space!r}")
    for key in ("obs_stale_s", "stop_after_s", "inference_deadline_s", "worker_silent_s", "driver_silent_s"):
        v = getattr(safety, key)
        if not (isinstance(v, (int, float)) and v > 0 and math.isfinite(v)):
            raise UserError(f"{src}: [safety].{key}: must be a positive number of seconds")
    if not (isinstance(safety.policy_restarts, int) and not isinstance(safety.policy_restarts, bool)
            and safety.policy_restarts >= 0):
        raise UserError(f"{src}: [safety].policy_restarts: must be a whole number >= 0")
    if safety.stop_after_s < safety.obs_stale_s:
        raise UserError(f"{src}: [safety].stop_after_s: must be >= obs_stale_s")
    driver_options = d.pop("driver_options", {})
    base_pos = tuple(_arr(d, "base_pos", src, 3)) if "base_pos" in d else (0.0, 0.0, 0.0)
    known = {"name", "driver", "model", "base_pos", "control_socket", "event_log"}
    unknown = set(d) - known
    if unknown:
        raise UserError(f"{src}: unknown field(s) {sorted(unknown)}")
    return RobotConfig(
        name=str(d["name"]), driver=str(d["driver"]), control_hz=float(hz), joints=joints, workspace=ws,
        safety=safety, scheduling=sched, action=action, model=str(d.get("model", "robosuite:panda")), base_pos=base_pos,
        driver_options=dict(driver_options), control_socket=str(d.get("control_socket", "")),
        event_log=str(d.get("event_log", "runs/serve/events.jsonl")), source=src,
    )


def load_robot_config(path: str | Path, overrides: dict | None = None) -> RobotConfig:
    """Read `real_robot/<robot>.toml`; `overrides` maps "table.key" (or "key") to a value."""
    p = Path(path)
    if not p.is_file():
        raise UserError(f"{p}: robot config not found")
    try:
        d = tomllib.loads(p.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"{p}: not valid TOML ({exc})") from None
    for dotted, value in (overrides or {}).items():
        *tables, key = dotted.split(".")
        t = d
        for name in tables:
            t = t.setdefault(name, {})
        t[key] = value
    return robot_config_from_dict(d, source=str(p))

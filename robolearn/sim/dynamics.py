"""Changed dynamics for "other-dynamics demonstrators" (OOD-IL).

A `Dynamics` is applied once when the env is built: controller gain (`kp_scale`,
OSC stiffness), `action_scale` (delta actions are multiplied before robosuite
sees them, so the same action moves the arm more or less), object masses and
robot joint damping. The default (all 1.0) is the unchanged robosuite task.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

from robolearn.errors import UserError


@dataclass(frozen=True)
class Dynamics:
    action_scale: float = 1.0  # multiplies OSC delta actions (pos + rot)
    kp_scale: float = 1.0  # multiplies OSC stiffness kp
    object_mass_scale: float = 1.0  # multiplies the mass of every task object
    joint_damping_scale: float = 1.0  # multiplies arm joint damping (+ 1.0 N·m·s/rad when > 1)

    @classmethod
    def from_dict(cls, d: dict) -> "Dynamics":
        names = {f.name for f in fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise UserError(f"dynamics: unknown keys {sorted(unknown)}; expected some of {sorted(names)}")
        out = cls(**{k: float(v) for k, v in d.items()})
        for k, v in asdict(out).items():
            if not v > 0:
                raise UserError(f"dynamics.{k}: expected a positive number, got {v}")
        return out

    def to_dict(self) -> dict[str, float]:
        return asdict(self)

    @property
    def is_default(self) -> bool:
        return self == Dynamics()


def apply_model_dynamics(rs_env, dyn: Dynamics) -> None:
    """Scale object masses and arm joint damping in the compiled model (kept: hard_reset=False)."""
    model = rs_env.sim.model
    if dyn.object_mass_scale != 1.0:
        prefixes = [obj.naming_prefix for obj in rs_env.model.mujoco_objects]
        for body_id in range(model.nbody):
            name = model.body_id2name(body_id) or ""
            if any(name.startswith(p) for p in prefixes):
                model.body_mass[body_id] *= dyn.object_mass_scale
                model.body_inertia[body_id] *= dyn.object_mass_scale
    if dyn.joint_damping_scale != 1.0:
        robot = rs_env.robots[0]
        for jname in robot.robot_joints:
            dof = model._model.jnt_dofadr[model.joint_name2id(jname)]
            extra = 1.0 if dyn.joint_damping_scale > 1 else 0.0
            model.dof_damping[dof] = model.dof_damping[dof] * dyn.joint_damping_scale + extra

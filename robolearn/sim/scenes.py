"""Our own robosuite scenes (MJCF assets packaged under robolearn/sim/data/assets/).

`MultiCube`: four coloured cubes (red, green, blue, yellow) placed at random on the
table; each reset samples a goal with robosuite's seeded generator — lift one cube,
or stack one cube on another — and an instruction string naming it ("lift the red
cube", "stack the green cube on the blue cube"). The instruction is the only thing
that tells the goals apart, so language matters. Success is checked against the
sampled goal: lift = the named cube 4 cm above the table; stack = the top cube
touches the bottom cube, rests above it, and is not grasped.

Options (env_kwargs): `stack_fraction` (share of stack goals), `goal_colors` (the cubes a goal
may name first; default all four) and `reach=True`, a toy variant whose every goal is "reach the
{a} cube": success = the gripper within 3 cm (xy) of the named cube and 2-9 cm above it (for tests of goal following
that a small policy learns in a minute).
"""

from __future__ import annotations

import numpy as np
from robosuite.environments.manipulation.manipulation_env import ManipulationEnv
from robosuite.models.arenas import TableArena
from robosuite.models.objects import MujocoXMLObject
from robosuite.models.tasks import ManipulationTask
from robosuite.utils.observables import Observable, sensor
from robosuite.utils.placement_samplers import UniformRandomSampler
from robosuite.utils.transform_utils import convert_quat

from robolearn.sim.suite import ASSETS_DIR

COLORS = ("red", "green", "blue", "yellow")
CUBE_HALF = 0.02
LIFT_TEMPLATES = ("lift the {a} cube", "pick up the {a} cube")
STACK_TEMPLATES = ("stack the {a} cube on the {b} cube", "put the {a} cube on top of the {b} cube")
REACH_TEMPLATES = ("reach the {a} cube", "move to the {a} cube")


class MultiCube(ManipulationEnv):
    def __init__(self, robots, table_full_size=(0.8, 0.8, 0.05), table_friction=(1.0, 5e-3, 1e-4),
                 use_object_obs=True, reward_shaping=False, stack_fraction=0.5, goal_colors=None, reach=False,
                 **kwargs):  # fmt: skip
        self.table_full_size = table_full_size
        self.table_friction = table_friction
        self.table_offset = np.array((0, 0, 0.8))
        self.use_object_obs = use_object_obs
        self.stack_fraction = stack_fraction
        self.goal_colors = list(goal_colors) if goal_colors else list(COLORS)
        unknown = [c for c in self.goal_colors if c not in COLORS]
        if unknown:
            raise ValueError(f"goal_colors: unknown colours {unknown}; expected some of {list(COLORS)}")
        self.reach = bool(reach)
        self.goal = {"kind": "lift", "a": "red", "b": ""}
        self.instruction = ""
        kwargs.setdefault("gripper_types", "default")
        super().__init__(robots=robots, **kwargs)

    # ---------------------------------------------------------------- model
    def _load_model(self):
        super()._load_model()
        xpos = self.robots[0].robot_model.base_xpos_offset["table"](self.table_full_size[0])
        self.robots[0].robot_model.set_base_xpos(xpos)
        arena = TableArena(
            table_full_size=self.table_full_size, table_friction=self.table_friction, table_offset=self.table_offset
        )
        arena.set_origin([0, 0, 0])
        asset_dir = ASSETS_DIR / "multi_cube"
        self.cubes = {c: MujocoXMLObject(str(asset_dir / f"cube_{c}.xml"), name=f"{c}_cube",
                                         joints=[dict(type="free", damping="0.0005")], obj_type="all",
                                         duplicate_collision_geoms=True) for c in COLORS}  # fmt: skip
        self.placement_initializer = UniformRandomSampler(
            name="CubeSampler", mujoco_objects=list(self.cubes.values()), x_range=[-0.1, 0.1], y_range=[-0.14, 0.14],
            rotation=None, ensure_object_boundary_in_range=False, ensure_valid_placement=True,
            reference_pos=self.table_offset, z_offset=0.01, rng=self.rng,
        )  # fmt: skip
        self.model = ManipulationTask(
            mujoco_arena=arena,
            mujoco_robots=[robot.robot_model for robot in self.robots],
            mujoco_objects=list(self.cubes.values()),
        )

    def _setup_references(self):
        super()._setup_references()
        self.cube_body_ids = {c: self.sim.model.body_name2id(o.root_body) for c, o in self.cubes.items()}

    def _setup_observables(self):
        observables = super()._setup_observables()
        if not self.use_object_obs:
            return observables
        for color in COLORS:

            def make_pos(c=color):
                @sensor(modality="object")
                def f(obs_cache):
                    return np.array(self.sim.data.body_xpos[self.cube_body_ids[c]])

                f.__name__ = f"{c}_cube_pos"
                return f

            def make_quat(c=color):
                @sensor(modality="object")
                def f(obs_cache):
                    return convert_quat(np.array(self.sim.data.body_xquat[self.cube_body_ids[c]]), to="xyzw")

                f.__name__ = f"{c}_cube_quat"
                return f

            for s in (make_pos(), make_quat()):
                observables[s.__name__] = Observable(name=s.__name__, sensor=s, sampling_rate=self.control_freq)
        return observables

    # ---------------------------------------------------------------- episode
    def _reset_internal(self):
        super()._reset_internal()
        for pos, quat, obj in self.placement_initializer.sample().values():
            self.sim.data.set_joint_qpos(obj.joints[0], np.concatenate([np.array(pos), np.array(quat)]))
        a, b = self.rng.choice(len(COLORS), size=2, replace=False)
        if len(self.goal_colors) < len(COLORS):  # a restricted goal set: draw the first cube from it
            a = COLORS.index(self.goal_colors[self.rng.integers(len(self.goal_colors))])
            b = self.rng.choice([i for i in range(len(COLORS)) if i != a])
        if self.reach:
            self.goal = {"kind": "reach", "a": COLORS[a], "b": ""}
            template = REACH_TEMPLATES[self.rng.integers(len(REACH_TEMPLATES))]
        elif self.rng.random() < self.stack_fraction:
            self.goal = {"kind": "stack", "a": COLORS[a], "b": COLORS[b]}
            template = STACK_TEMPLATES[self.rng.integers(len(STACK_TEMPLATES))]
        else:
            self.goal = {"kind": "lift", "a": COLORS[a], "b": ""}
            template = LIFT_TEMPLATES[self.rng.integers(len(LIFT_TEMPLATES))]
        self.instruction = template.format(**self.goal)

    def reward(self, action=None):
        return float(self._check_success())

    def _check_success(self):
        a = self.sim.data.body_xpos[self.cube_body_ids[self.goal["a"]]]
        if self.goal["kind"] == "reach":
            eef = self.sim.data.site_xpos[self.robots[0].eef_site_id["right"]]
            return bool(np.linalg.norm(eef[:2] - a[:2]) < 0.03 and 0.02 < eef[2] - a[2] < 0.09)
        if self.goal["kind"] == "lift":
            return bool(a[2] > self.table_offset[2] + 0.04 + CUBE_HALF)
        b = self.sim.data.body_xpos[self.cube_body_ids[self.goal["b"]]]
        top, bottom = self.cubes[self.goal["a"]], self.cubes[self.goal["b"]]
        grasped = self._check_grasp(gripper=self.robots[0].gripper, object_geoms=top)
        return bool(self.check_contact(top, bottom) and a[2] > b[2] + 1.5 * CUBE_HALF and not grasped)

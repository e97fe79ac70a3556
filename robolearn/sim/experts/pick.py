"""Pick-style experts: lift, stack, pick_place_can (and the multi-cube scene's pick/stack)."""

from __future__ import annotations

import numpy as np

from robolearn.sim.experts.base import Expert, Stage, yaw_of

OPEN, CLOSED = -1.0, 1.0


class PickExpert(Expert):
    """Approach above an object, descend, close, lift; subclasses add move/place/release.

    Modes (multimodal demos): 0 = grasp with the gripper yaw aligned to the object's
    nearest face, 1 = the same grasp rotated by 90° (cubes are 4-fold symmetric), so
    the two modes reach the object with visibly different wrist angles. Mode also
    picks the side the arm approaches from (offset in +y or -y before descending).
    """

    n_modes = 2
    hover = 0.08
    lift_height = 0.15
    yaw_symmetry = np.pi / 2
    grasp_z = 0.0  # grasp point relative to the object's body origin

    def obj_pos(self) -> np.ndarray:
        raise NotImplementedError

    def obj_yaw(self) -> float:
        return 0.0

    def grasp_point(self) -> np.ndarray:
        return self.obj_pos() + np.array([0, 0, self.grasp_z])

    def table_z(self) -> float:
        return float(self.rs.model.mujoco_arena.table_offset[2])

    def pick_yaw(self) -> float:
        base = self.grasp_yaw(self.obj_yaw(), self.yaw_symmetry)  # within ±45° of the reset yaw
        if self.mode == 1 and self.yaw_symmetry < np.pi:  # the other face pair: 90° away, towards the reset yaw
            other = base + (-np.pi / 2 if base > self.yaw0 else np.pi / 2)
            base = other if self.wrist_ok(other) else base - (other - base)
        return base

    def lost_grasp(self) -> bool:
        phase = self.stages[self.i].phase
        if phase not in ("lift", "align", "move", "place") or (phase == "lift" and self.k < 4):
            return False
        return float(np.linalg.norm(self.eef_pos() - self.grasp_point())) > 0.04

    def pick_stages(self) -> list[Stage]:
        off = self.params.offset.copy()
        side = 0.06 if self.mode == 0 else -0.06
        self._yaw = self.pick_yaw()

        grasp_point = self.grasp_point

        def approach():
            return grasp_point() + np.array([off[0], off[1] + side, self.hover + off[2]]), self._yaw, OPEN

        def above():
            return grasp_point() + np.array([0, 0, self.hover * 0.6]), self._yaw, OPEN

        def descend():
            return grasp_point(), self._yaw, OPEN

        def grasp():
            return grasp_point(), self._yaw, CLOSED

        def lift():
            p = self.eef_pos()
            return np.array([p[0], p[1], self.table_z() + self.lift_height]), self._yaw, CLOSED

        return [
            Stage("approach", approach, tol=0.03, max_steps=60),
            Stage("approach", above, tol=0.012, max_steps=40, yaw_tol=0.05),
            Stage("descend", descend, tol=0.01, max_steps=30, yaw_tol=0.05),
            Stage("grasp", grasp, tol=1.0, min_steps=int(self.rng.integers(6, 10)), yaw_tol=10),
            Stage("lift", lift, tol=0.02, max_steps=50),
        ]


class LiftExpert(PickExpert):
    name = "lift"

    def obj_pos(self):
        return self.body_pos(self.rs.cube_body_id)

    def obj_yaw(self):
        return yaw_of(self.body_mat(self.rs.cube_body_id))

    def plan(self):
        return self.pick_stages()


class PlaceExpert(PickExpert):
    """Pick, carry the object so that *its* position reaches a goal, lower, release, retreat."""

    carry_height = 0.12  # object height above the goal while moving
    release_steps = 8
    move_tol = 0.02
    place_tol = 0.012
    move_yaw_tol = 0.1
    align_first = False
    carry_speed = 1.0

    def goal_pos(self) -> np.ndarray:
        """Where the object's body origin should be when released."""
        raise NotImplementedError

    def held_target(self, obj_goal: np.ndarray) -> np.ndarray:
        """eef target that brings the held object to obj_goal (keeps the current grasp offset)."""
        return obj_goal + (self.eef_pos() - self.obj_pos())

    def place_yaw(self) -> float:
        return self._yaw

    def place_stages(self) -> list[Stage]:
        def move():
            return self.held_target(self.goal_pos() + np.array([0, 0, self.carry_height])), self.place_yaw(), CLOSED

        def place():
            return self.held_target(self.goal_pos()), self.place_yaw(), CLOSED

        def release():
            return self.eef_pos(), self._yaw, OPEN

        self._retreat_z = None

        def retreat():
            p = self.eef_pos()
            if self._retreat_z is None:
                self._retreat_z = p[2] + 0.1
            return np.array([p[0], p[1], self._retreat_z]), self._yaw, OPEN

        self._hold_at = None

        def align():  # turn the held object in place before carrying it
            if self._hold_at is None:
                self._hold_at = self.eef_pos()
            return self._hold_at, self.place_yaw(), CLOSED

        stages = [Stage("align", align, tol=0.02, max_steps=30, yaw_tol=0.08)] if self.align_first else []
        return stages + [
            Stage("move", move, tol=self.move_tol, max_steps=80, yaw_tol=self.move_yaw_tol, speed=self.carry_speed),
            Stage("place", place, tol=self.place_tol, max_steps=40, yaw_tol=self.move_yaw_tol),
            Stage("release", release, tol=1.0, min_steps=self.release_steps, yaw_tol=10),
            Stage("retreat", retreat, tol=0.02, max_steps=40),
        ]

    def plan(self):
        return self.pick_stages() + self.place_stages()


class StackExpert(PlaceExpert):
    name = "stack"

    def obj_pos(self):
        return self.body_pos(self.rs.cubeA_body_id)

    def obj_yaw(self):
        return yaw_of(self.body_mat(self.rs.cubeA_body_id))

    def goal_pos(self):
        b = self.body_pos(self.rs.cubeB_body_id)
        return b + np.array([0, 0, 0.025 + 0.02 + 0.004])  # cubeB half size + cubeA half size + gap


class PickPlaceCanExpert(PlaceExpert):
    name = "pick_place_can"
    yaw_symmetry = np.pi  # a cylinder: any yaw grasps; keep close to the reset yaw
    carry_height = 0.15
    hover = 0.1

    def table_z(self):
        return float(self.rs.bin1_pos[2])

    def obj_pos(self):
        return self.body_pos(self.rs.obj_body_id["Can"])

    def obj_yaw(self):
        return self.yaw0 + (0.0 if self.mode == 0 else np.pi / 2)

    def pick_yaw(self):
        return self.obj_yaw()

    move_tol = 0.03
    place_tol = 0.02

    def goal_pos(self):
        # the near corner of the can's bin quadrant (its centre is at the edge of the arm's reach)
        lo = np.array(self.rs.target_bin_placements[self.rs.object_id], dtype=np.float64)
        size = np.asarray(self.rs.bin_size, dtype=np.float64)
        return np.array([lo[0] - size[0] / 4 + 0.07, lo[1] - size[1] / 4 + 0.07, self.rs.bin2_pos[2] + 0.08])


class _InstructedCube:
    """Multi-cube scene: the object to handle is the cube the episode's instruction names (goal "a")."""

    name = "multi_cube"

    def obj_pos(self):
        return self.body_pos(self.rs.cube_body_ids[self.rs.goal["a"]])

    def obj_yaw(self):
        return yaw_of(self.body_mat(self.rs.cube_body_ids[self.rs.goal["a"]]))

    def table_z(self):
        return float(self.rs.table_offset[2])


class MultiCubeLiftExpert(_InstructedCube, LiftExpert):
    pass


class MultiCubeStackExpert(_InstructedCube, StackExpert):
    def goal_pos(self):
        b = self.body_pos(self.rs.cube_body_ids[self.rs.goal["b"]])
        return b + np.array([0, 0, 0.04 + 0.004])  # two 2 cm half sizes + gap


class MultiCubeReachExpert(_InstructedCube, LiftExpert):
    """The toy reach goal: approach and stop above the named cube (the first two pick stages)."""

    def plan(self):
        return self.pick_stages()[:2]


def multi_cube_expert(env, **kwargs) -> Expert:
    """The multi-cube scene's expert follows the goal the env sampled (what its instruction says)."""
    kind = env.rs.goal["kind"]
    cls = MultiCubeStackExpert if kind == "stack" else MultiCubeReachExpert if kind == "reach" else MultiCubeLiftExpert
    return cls(env, **kwargs)

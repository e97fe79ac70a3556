"""Experts for nut_assembly_square (grasp the handle, align, drop over the peg) and door."""

from __future__ import annotations

import numpy as np

from robolearn.sim.experts.base import Expert, Stage, wrap, yaw_of
from robolearn.sim.experts.pick import CLOSED, OPEN, PlaceExpert


class NutAssemblySquareExpert(PlaceExpert):
    """Grasp the nut's handle, turn it square to the peg, bring its hole over the peg, drop.

    Modes: 0 / 1 grasp the handle with the wrist turned one way or the other (π apart),
    which makes the alignment rotation go the other way round.
    """

    name = "nut_assembly_square"
    yaw_symmetry = np.pi
    hover = 0.06
    lift_height = 0.1  # just clear the table; rising further near the base folds the arm into joint limits
    carry_height = 0.16  # peg top is 0.13 above the table: keep the nut's underside clear
    move_tol = 0.01
    place_tol = 0.01
    move_yaw_tol = 0.05
    align_first = True
    carry_speed = 0.6  # the handle grasp is light: carry gently
    max_rot = 0.3  # turn the nut slowly: a fast turn lets it slip in the fingers

    def nut_id(self) -> int:
        return self.rs.obj_body_id["SquareNut"]

    def obj_pos(self):
        return self.body_pos(self.nut_id())

    def obj_yaw(self):
        return yaw_of(self.body_mat(self.nut_id()))

    def grasp_point(self):
        return self.site_pos("SquareNut_handle_site") + np.array([0, 0, -0.005])

    def grasp_point(self):
        # modes grasp the handle nearer its tip (0) or nearer the ring (1)
        along = 0.012 if self.mode == 0 else 0.0
        return self.site_pos("SquareNut_handle_site") + self.body_mat(self.nut_id())[:, 0] * along

    def pick_yaw(self):
        return self.grasp_yaw(self.obj_yaw(), np.pi)

    def target_nut_yaw(self) -> float:
        """Among the peg's 4 equivalent yaws, the one whose handle points most towards the robot
        (keeps the wrist within reach) among those the last joint can turn to."""
        if getattr(self, "_target_nut_yaw", None) is None:
            peg_yaw = yaw_of(self.body_mat(self.rs.peg1_body_id))
            cands = [peg_yaw + k * np.pi / 2 for k in range(4)]
            grip_now = yaw_of(self.eef_mat())
            ok = [c for c in cands if self.wrist_ok(grip_now + wrap(c - self.obj_yaw()), margin=0.4)] or cands
            self._target_nut_yaw = min(ok, key=lambda c: (np.cos(c), abs(wrap(c - self.obj_yaw()))))
        return self._target_nut_yaw

    def place_yaw(self):
        return yaw_of(self.eef_mat()) + wrap(self.target_nut_yaw() - self.obj_yaw())

    def goal_pos(self):
        peg = self.body_pos(self.rs.peg1_body_id)
        return np.array([peg[0], peg[1], self.table_z() + 0.025])


class DoorExpert(Expert):
    """Hook the lever from behind and swing the door open around its hinge.

    The Panda hand is ~20 cm wide across its fingers, so the wrist is turned 90° (hand
    thin towards the door) and the closed fingertips go down behind the lever (where the
    wrist meets the panel first they rest on the lever's back edge instead), then the arm
    pulls along the door's arc. The suite's `door` task uses
    `use_latch = false` (see sim/tasks.toml): no lever turn needed.
    Modes: 0 hooks the lever near its tip, 1 nearer its pivot.
    """

    name = "door"
    n_modes = 2

    def handle(self) -> np.ndarray:
        return np.array(self.rs.sim.data.site_xpos[self.rs.door_handle_site_id])

    def hinge(self) -> np.ndarray:
        jid = self.rs.sim.model.joint_name2id(self.rs.door.joints[0])
        return np.array(self.rs.sim.data._data.xanchor[jid])

    def plan(self):
        off = self.params.offset
        along = 0.0 if self.mode == 0 else 0.05  # +x: towards the lever's pivot
        yaw = self.yaw0 + np.pi / 2

        def hook_point():
            h = self.handle()
            outward = h - self.hinge()
            outward[2] = 0
            normal = np.array([outward[1], -outward[0], 0.0]) / (np.linalg.norm(outward) + 1e-9)  # towards the panel
            return h + np.array([along, 0, -0.005]) + 0.045 * normal

        def approach():  # in front of the lever (robot side), above it
            return hook_point() + np.array([off[0] * 0.5, 0.09, 0.07 + off[2] * 0.5]), yaw, CLOSED

        def above():  # low over the gap: higher up, the wrist (link 6) would touch the panel
            return hook_point() + np.array([0, 0, 0.05]), yaw, CLOSED

        def descend():
            return hook_point(), yaw, CLOSED

        def pull():
            p = self.eef_pos()
            r = p - self.hinge()
            tangent = np.array([-r[1], r[0], 0.0])
            tangent /= np.linalg.norm(tangent) + 1e-9
            return p + 0.04 * tangent, yaw, CLOSED

        return [
            Stage("approach", approach, tol=0.02, max_steps=60),
            # the hand stops ~2 cm short of the panel-side target: accept that instead of pushing on
            Stage("approach", above, tol=0.03, max_steps=30),
            Stage("descend", descend, tol=0.03, max_steps=12),
            Stage("pull", pull, tol=0.0, max_steps=200),
        ]

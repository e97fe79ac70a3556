"""Robot models (MJCF) for kinematics and the sim arm.

`"robosuite:panda"` builds robosuite's own Panda arm (robot.xml) with its
Panda gripper attached at `right_hand`, straight from the installed robosuite
package (located without importing robosuite, which is slow), with visual
meshes removed (no rendering). `scene="lift"` adds robosuite Lift's table and
cube; `base_pos` places the arm base (robosuite Lift: LIFT_BASE_POS) so
positions are in the same world frame as the sim tasks' observations. Anything else is a path to an
MJCF file whose arm joints are named in the robot config.

`Kinematics` answers forward kinematics (workspace box) and the end-effector
Jacobian (differential IK for end-effector actions) on its own MjData.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import mujoco
import numpy as np

from robolearn.errors import UserError

EEF_SITE = "gripper0_grip_site"
EEF_BODY = "right_hand"  # robosuite's eef_quat is this body's orientation (eef_pos is the site's)
LIFT_BASE_POS = (-0.56, 0.0, 0.912)  # robosuite Lift: arm base on the table's near edge
LIFT_TABLE_TOP = 0.8


def robosuite_assets() -> Path:
    spec = importlib.util.find_spec("robosuite")
    if spec is None or not spec.submodule_search_locations:
        raise UserError("model: robosuite is not installed (needed for the robosuite:panda model)")
    return Path(list(spec.submodule_search_locations)[0]) / "models" / "assets"


def _strip_visuals(spec: mujoco.MjSpec) -> None:
    for g in list(spec.geoms):
        if g.contype == 0 and g.conaffinity == 0 and g.group == 1:
            spec.delete(g)


def _add_lift_scene(spec: mujoco.MjSpec) -> None:
    world = spec.worldbody
    world.add_light(pos=[0, 0, 3], dir=[0, 0, -1])
    world.add_geom(name="floor", type=mujoco.mjtGeom.mjGEOM_PLANE, size=[3, 3, 0.1])
    table = world.add_body(name="table", pos=[0, 0, LIFT_TABLE_TOP - 0.025])
    table.add_geom(name="table_top", type=mujoco.mjtGeom.mjGEOM_BOX, size=[0.4, 0.4, 0.025], friction=[1, 0.005, 0.0001])
    cube = world.add_body(name="cube", pos=[0, 0, LIFT_TABLE_TOP + 0.021])
    cube.add_freejoint(name="cube_joint")
    cube.add_geom(name="cube_g", type=mujoco.mjtGeom.mjGEOM_BOX, size=[0.021, 0.021, 0.021], density=1000,
                  friction=[1, 0.005, 0.0001], rgba=[1, 0, 0, 1])


def build_spec(model: str, scene: str | None = None, base_pos=(0.0, 0.0, 0.0)) -> mujoco.MjSpec:
    if model == "robosuite:panda":
        root = robosuite_assets()
        arm = mujoco.MjSpec.from_file(str(root / "robots" / "panda" / "robot.xml"))
        grip = mujoco.MjSpec.from_file(str(root / "grippers" / "panda_gripper.xml"))
        site = arm.body("right_hand").add_site(name="gripper_mount")
        arm.attach(grip, prefix="gripper0_", site=site)
        _strip_visuals(arm)
        arm.body("base").pos = list(base_pos)
        if scene == "lift":
            _add_lift_scene(arm)
        elif scene:
            raise UserError(f"model: unknown scene {scene!r} (expected 'lift' or none)")
        return arm
    path = Path(model)
    if not path.is_file():
        raise UserError(f"model: {model!r} is neither 'robosuite:panda' nor an MJCF file")
    try:
        return mujoco.MjSpec.from_file(str(path))
    except Exception as exc:  # mujoco raises ValueError with the parser's message
        raise UserError(f"{model}: could not parse MJCF ({exc})") from None


def joint_addrs(m: mujoco.MjModel, names: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """(qpos addresses, dof addresses) of the named hinge/slide joints."""
    qadr, vadr = [], []
    for n in names:
        jid = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_JOINT, n)
        if jid < 0:
            raise UserError(f"model: joint {n!r} from the robot config is not in the model")
        qadr.append(m.jnt_qposadr[jid])
        vadr.append(m.jnt_dofadr[jid])
    return np.array(qadr), np.array(vadr)


def quat_wxyz_to_xyzw(q: np.ndarray) -> np.ndarray:
    return np.array([q[1], q[2], q[3], q[0]])


class Kinematics:
    def __init__(self, model: str, joint_names: list[str], eef_site: str = EEF_SITE, base_pos=(0.0, 0.0, 0.0)):
        self.m = build_spec(model, None, base_pos).compile()
        self.d = mujoco.MjData(self.m)
        self.qadr, self.vadr = joint_addrs(self.m, joint_names)
        self.site = mujoco.mj_name2id(self.m, mujoco.mjtObj.mjOBJ_SITE, eef_site)
        if self.site < 0:
            raise UserError(f"model: end-effector site {eef_site!r} not found")
        self._jp = np.zeros((3, self.m.nv))
        self._jr = np.zeros((3, self.m.nv))

    def _set(self, q: np.ndarray) -> None:
        self.d.qpos[self.qadr] = q
        mujoco.mj_kinematics(self.m, self.d)

    def fk(self, q: np.ndarray) -> np.ndarray:
        """End-effector position (3,) in the model's world frame."""
        self._set(q)
        return self.d.site_xpos[self.site].copy()

    def pose(self, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(position (3,), rotation matrix (3, 3))."""
        self._set(q)
        return self.d.site_xpos[self.site].copy(), self.d.site_xmat[self.site].reshape(3, 3).copy()

    def jacobian(self, q: np.ndarray) -> np.ndarray:
        """(6, n) position+rotation Jacobian of the end-effector site w.r.t. the arm joints."""
        self._set(q)
        mujoco.mj_comPos(self.m, self.d)
        mujoco.mj_jacSite(self.m, self.d, self._jp, self._jr, self.site)
        return np.concatenate([self._jp[:, self.vadr], self._jr[:, self.vadr]], axis=0)

"""Stand-in policies following the Policy protocol, for the tests and the daemon benchmark.

`ToyReachPolicy` (eef_delta actions) steers the end effector back and forth
between two points, with a random offset per chunk standing in for the
sample-to-sample variance of a diffusion head (that is what makes chunk
boundaries jump). It implements the real-time-chunking hook the way a
diffusion head should: the committed prefix is reproduced exactly and the
fresh sample is blended in after it. `faults` switches on the failure modes
the fault-injection tests need. `JointTargetPolicy` emits absolute joint
targets (optionally absurd ones) for the joint action space. `ScriptedLiftPolicy`
(phase state: checks the command path can lift) and `MarkovLiftPolicy` (a function of the
observation only: the demonstrator a trained policy can imitate) lift the sim arm's cube.
`GoalReachPolicy` is a real (registered, saveable) policy head that reaches the point its goal
names and stays put without one: the proof that a goal reached the policy. `FaultyFakeDriver` is
the library's fake arm with fault switches.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch

from robolearn.goal import Goal, GoalConfig, check_goal
from robolearn.policies import Policy, PolicyConfig, register_policy
from robolearn.real_robot.adapter import rotation_error
from robolearn.real_robot.driver import DriverError, JointCommand, RobotState
from robolearn.real_robot.drivers.fake import FakeDriver


def quat_xyzw_to_matrix(q: np.ndarray) -> np.ndarray:
    x, y, z, w = np.asarray(q, dtype=np.float64) / max(float(np.linalg.norm(q)), 1e-12)
    return np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                     [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                     [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])


@dataclass
class ToyConfig:
    method: str = "toy"
    obs_keys: list[str] = field(default_factory=lambda: ["proprio"])
    image_keys: list[str] = field(default_factory=list)
    action_dim: int = 7
    obs_horizon: int = 2
    horizon: int = 16
    n_action_steps: int = 8
    env: dict = field(default_factory=dict)


class ToyReachPolicy:
    def __init__(self, a: tuple = (-0.05, -0.15, 1.05), b: tuple = (-0.05, 0.15, 1.05), noise: float = 0.3,
                 pos_scale: float = 0.05, gain: float = 0.5, seed: int = 0, latency: float = 0.0,
                 faults: str = "", rtc_hook: bool = True):
        self.config = ToyConfig()
        self.points = [np.array(a), np.array(b)]
        self.goal = 0
        self.noise, self.pos_scale, self.gain = noise, pos_scale, gain
        self.rng = np.random.default_rng(seed)
        self.latency = latency  # seconds of fake compute per call
        self.faults = faults  # "", "raise", "nan" (after the first two calls), "slow" (latency x5)
        self.calls = 0
        if not rtc_hook:  # hide the hook (instance attribute shadows the method)
            self.predict_action_chunk = self._plain

    def reset(self) -> None:
        self.goal = 0

    def _plain(self, obs, goal=None):
        return self._predict(obs, None, 0)

    def predict_action_chunk(self, obs, goal=None, prefix=None, prefix_len: int = 0):
        return self._predict(obs, prefix, prefix_len)

    def _predict(self, obs, prefix, prefix_len):
        self.calls += 1
        if self.latency:
            time.sleep(self.latency * (5 if self.faults == "slow" else 1))
        if self.faults == "raise" and self.calls > 2:
            raise RuntimeError("toy policy failure")
        p = obs["proprio"][0, -1, :3].double().numpy()  # (3,) latest eef position
        if np.linalg.norm(self.points[self.goal] - p) < 0.03:
            self.goal = 1 - self.goal
        H = self.config.horizon
        acts = np.zeros((H, 7))
        offset = self.rng.normal(0, self.noise, 3)
        for i in range(H):
            d = np.clip(self.gain * (self.points[self.goal] - p) / self.pos_scale, -1, 1)
            acts[i, :3] = np.clip(d + offset, -1, 1)
            p = p + self.pos_scale * acts[i, :3] * 0.9
        acts[:, 6] = -1.0
        if prefix is not None and prefix_len > 0:  # inpaint the committed prefix, blend the rest in
            pre = prefix[0].double().numpy()
            n = min(prefix_len, H)
            acts[:n] = pre[:n]
            for j, i in enumerate(range(n, H)):
                w = min(1.0, (j + 1) / 4)
                acts[i] = (1 - w) * pre[n - 1] + w * acts[i]
        if self.faults == "nan" and self.calls > 2:
            acts[3, 1] = np.nan
        return torch.from_numpy(acts.astype(np.float32))[None]  # (1, H, 7)


class JointTargetPolicy:
    """Absolute joint targets: a slow sine around `home`, or `wild=True` for targets far beyond every limit."""

    def __init__(self, home: np.ndarray, amplitude: float = 0.2, period_s: float = 2.0, dt: float = 0.05,
                 wild: bool = False):
        self.config = ToyConfig(obs_keys=["joint_pos"], action_dim=len(home) + 1)
        self.home, self.amp, self.period_s, self.dt, self.wild = np.asarray(home), amplitude, period_s, dt, wild
        self.k = 0

    def reset(self) -> None:
        self.k = 0

    def predict_action_chunk(self, obs, goal=None):
        H = self.config.horizon
        t = (self.k + np.arange(H)) * self.dt
        self.k += self.config.n_action_steps
        q = self.home[None] + self.amp * np.sin(2 * np.pi * t / self.period_s)[:, None]
        if self.wild:
            q = q + 10.0 * np.sign(np.sin(np.arange(H)))[:, None]
        g = np.ones((H, 1))
        return torch.from_numpy(np.concatenate([q, g], axis=1).astype(np.float32))[None]


class ScriptedLiftPolicy:
    """Privileged scripted lift (like the sim experts) behind the Policy protocol: eef_delta actions from
    `state` = proprio (eef pos 3, quat 4, fingers 2) + object (cube pos 3, quat 4, cube - eef 3).
    Approach above the cube, descend, close, lift. Used to check the daemon's whole command path
    (IK, gripper, physics) can lift the cube; a trained checkpoint goes through exactly the same path."""

    def __init__(self, lift_height: float = 0.15, pos_scale: float = 0.05):
        self.config = ToyConfig(obs_keys=["state"])
        self.phase, self.grasp_calls, self.cube0 = 0, 0, None
        self.lift_height, self.pos_scale = lift_height, pos_scale

    def reset(self) -> None:
        self.phase, self.grasp_calls, self.cube0 = 0, 0, None

    def predict_action_chunk(self, obs, goal=None):
        s = obs["state"][0, -1].double().numpy()
        eef, cube = s[:3], s[9:12]
        if self.cube0 is None:
            self.cube0 = cube.copy()
        if self.phase == 0 and np.linalg.norm(eef - (cube + [0, 0, 0.06])) < 0.01:
            self.phase = 1
        if self.phase == 1 and np.linalg.norm(eef - cube) < 0.008:
            self.phase = 2
        if self.phase == 2:
            self.grasp_calls += 1
            if self.grasp_calls > 3:
                self.phase = 3
        target = {0: cube + [0, 0, 0.06], 1: cube, 2: eef, 3: self.cube0 + [0, 0, self.lift_height]}[self.phase]
        grip = 1.0 if self.phase >= 2 else -1.0
        H, p = self.config.horizon, eef.copy()
        acts = np.zeros((H, 7))
        for i in range(H):
            acts[i, :3] = np.clip(0.6 * (target - p) / self.pos_scale, -1, 1)
            acts[i, 6] = grip
            p = p + self.pos_scale * acts[i, :3] * 0.6
        return torch.from_numpy(acts.astype(np.float32))[None]


class MarkovLiftPolicy:
    """Privileged scripted lift whose action is a function of the current observation only (no phase
    counter, no memory), so a Markov policy - a trained one - can imitate it exactly:

        fingers around the cube and closed on it   -> lift (gripper closed), towards `lift_z`
        fingers shut on nothing near the cube      -> open the gripper, back up above the cube
        grip point at the cube                     -> close the gripper, stay
        otherwise                                  -> open, go above the cube and descend onto it
                                                      (descent height shrinks with the xy error)

    `state` = proprio (eef pos 3, quat 4, finger qpos 2) + object (cube pos 3, quat 4, cube - eef 3).
    Actions are eef_delta: a position step towards the target (speed-capped, direction kept, slower
    the nearer the table), a rotation towards the home orientation turned by the cube's yaw (the
    fingers meet two faces), gripper -1 open / +1 closed. The gains are low on purpose: an eef_delta
    goal is set relative to the daemon's *commanded* pose, which runs ahead of the arm (joint
    impedance lag, acceleration limits), so high gains overshoot. The chunk repeats the action: with
    the default horizon 2 / 1 action executed, the daemon asks again every action slot (20 Hz).
    Over 20 seeds of the stepped sim arm (cube yaw within +-45 deg) it lifts 20/20 at 50 and 100 Hz.
    """

    OPEN_W, CUBE_W, SHUT_W = 0.078, 0.042, 0.012  # finger separation open / around the cube / on nothing (m)
    HOME_QUAT = (0.99797658, 0.00024490, 0.06358208, 0.00001560)  # xyzw, the sim Panda's hand body at home (eef_quat)

    def __init__(self, lift_z: float = 1.0, pos_scale: float = 0.05, gain: float = 0.1, max_step: float = 0.15,
                 horizon: int = 2, n_action_steps: int = 1, grasp_dz: float = 0.005, descent_gain: float = 1.2,
                 rot_gain: float = 0.1, rot_scale: float = 0.5, max_rot: float = 0.2):
        self.config = ToyConfig(obs_keys=["state"], horizon=horizon, n_action_steps=n_action_steps, obs_horizon=1)
        self.lift_z, self.pos_scale, self.gain, self.max_step = lift_z, pos_scale, gain, max_step
        self.grasp_dz = grasp_dz  # grip point this far above the cube centre (the fingertips clear the table)
        self.descent_gain = descent_gain  # downward speed limit (m/s) per metre above the grip point
        self.rot_gain, self.rot_scale, self.max_rot = rot_gain, rot_scale, max_rot
        self.R_home = quat_xyzw_to_matrix(np.array(self.HOME_QUAT))

    def reset(self) -> None:
        pass

    def reference_orientation(self, cube_quat: np.ndarray) -> np.ndarray:
        """The gripper's home orientation turned about z by the cube's yaw (taken into +-45 deg, a
        square's faces repeat every 90 deg), so the fingers close on two faces."""
        R = quat_xyzw_to_matrix(cube_quat)
        yaw = float(np.arctan2(R[1, 0], R[0, 0]))
        yaw = (yaw + np.pi / 4) % (np.pi / 2) - np.pi / 4
        c, s = np.cos(yaw), np.sin(yaw)
        return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]]) @ self.R_home

    def act(self, s: np.ndarray) -> np.ndarray:
        """(7,) action for one state vector (19,)."""
        eef, fingers, cube, cube_quat = s[:3], s[7:9], s[9:12], s[12:16]
        width = float(fingers[0] - fingers[1])
        grasp = cube + [0.0, 0.0, self.grasp_dz]
        d = grasp - eef
        dxy, dz = float(np.linalg.norm(d[:2])), float(d[2])
        around = dxy < 0.015 and abs(dz) < 0.015  # the cube is between the fingers
        if around and self.SHUT_W < width < self.CUBE_W + 0.006:
            target, grip = np.array([cube[0], cube[1], self.lift_z]), 1.0
        elif width <= self.SHUT_W and dxy < 0.02 and dz > -0.03:
            target, grip = grasp + [0.0, 0.0, 0.04], -1.0
        elif dxy < 0.008 and abs(dz) < 0.008:
            target, grip = grasp, 1.0
        else:
            above = float(np.clip((dxy - 0.004) / 0.02, 0.0, 1.0)) * 0.06
            target, grip = grasp + [0.0, 0.0, above], -1.0
        step = self.gain * (target - eef) / self.pos_scale
        rot = self.rot_gain * rotation_error(self.reference_orientation(cube_quat), quat_xyzw_to_matrix(s[3:7]))
        rot = np.clip(rot / self.rot_scale, -self.max_rot, self.max_rot)
        n = float(np.linalg.norm(step))
        if n > self.max_step:
            step *= self.max_step / n
        # descend more slowly the nearer the grip point (the arm's command is acceleration-limited and
        # runs ahead of the arm: a fast descent overshoots into the table)
        step[2] = max(step[2], -(0.02 + self.descent_gain * max(eef[2] - grasp[2], 0.0)))
        return np.concatenate([step, rot, [grip]])

    def predict_action_chunk(self, obs, goal=None):
        s = obs["state"][0, -1].double().numpy().copy()  # (19,)
        acts = np.repeat(self.act(s)[None], self.config.horizon, axis=0)  # (H, 7): re-planned every slot
        return torch.from_numpy(acts.astype(np.float32))[None]  # (1, H, 7)


# ---- a goal-conditioned head ---------------------------------------------------------------------
# Registered at import, so `load_policy` (and a policy server process that imports this module first:
# `spawn_local_server(..., imports=["doubles"])`) can rebuild it from a checkpoint directory.

LEFT, RIGHT = (-0.05, 0.15, 1.05), (-0.05, -0.15, 1.05)  # eef targets of the instructions "left" / "right"


def reach_goal_state(target) -> np.ndarray:
    """A goal state for key "proprio" (9,) whose eef position is `target` (the rest is not read)."""
    return np.concatenate([np.asarray(target, dtype=np.float32), [0, 0, 0, 1, 0.04, -0.04]]).astype(np.float32)


@dataclass
class GoalReachConfig(PolicyConfig):
    pos_scale: float = 0.05  # metres per unit eef_delta action (the robot config's action.pos_scale)


@register_policy("toy_goal_reach")
class GoalReachPolicy(Policy):
    """eef_delta actions towards the target its goal names: goal state "proprio" (the eef position in
    its first three values) or the instruction "left" / "right"; with no goal it holds still. A real
    `Policy` (config, state dict, save/load), without a learnt goal encoder: it reads the goal itself.
    `calls` records each goal it was given (the test looks at what crossed a process boundary)."""

    config_class = GoalReachConfig
    goal_modalities = ("language", "image", "state")

    def __init__(self, config: GoalReachConfig, stats: dict[str, dict]):
        super().__init__(config, stats)
        self.goal_encoder = None  # reads its goal directly
        self.register_buffer("gain", torch.tensor(0.6))
        self.calls: list[Goal | None] = []

    @classmethod
    def build(cls, modalities=("language", "state"), image_shape=(8, 8, 3), horizon: int = 8) -> "GoalReachPolicy":
        goal = GoalConfig(modalities=list(modalities), state_keys=["proprio"], state_dims={"proprio": 9})
        if "image" in modalities:
            goal.image_keys, goal.image_shapes = ["agentview_image"], {"agentview_image": list(image_shape)}
        cfg = GoalReachConfig(obs_keys=["proprio"], obs_shapes={"proprio": [9]}, action_dim=7, obs_horizon=1,
                              horizon=horizon, n_action_steps=horizon // 2, goal=goal)
        return cls(cfg, {})

    def target(self, goal) -> np.ndarray | None:
        """The eef position `goal` (a Goal, a B=1 GoalBatch or None) names, or None."""
        if isinstance(goal, dict):  # a collated GoalBatch (B=1): back to one Goal
            present = goal.get("present", {})
            instruction = goal["instruction"][0] if bool(present.get("language", [False])[0]) else None
            state = {k: np.asarray(v)[0] for k, v in goal.get("state", {}).items()} if bool(
                present.get("state", [False])[0]) else {}
            goal = Goal(instruction, {}, state)
        if goal is None:
            return None
        check_goal(goal, self.config.goal)
        if "proprio" in goal.state:
            return np.asarray(goal.state["proprio"], dtype=np.float64)[:3]
        return {"left": np.array(LEFT), "right": np.array(RIGHT)}.get((goal.instruction or "").strip().lower())

    def predict_action_chunk(self, obs, goal=None) -> torch.Tensor:
        self.calls.append(goal)
        p = obs["proprio"][0, -1, :3].double().cpu().numpy()  # (3,) latest eef position
        target = self.target(goal)
        H, scale, gain = self.config.horizon, self.config.pos_scale, float(self.gain)
        acts = np.zeros((H, 7))
        acts[:, 6] = -1.0  # gripper open
        for i in range(H if target is not None else 0):
            acts[i, :3] = np.clip(gain * (target - p) / scale, -1, 1)
            p = p + scale * acts[i, :3] * 0.9
        return torch.from_numpy(acts.astype(np.float32))[None].to(self.gain.device)  # (1, H, 7)

    def compute_loss(self, batch: dict) -> dict[str, torch.Tensor]:
        raise NotImplementedError("a scripted stand-in: nothing to train")


class FaultyFakeDriver(FakeDriver):
    """The fake arm with fault switches: `freeze` (the state, timestamp included, stops updating) and
    `disconnect` (every call raises DriverError)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.freeze = False
        self.disconnect = False
        self._frozen: RobotState | None = None

    def _check_link(self) -> None:
        if self.disconnect:
            raise DriverError("fake: disconnected")

    def connect(self) -> None:
        self._check_link()
        super().connect()

    def read_state(self) -> RobotState:
        self._check_link()
        if not self.freeze:
            self._frozen = None
            return super().read_state()
        if self._frozen is None:
            self._frozen = super().read_state()
        return self._frozen

    def send(self, command: JointCommand) -> None:
        self._check_link()
        super().send(command)

"""Sim arm driver: robosuite's Panda MJCF stepped directly in MuJoCo, in its own process, at real time.

robosuite's own OSC stepping costs ~22 ms of Python per control step on the
development machine, too slow for a 100 Hz arm. This driver steps the same
robot model (plus robosuite Lift's table and cube with `scene = "lift"`; the cube
placed by `seed` within `cube_xy_range`, turned about z within `cube_yaw_range`) with
raw `mujoco.mj_step` and a joint impedance controller with gravity
compensation, `tau = kp (q_target - q) - kd dq + bias(q, dq)`, like a real
arm's joint impedance mode. The process runs frames of `1 / publish_hz`
seconds on absolute deadlines; each frame applies the commands whose
actuation latency has elapsed, steps the physics, and publishes the state
after the observation latency. Real-time factor = simulated / wall seconds.

Commands are raw float64 vectors over a pipe (no pickling); the sim reads all of
them every frame. States go the other way through a shared-memory slot under a
sequence lock (the reader never sees a torn or queued-up old state):
  to the sim:   [kind, t, gripper, q (n)]   kind 0 command, 1 hold, 2 stop, 3 enable, 4 close
  state slot:   [t_measured, sim_time, busy_s, wall_s, gripper, q (n), dq (n), eef_pos (3),
                 eef_quat xyzw (4), finger qpos (2), object (10, scene "lift" only)]
"""

from __future__ import annotations

import collections
import multiprocessing as mp
import time

import numpy as np

from robolearn.real_robot.config import RobotConfig
from robolearn.real_robot.driver import DriverError, JointCommand, RobotState

CMD, HOLD, STOP, ENABLE, CLOSE = 0.0, 1.0, 2.0, 3.0, 4.0
N_HEAD = 5

DEFAULTS = dict(scene="lift", physics_dt=0.002, publish_hz=200, obs_latency_s=0.0, act_latency_s=0.0,
                kp=None, kd=None, seed=0, cube_xy_range=0.03, cube_yaw_range=0.0)



class _Sim:
    """The physics side (runs inside the sim process)."""

    def __init__(self, model: str, base_pos, names: list[str], home: np.ndarray, o: dict):
        import mujoco

        from robolearn.real_robot.model import EEF_BODY, EEF_SITE, build_spec, joint_addrs

        self.mj = mujoco
        self.m = build_spec(model, o["scene"], base_pos).compile()
        self.m.opt.timestep = o["physics_dt"]
        self.d = mujoco.MjData(self.m)
        self.qadr, self.vadr = joint_addrs(self.m, names)
        jids = [mujoco.mj_name2id(self.m, mujoco.mjtObj.mjOBJ_JOINT, n) for n in names]
        self.act = np.array([next(a for a in range(self.m.nu) if self.m.actuator_trnid[a, 0] == j) for j in jids])
        self.fingers = [a for a in range(self.m.nu) if a not in set(self.act.tolist())]
        self.finger_q = [self.m.jnt_qposadr[self.m.actuator_trnid[a, 0]] for a in self.fingers]
        self.site = mujoco.mj_name2id(self.m, mujoco.mjtObj.mjOBJ_SITE, EEF_SITE)
        # robosuite's `robot0_eef_quat` is the hand *body*'s orientation (not the grip site's, which is turned
        # 90 deg about z); publish the same so policies trained in robosuite see the frame they were trained on
        self.hand = mujoco.mj_name2id(self.m, mujoco.mjtObj.mjOBJ_BODY, EEF_BODY)
        if self.hand < 0:
            raise DriverError(f"sim: the robot model has no body {EEF_BODY!r} (its orientation is the published eef_quat)")
        self.cube = mujoco.mj_name2id(self.m, mujoco.mjtObj.mjOBJ_BODY, "cube")
        n = len(names)
        self.kp = np.asarray(o["kp"] if o["kp"] is not None else [400.0] * n)
        self.kd = np.asarray(o["kd"] if o["kd"] is not None else 2 * np.sqrt(self.kp))
        self.lo, self.hi = self.m.actuator_ctrlrange[self.act, 0], self.m.actuator_ctrlrange[self.act, 1]
        self.d.qpos[self.qadr] = home
        if self.cube >= 0:
            rng = np.random.default_rng(o["seed"])
            adr = self.m.jnt_qposadr[self.m.body_jntadr[self.cube]]
            self.d.qpos[adr: adr + 2] = rng.uniform(-o["cube_xy_range"], o["cube_xy_range"], 2)
            if o["cube_yaw_range"] > 0:  # robosuite Lift turns the cube about z too (any yaw ~ one in +-45 deg)
                yaw = rng.uniform(-o["cube_yaw_range"], o["cube_yaw_range"])
                self.d.qpos[adr + 3: adr + 7] = [np.cos(yaw / 2), 0.0, 0.0, np.sin(yaw / 2)]  # wxyz
        mujoco.mj_forward(self.m, self.d)
        self.target = home.astype(np.float64).copy()
        self.gripper = 0.0

    def q(self) -> np.ndarray:
        return self.d.qpos[self.qadr].copy()

    def apply(self, msg: np.ndarray, enabled: bool) -> bool:
        """One message [kind, t, gripper, q (n)] (not CLOSE); returns whether commands are accepted now."""
        kind = msg[0]
        if kind == ENABLE:
            return True
        if kind in (HOLD, STOP):
            self.target = self.q()
            return enabled and kind == HOLD
        if kind == CMD and enabled and len(msg) == 3 + len(self.qadr) and np.all(np.isfinite(msg)):
            self.target = msg[3:].copy()
            self.gripper = float(np.clip(msg[2], 0.0, 1.0))
        return enabled

    def step(self, n_sub: int) -> None:
        d, mj = self.d, self.mj
        fingers = 0.04 * (1.0 - self.gripper)
        for _ in range(n_sub):
            q, dq = d.qpos[self.qadr], d.qvel[self.vadr]
            tau = self.kp * (self.target - q) - self.kd * dq + d.qfrc_bias[self.vadr]
            d.ctrl[self.act] = np.clip(tau, self.lo, self.hi)
            for a, sign in zip(self.fingers, (1.0, -1.0)):
                d.ctrl[a] = sign * fingers
            mj.mj_step(self.m, d)

    def state_vector(self, t: float, busy: float, wall: float) -> np.ndarray:
        d = self.d
        eef = d.site_xpos[self.site].copy()
        quat = d.xquat[self.hand][[1, 2, 3, 0]]  # MuJoCo wxyz -> robosuite xyzw
        parts = [[t, d.time, busy, wall, self.gripper], d.qpos[self.qadr], d.qvel[self.vadr], eef, quat,
                 d.qpos[self.finger_q]]
        if self.cube >= 0:
            cpos = d.xpos[self.cube].copy()
            cq = d.xquat[self.cube]
            parts += [cpos, [cq[1], cq[2], cq[3], cq[0]], cpos - eef]
        return np.concatenate([np.asarray(p, dtype=np.float64) for p in parts])


def state_size(n: int, scene: str | None) -> int:
    return N_HEAD + 2 * n + 9 + (10 if scene == "lift" else 0)


def state_from_vector(v: np.ndarray, n: int) -> RobotState:
    i = N_HEAD
    q, dq = v[i:i + n], v[i + n:i + 2 * n]
    i += 2 * n
    extra = {"object": v[i + 9:i + 19].astype(np.float32)} if len(v) >= i + 19 else {}
    return RobotState(float(v[0]), q.copy(), dq.copy(), v[i:i + 3].copy(), v[i + 3:i + 7].copy(),
                      v[i + 7:i + 9].copy(), float(v[4]), extra)


class StateSlot:
    """Latest state in shared memory; seqlock: odd sequence number = write in progress."""

    def __init__(self, ctx, size: int):
        self.seq = ctx.Value("q", 0, lock=False)
        self.buf = ctx.Array("d", size, lock=False)
        self.size = size

    def write(self, v: np.ndarray) -> None:
        self.seq.value += 1
        np.frombuffer(self.buf, dtype=np.float64)[:] = v
        self.seq.value += 1

    def read(self, tries: int = 100, wait_s: float = 0.005) -> np.ndarray | None:
        """A consistent copy of the slot (None if none was published). Spins `tries` times, then keeps
        retrying while yielding the CPU for up to `wait_s`: on a loaded machine the writer can be
        descheduled mid-write, and spinning without yielding only keeps it from finishing."""
        arr = np.frombuffer(self.buf, dtype=np.float64)
        deadline = None
        while True:
            for _ in range(tries):
                s0 = self.seq.value
                if s0 % 2:
                    continue
                v = arr.copy()
                if self.seq.value == s0:
                    return v if s0 > 0 else None
            deadline = deadline or time.monotonic() + wait_s
            if time.monotonic() > deadline:
                return None
            time.sleep(0)  # let the writer run


def sim_main(conn, slot: StateSlot, model: str, base_pos, names: list[str], home: list[float], opts: dict) -> None:
    """Entry point of the sim process."""
    o = {**DEFAULTS, **opts}
    sim = _Sim(model, base_pos, names, np.asarray(home), o)
    n_sub = max(1, round(1.0 / (o["publish_hz"] * o["physics_dt"])))
    frame = n_sub * o["physics_dt"]  # a whole number of physics steps per frame: simulated time == wall time
    inbox: collections.deque = collections.deque()  # (t_apply, msg)
    outbox: collections.deque = collections.deque()  # (t_publish, vector)
    enabled, busy = False, 0.0
    t0 = time.monotonic()
    slot.write(sim.state_vector(t0, 0.0, 0.0))
    conn.send_bytes(b"ready")
    k = 0
    while True:
        deadline = t0 + k * frame
        now = time.monotonic()
        if now < deadline:
            time.sleep(deadline - now)
            now = time.monotonic()
        # frames due now: more than one if the process was descheduled; physics catches up (bounded),
        # beyond that the frames are lost and the real-time factor drops below 1
        due = min(1 + int((now - deadline) / frame), 20)
        try:
            while conn.poll():
                inbox.append((now + o["act_latency_s"], np.frombuffer(conn.recv_bytes(), dtype=np.float64)))
        except (EOFError, OSError):
            return
        while inbox and inbox[0][0] <= now:
            msg = inbox.popleft()[1]
            if msg[0] == CLOSE:
                return
            enabled = sim.apply(msg, enabled)
        b0 = time.monotonic()
        sim.step(n_sub * due)
        t_meas = time.monotonic()
        busy += t_meas - b0
        outbox.append((t_meas + o["obs_latency_s"], sim.state_vector(t_meas, busy, t_meas - t0)))
        while outbox and outbox[0][0] <= t_meas:
            slot.write(outbox.popleft()[1])
        k = max(k + due, int((now - t0) / frame) + 1)


class SimDriver:
    def __init__(self, cfg: RobotConfig, **overrides):
        self.cfg = cfg
        self.opts = {**DEFAULTS, **cfg.driver_options, **overrides}
        self.n = cfg.joints.dof
        self.proc: mp.Process | None = None
        self.conn = None
        self._last: np.ndarray | None = None
        self._enabled = False

    # ---- process -----------------------------------------------------------------------------
    def _spawn(self) -> None:
        ctx = mp.get_context("spawn")
        self.conn, child = ctx.Pipe(duplex=True)
        self.slot = StateSlot(ctx, state_size(self.n, self.opts["scene"]))
        self.proc = ctx.Process(target=sim_main, name="sim-arm", daemon=True, args=(
            child, self.slot, self.cfg.model, list(self.cfg.base_pos), list(self.cfg.joints.names),
            self.cfg.joints.home.tolist(), dict(self.opts)))
        self.proc.start()
        child.close()
        if not self.conn.poll(60):
            self.proc.kill()
            raise DriverError("sim: the sim process did not start within 60 s")
        self.conn.recv_bytes()
        self._last = self.slot.read()

    def _send(self, kind: float, t: float = 0.0, g: float = 0.0, q: np.ndarray | None = None) -> None:
        if self.proc is None or not self.proc.is_alive():
            raise DriverError("sim: the sim process is not running")
        q = np.zeros(self.n) if q is None else q
        try:
            self.conn.send_bytes(np.concatenate([[kind, t, g], q]).astype(np.float64).tobytes())
        except (BrokenPipeError, OSError) as exc:
            raise DriverError(f"sim: pipe closed ({exc})") from None

    # ---- Driver protocol ---------------------------------------------------------------------
    def connect(self) -> None:
        if self.proc is None:
            self._spawn()
        self._send(ENABLE)
        self._enabled = True

    def read_state(self) -> RobotState:
        if self.proc is None or not self.proc.is_alive():
            raise DriverError("sim: the sim process is not running")
        v = self.slot.read()
        if v is None:
            raise DriverError("sim: could not read a consistent state")
        self._last = v
        return state_from_vector(v, self.n)

    def send(self, command: JointCommand) -> None:
        self._send(CMD, command.t, command.gripper, command.q)

    def hold(self) -> None:
        self._send(HOLD)

    def stop(self) -> None:
        try:
            self._send(STOP)
        except DriverError:
            pass  # a dead sim is stopped
        self._enabled = False

    def close(self) -> None:
        if self.proc is None:
            return
        try:
            self._send(CLOSE)
        except DriverError:
            pass
        self.proc.join(2.0)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join(1.0)
        self.proc = None

    # ---- measurements / fault injection ------------------------------------------------------
    def realtime_factor(self) -> dict:
        """{"sim_s", "wall_s", "rtf" (sim/wall), "capacity" (sim/compute: how much faster than real time it could run)}."""
        v = self._last
        sim_s, busy, wall = float(v[1]), float(v[2]), float(v[3])
        return {"sim_s": sim_s, "wall_s": wall, "rtf": sim_s / wall if wall > 0 else 0.0,
                "capacity": sim_s / busy if busy > 0 else 0.0}

    def kill(self) -> None:
        """Fault injection: the arm's controller disappears (no stop message)."""
        if self.proc is not None:
            self.proc.kill()
            self.proc.join(1.0)

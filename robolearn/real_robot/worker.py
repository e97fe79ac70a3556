"""Policy worker: runs inference beside the control loop, never in it.

The control loop `submit`s a request (an observation window aligned by
timestamp, the slot the chunk starts at, the episode's goal, and for real-time
chunking the committed prefix) when the worker is idle, and `poll`s finished results each
tick; neither call blocks. Inference runs in a thread (torch releases the GIL
inside its kernels); the policy may equally be a `RemotePolicy` whose server
runs in another process or on a GPU machine.

Every call is `predict_action_chunk(obs, goal=goal)` with the daemon's current
goal (a `robolearn.goal.Goal`, or None for no goal).

Real-time chunking hook (optional): a policy whose `predict_action_chunk`
accepts `prefix` and `prefix_len` keywords gets the committed actions
`prefix` (B, P, action_dim) and must return a chunk whose first `prefix_len`
actions continue them (for a diffusion head: inpaint those positions at every
denoising step, or guide towards them). Policies without the hook are called
the plain way and the scheduler blends instead.

Supervised policy process (`PolicyProcess`, `robolearn serve --inference process`): the policy
server runs in a child process; the daemon asks `exited()` every tick (a non-blocking `waitpid` and
a look at the process table), so an exit is seen in the tick it happens, not as a request timeout. The daemon then holds, logs the
exit code and `restart()`s the process in a helper thread (spawning and loading a checkpoint takes
seconds; the control loop never waits for it) up to `[safety].policy_restarts` times; the new client
replaces the old one through `PolicyWorker.set_policy`, which bumps the worker's generation so a late
answer from the dead process (its request timing out) is recognised and dropped.
"""


from __future__ import annotations

import collections
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from robolearn.policies.scheduling import supports_prefix
from robolearn.goal import Goal
from robolearn.real_robot.driver import RobotState

log = logging.getLogger(__name__)


def obs_from_state(s: RobotState) -> dict[str, np.ndarray]:
    """The observation keys a robot state provides (same names as the sim tasks)."""
    proprio = np.concatenate([s.eef_pos, s.eef_quat, s.gripper_qpos]).astype(np.float32)
    out = {"proprio": proprio, "joint_pos": s.q.astype(np.float32), "joint_vel": s.dq.astype(np.float32)}
    for k, v in s.extra.items():
        out[k] = np.asarray(v)
    if "object" in out:
        out["state"] = np.concatenate([proprio, out["object"].astype(np.float32)])
    return out


class ObsHistory:
    """Recent robot states; `window` picks, for each of To steps dt apart, the state nearest in time."""

    def __init__(self, seconds: float = 3.0, rate_hint: float = 1000.0):
        self.states: collections.deque[RobotState] = collections.deque(maxlen=int(seconds * rate_hint))

    def add(self, s: RobotState) -> bool:
        if self.states and s.t <= self.states[-1].t:
            return False
        self.states.append(s)
        return True

    def latest(self) -> RobotState | None:
        return self.states[-1] if self.states else None

    def window(self, t_obs: float, n: int, dt: float, keys: list[str]) -> dict[str, np.ndarray]:
        """{key: (n, ...)} for times t_obs - (n-1-j) dt, j = 0..n-1 (oldest first; the first state repeats)."""
        ts = np.array([s.t for s in self.states])
        frames = []
        for j in range(n):
            t = t_obs - (n - 1 - j) * dt
            frames.append(obs_from_state(self.states[int(np.argmin(np.abs(ts - t)))]))
        return {k: np.stack([f[k] for f in frames]) for k in keys}


@dataclass
class Request:
    seq: int
    obs: dict[str, np.ndarray]  # {key: (To, ...)}
    t_obs: float
    k0: int  # slot of the chunk's first action
    prefix: np.ndarray | None  # (P, D) committed actions for rtc, else None
    goal: Goal | None = None  # what the episode is to achieve (None: no goal)


@dataclass
class Result:
    seq: int
    t_obs: float
    k0: int
    t_start: float
    t_end: float
    actions: np.ndarray | None  # (H, D) or None on error
    prefix_used: int = 0
    error: str = ""
    gen: int = 0  # the worker's policy generation the request ran on (see `PolicyWorker.set_policy`)
    unreachable: bool = False  # the error was a timeout/connection failure (a policy server not answering)


def validate_chunk(out, action_dim: int) -> np.ndarray:
    """(1, H, D) tensor/array -> (H, D) float64; ValueError on wrong shape or non-finite values."""
    a = out.detach().cpu().numpy() if hasattr(out, "detach") else np.asarray(out)
    if a.ndim != 3 or a.shape[0] != 1 or a.shape[2] != action_dim or a.shape[1] < 1:
        raise ValueError(f"policy returned shape {tuple(a.shape)}, expected (1, H, {action_dim})")
    a = a[0].astype(np.float64)
    if not np.all(np.isfinite(a)):
        raise ValueError("policy returned non-finite actions")
    return a


class PolicyWorker:
    def __init__(self, policy, action_dim: int, device: str = "cpu", clock=time.monotonic):
        self.clock = clock
        self.policy = policy
        self.action_dim = action_dim
        self.device = device
        self.has_prefix_hook = supports_prefix(policy)
        self.gen = 0
        self._req: queue.Queue[Request | None] = queue.Queue(maxsize=1)
        self._res: queue.SimpleQueue[Result] = queue.SimpleQueue()
        self.busy = False
        self.last_beat = self.clock()
        self._thread = threading.Thread(target=self._loop, name="policy-worker", daemon=True)
        self._stop = False

    def start(self) -> None:
        self._thread.start()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def set_policy(self, policy) -> None:
        """Swap the policy (a restarted policy process's client); a request already running finishes on
        the old one and its result carries the old generation."""
        self.policy = policy
        self.has_prefix_hook = supports_prefix(policy)
        self.gen += 1

    def submit(self, req: Request) -> bool:
        if self.busy:
            return False
        self.busy = True
        self._req.put_nowait(req)
        return True

    def poll(self) -> list[Result]:
        out = []
        while True:
            try:
                out.append(self._res.get_nowait())
            except queue.Empty:
                return out

    def wait_idle(self, timeout: float = 5.0) -> bool:
        """Block until the running inference (if any) has finished; for synchronous (stepped) use only."""
        t_end = time.monotonic() + timeout
        while self.busy and self.alive and time.monotonic() < t_end:
            time.sleep(0.0001)
        return not self.busy

    def close(self, timeout: float = 2.0) -> None:
        self._stop = True
        try:
            self._req.put_nowait(None)
        except queue.Full:
            pass
        if self._thread.ident is not None:  # never started when start-up failed before the loop
            self._thread.join(timeout)

    def _loop(self) -> None:
        import torch

        while not self._stop:
            self.last_beat = self.clock()
            try:
                req = self._req.get(timeout=0.05)
            except queue.Empty:
                continue
            if req is None:
                return
            t0, gen, policy, hook = self.clock(), self.gen, self.policy, self.has_prefix_hook
            try:
                actions, used = self._infer(torch, req, policy, hook)
                res = Result(req.seq, req.t_obs, req.k0, t0, self.clock(), actions, used, gen=gen)
            except Exception as exc:  # a failing policy must never take the loop down
                log.warning("policy inference failed: %s", exc)
                res = Result(req.seq, req.t_obs, req.k0, t0, self.clock(), None, error=f"{type(exc).__name__}: {exc}",
                             gen=gen, unreachable=isinstance(exc, (TimeoutError, ConnectionError)))
            self._res.put(res)
            self.busy = False  # after the put: once idle, the result is there to poll

    def warmup(self, req: Request) -> float:
        """One synchronous inference before the loop starts (first-call costs: allocation, CUDA
        kernels, torch.compile); raises if the policy cannot handle the robot's observation."""
        import torch

        t0 = time.perf_counter()
        self._infer(torch, req, self.policy, self.has_prefix_hook)
        return time.perf_counter() - t0

    def _infer(self, torch, req: Request, policy, hook: bool) -> tuple[np.ndarray, int]:
        obs = {k: torch.from_numpy(np.ascontiguousarray(v))[None].to(self.device) for k, v in req.obs.items()}
        with torch.inference_mode():
            if hook and req.prefix is not None:
                prefix = torch.from_numpy(req.prefix.astype(np.float32))[None].to(self.device)  # (1, P, D)
                out = policy.predict_action_chunk(obs, goal=req.goal, prefix=prefix, prefix_len=len(req.prefix))
                used = len(req.prefix)
            else:
                out = policy.predict_action_chunk(obs, goal=req.goal)
                used = 0
        return validate_chunk(out, self.action_dim), used


class PolicyProcess:
    """A policy server in a child process, supervised by the daemon (see the module docstring).

    `spawn()` -> (process, client) starts one (e.g. `remote.spawn_local_server` with its arguments
    bound); it is called once here and again, in a helper thread, by `restart()`."""

    def __init__(self, spawn: Callable[[], tuple], max_restarts: int):
        self._spawn = spawn
        self.max_restarts = int(max_restarts)
        self.restarts = 0
        self.proc, self.policy = spawn()
        self._thread: threading.Thread | None = None
        self._outcome: tuple | None = None  # (process, client) or (None, exception) from the helper thread
        self._code: int | None = None  # exit code read from the process table

    def exited(self) -> bool:
        """Has the child ended? Non-blocking (~20 us): `waitpid(WNOHANG)`, and on Linux the process table
        too (a zombie, or no process: something else reaped it), else the process sentinel. Not the
        sentinel alone: a descriptor number is shared state, and a `multiprocessing.Process` that another
        part of the program drops without `close()` closes its old sentinel number whenever the garbage
        collector finalizes it, which may by then be ours (seen in the test suite)."""
        p = self.proc
        if p is None:
            return False
        if p.exitcode is not None:
            return True
        try:
            with open(f"/proc/{p.pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            if fields[0] not in ("Z", "X"):
                return False
            status = int(fields[-1])  # exit_code: the raw wait status (Linux >= 3.5), kept in case another
            self._code = -(status & 0x7F) if status & 0x7F else status >> 8  # waiter reaps it first
            return True
        except FileNotFoundError:
            return True
        except OSError:
            from multiprocessing.connection import wait

            return bool(wait([p.sentinel], 0))

    def exitcode(self) -> int | None:
        """The exit code of an ended child (negative: killed by that signal; None if unknown), after
        which the child is released (`close()`: its sentinel is closed now, not at some later garbage
        collection, when the descriptor number may belong to the next child's sentinel)."""
        proc, self.proc = self.proc, None
        code = proc.exitcode  # waitpid(WNOHANG): reaps the zombie
        if code is None:
            code = self._code
        try:
            proc.close()
        except ValueError:  # not reaped (something else did): leave it to the garbage collector
            pass
        return code

    @property
    def restarting(self) -> bool:
        return self._thread is not None

    def restart(self) -> None:
        """Start a new process in a helper thread; `poll_restart` tells when it is up."""
        self.restarts += 1
        self._outcome, self._code = None, None

        def run() -> None:
            try:
                self._outcome = self._spawn()
            except BaseException as exc:  # reported to the daemon, never raised in this thread
                self._outcome = (None, exc)

        self._thread = threading.Thread(target=run, name="policy-restart", daemon=True)
        self._thread.start()

    def poll_restart(self):
        """None while the restart runs; then the new client (after which `exitcode()` watches the new
        process), or the exception that made it fail."""
        if self._thread is None or self._thread.is_alive():
            return None
        self._thread = None
        proc, out = self._outcome
        if proc is None:
            return out if isinstance(out, BaseException) else RuntimeError("policy process did not start")
        self.proc, self.policy = proc, out
        return out

    def close(self) -> None:
        if self._thread is not None:
            self._thread.join(10.0)  # a process being spawned must not outlive the daemon
            if self._outcome is not None and self._outcome[0] is not None:
                self.proc = self._outcome[0]
        if self.proc is not None and self.proc.exitcode is None:
            self.proc.kill()
            self.proc.join(2.0)

"""Remote mode: the policy runs on another machine (a GPU box) behind a small ZeroMQ server.

Wire format, no pickle and no msgpack: every message is a ZeroMQ multipart
message whose first frame is a UTF-8 JSON header and whose other frames are
raw little-endian array bytes described in the header:

  request  {"v": 1, "op": "config" | "predict", "token": str | null,
            "arrays": [{"key": "obs/proprio", "dtype": "float32", "shape": [1, 2, 9]}, ...],
            "prefix_len": int,
            "goal": {"instruction": str | null}}                 + one frame per array
  reply    {"v": 1, "ok": true, "config": {...}} | {"v": 1, "ok": true, "arrays": [{"key": "action", ...}]}
           | {"v": 1, "ok": false, "error": str}                 + frames

Predict arrays: `obs/<key>` (1, To, ...) observations, `prefix` (1, P, D) committed actions for
real-time chunking, and the episode's goal (`robolearn.goal.Goal.to_arrays`): `goal_image/<camera>`
uint8 (H, W, C) and `goal_state/<key>` float32 (D,); the instruction travels in the header's
"goal" table. No "goal" table and no goal arrays = no goal. The server checks the goal against the
policy (`check_goal`: a modality it was not trained with, a wrong camera or size) and answers a
bad one with an error. The config reply carries the policy's spec, whether it has the real-time
chunking hook, and its goal config ("goal": the `GoalConfig` fields), so a client can refuse a
bad goal before the arm moves.

The server binds to loopback by default; binding any other address requires a
token, which every request must then carry (checked in constant time). Dtypes
are whitelisted and sizes checked against the header, so a garbage request is
answered with an error and a garbage reply raises in the client; either way
the daemon only sees a failed inference and holds. The client (`RemotePolicy`)
times out, rebuilds its socket (a REQ socket cannot be reused after a lost
reply) and raises, which the daemon's policy worker reports as an error.
"""

from __future__ import annotations

import hmac
import json
import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from robolearn.config_io import from_dict, to_dict
from robolearn.errors import UserError
from robolearn.goal import Goal, GoalConfig, check_goal
from robolearn.real_robot.checkpoint import goal_config, load_checkpoint
from robolearn.real_robot.control import is_loopback

log = logging.getLogger(__name__)

VERSION = 1
DTYPES = {"float32", "float64", "uint8", "int64", "int32", "bool", "float16"}
MAX_BYTES = 256 * 1024 * 1024


def encode(header: dict, arrays: dict[str, np.ndarray]) -> list[bytes]:
    metas, frames = [], []
    for k, a in arrays.items():
        a = np.ascontiguousarray(a)
        if a.dtype.name not in DTYPES:
            raise ValueError(f"dtype {a.dtype} not allowed on the wire")
        metas.append({"key": k, "dtype": a.dtype.name, "shape": list(a.shape)})
        frames.append(a.astype(a.dtype.newbyteorder("<"), copy=False).tobytes())
    return [json.dumps({**header, "v": VERSION, "arrays": metas}).encode()] + frames


def decode(frames: list[bytes]) -> tuple[dict, dict[str, np.ndarray]]:
    """Parse and validate a message; ValueError on anything malformed."""
    if not frames:
        raise ValueError("empty message")
    try:
        header = json.loads(frames[0].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"header is not JSON ({exc})") from None
    if not isinstance(header, dict) or header.get("v") != VERSION:
        raise ValueError("header: missing or wrong protocol version")
    metas = header.get("arrays", [])
    if not isinstance(metas, list) or len(metas) != len(frames) - 1:
        raise ValueError("header: array list does not match the frames")
    arrays = {}
    for meta, buf in zip(metas, frames[1:]):
        try:
            key, dtype, shape = str(meta["key"]), str(meta["dtype"]), [int(s) for s in meta["shape"]]
        except (KeyError, TypeError, ValueError):
            raise ValueError("header: bad array description") from None
        if dtype not in DTYPES or any(s < 0 for s in shape):
            raise ValueError(f"array {key!r}: dtype {dtype!r} / shape {shape} not allowed")
        dt = np.dtype(dtype).newbyteorder("<")
        n = int(np.prod(shape, dtype=np.int64)) * dt.itemsize
        if n != len(buf) or n > MAX_BYTES:
            raise ValueError(f"array {key!r}: {len(buf)} bytes, header says {n}")
        arrays[key] = np.frombuffer(buf, dtype=dt).reshape(shape).astype(dt.newbyteorder("="))
    return header, arrays


def policy_info(policy) -> dict:
    from robolearn.policies.scheduling import supports_prefix

    c = policy.config
    return {"method": getattr(c, "method", "?"), "obs_keys": list(c.obs_keys), "obs_horizon": int(c.obs_horizon),
            "horizon": int(c.horizon), "n_action_steps": int(c.n_action_steps), "action_dim": int(c.action_dim),
            "image_keys": list(getattr(c, "image_keys", [])), "supports_prefix": supports_prefix(policy),
            "goal": to_dict(goal_config(policy))}


def goal_to_wire(goal: Goal | None) -> tuple[dict, dict[str, np.ndarray]]:
    """({"goal": header table} or {}, goal arrays) for a predict request."""
    if goal is None:
        return {}, {}
    if not isinstance(goal, Goal):
        raise TypeError(f"a remote policy takes a robolearn.goal.Goal, got {type(goal).__name__}")
    header, arrays = goal.to_arrays()
    return {"goal": header}, arrays


def goal_from_wire(header: dict, arrays: dict[str, np.ndarray], cfg: GoalConfig) -> Goal | None:
    """The request's goal, checked against the policy's goal config; ValueError for a bad one."""
    table = header.get("goal") or {}
    if not isinstance(table, dict):
        raise ValueError("goal: expected a table")
    goal = Goal.from_arrays(table, arrays)
    try:
        check_goal(goal, cfg)
    except UserError as exc:
        raise ValueError(str(exc)) from None
    return goal


class PolicyServer:
    def __init__(self, policy, bind: str = "tcp://127.0.0.1:5555", token: str | None = None, device: str = "cpu"):
        import zmq

        host = bind.split("://", 1)[-1].rsplit(":", 1)[0]
        if not is_loopback(host) and not token:
            raise UserError(f"--bind {bind}: a non-loopback address needs --token (or ROBOLEARN_TOKEN)")
        self.policy, self.token, self.device = policy, token, device
        self.info = policy_info(policy)
        self.goal_cfg = goal_config(policy)
        self.ctx = zmq.Context.instance()
        self.sock = self.ctx.socket(zmq.REP)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.setsockopt(zmq.MAXMSGSIZE, MAX_BYTES)
        if bind.endswith(":0"):
            port = self.sock.bind_to_random_port(bind.rsplit(":", 1)[0])
            self.address = f"{bind.rsplit(':', 1)[0]}:{port}"
        else:
            self.sock.bind(bind)
            self.address = bind
        self._stop = threading.Event()
        self.n_requests = 0

    def _handle(self, frames: list[bytes]) -> list[bytes]:
        import torch

        try:
            header, arrays = decode(frames)
        except ValueError as exc:
            return encode({"ok": False, "error": f"bad request: {exc}"}, {})
        if self.token and not hmac.compare_digest(str(header.get("token") or ""), self.token):
            return encode({"ok": False, "error": "unauthorised: bad or missing token"}, {})
        op = header.get("op")
        if op == "config":
            return encode({"ok": True, "config": self.info}, {})
        if op != "predict":
            return encode({"ok": False, "error": f"unknown op {op!r}"}, {})
        try:
            goal = goal_from_wire(header, arrays, self.goal_cfg)
        except ValueError as exc:
            return encode({"ok": False, "error": f"bad goal: {exc}"}, {})
        try:
            obs = {k[4:]: torch.from_numpy(v.copy()).to(self.device) for k, v in arrays.items() if k.startswith("obs/")}
            kwargs = {}
            if "prefix" in arrays and self.info["supports_prefix"]:
                kwargs = {"prefix": torch.from_numpy(arrays["prefix"].copy()).to(self.device),
                          "prefix_len": int(header.get("prefix_len", 0))}
            with torch.inference_mode():
                out = self.policy.predict_action_chunk(obs, goal=goal, **kwargs)
            return encode({"ok": True}, {"action": out.detach().float().cpu().numpy()})
        except Exception as exc:  # the policy failing is an answer, not a crash
            return encode({"ok": False, "error": f"{type(exc).__name__}: {exc}"}, {})

    def serve(self, poll_ms: int = 100) -> None:
        import zmq

        log.info("policy server on %s (%s)", self.address, self.info["method"])
        while not self._stop.is_set():
            if not self.sock.poll(poll_ms, zmq.POLLIN):
                continue
            frames = self.sock.recv_multipart()
            self.n_requests += 1
            self.sock.send_multipart(self._handle(frames))
        self.sock.close(0)

    def stop(self) -> None:
        self._stop.set()


@dataclass
class RemoteConfig:
    method: str
    obs_keys: list[str]
    obs_horizon: int
    horizon: int
    n_action_steps: int
    action_dim: int
    image_keys: list[str] = field(default_factory=list)
    supports_prefix: bool = False
    goal: GoalConfig = field(default_factory=GoalConfig)  # a server from before goals: none


class RemotePolicy:
    """Policy-protocol client: `predict_action_chunk` over the wire, raising on timeout or garbage."""

    def __init__(self, address: str, token: str | None = None, timeout_s: float = 1.0):
        import zmq

        self.zmq = zmq
        self.address, self.token, self.timeout_ms = address, token, int(timeout_s * 1000)
        self.ctx = zmq.Context.instance()
        self.sock = None
        try:
            info = self._call({"op": "config"}, {})[0]["config"]
            fields = {k: info[k] for k in RemoteConfig.__dataclass_fields__ if k in info}
            fields["goal"] = from_dict(GoalConfig, info.get("goal") or {}, "policy server config: goal")
            self.config = RemoteConfig(**fields)
        except (TimeoutError, ValueError, KeyError, TypeError, UserError) as exc:
            raise UserError(f"--remote {address}: no valid policy server there ({exc})") from None
        if not self.config.supports_prefix:
            self.predict_action_chunk = self._plain  # hide the rtc hook: the remote policy has none

    def _socket(self):
        if self.sock is None:
            self.sock = self.ctx.socket(self.zmq.REQ)
            self.sock.setsockopt(self.zmq.LINGER, 0)
            self.sock.setsockopt(self.zmq.MAXMSGSIZE, MAX_BYTES)
            self.sock.connect(self.address)
        return self.sock

    def _reset(self) -> None:
        if self.sock is not None:
            self.sock.close(0)
            self.sock = None

    def _call(self, header: dict, arrays: dict) -> tuple[dict, dict]:
        sock = self._socket()
        sock.send_multipart(encode({**header, "token": self.token}, arrays))
        if not sock.poll(self.timeout_ms, self.zmq.POLLIN):
            self._reset()
            raise TimeoutError(f"policy server {self.address} did not answer within {self.timeout_ms} ms")
        try:
            reply, out = decode(sock.recv_multipart())
        except ValueError:
            self._reset()
            raise
        if not reply.get("ok"):
            raise ValueError(f"policy server: {reply.get('error', 'error')}")
        return reply, out

    def reset(self) -> None:
        pass

    def _plain(self, obs, goal: Goal | None = None):
        return self.predict_action_chunk_remote(obs, goal, None, 0)

    def predict_action_chunk(self, obs, goal: Goal | None = None, prefix=None, prefix_len: int = 0):
        return self.predict_action_chunk_remote(obs, goal, prefix, prefix_len)

    def predict_action_chunk_remote(self, obs, goal: Goal | None, prefix, prefix_len: int):
        import torch

        header, arrays = goal_to_wire(goal)
        arrays.update({f"obs/{k}": v.detach().cpu().numpy() for k, v in obs.items()})
        if prefix is not None:
            arrays["prefix"] = prefix.detach().cpu().numpy()
        _, out = self._call({**header, "op": "predict", "prefix_len": int(prefix_len)}, arrays)
        if "action" not in out:
            raise ValueError("policy server: reply has no action")
        return torch.from_numpy(out["action"].astype(np.float32))

    def close(self) -> None:
        self._reset()


def _server_main(checkpoint: str, device: str, threads: int, conn, imports: tuple[str, ...] = ()) -> None:
    import importlib

    import torch

    torch.set_num_threads(threads)
    try:
        for name in imports:  # modules that register policy classes the checkpoint may name
            importlib.import_module(name)
        srv = PolicyServer(load_checkpoint(checkpoint, device), "tcp://127.0.0.1:0", None, device)
    except Exception as exc:
        conn.send(f"error: {exc}")
        return
    conn.send(srv.address)
    srv.serve()


def spawn_local_server(checkpoint: str, device: str = "cpu", threads: int = 1, timeout_s: float = 1.0,
                       imports: Sequence[str] = ()):
    """Inference in its own process (no GIL shared with the control loop): a loopback policy
    server in a child process plus its client. Returns (process, RemotePolicy).

    The child is spawned, so it knows only the policy classes `robolearn.policies` registers;
    `imports` names further modules it imports first (a head registered outside robolearn)."""
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=_server_main, args=(checkpoint, device, threads, child, tuple(imports)), daemon=True,
                       name="policy-server")
    proc.start()
    if not parent.poll(300):
        proc.kill()
        raise UserError(f"{checkpoint}: the policy process did not start")
    address = parent.recv()
    if address.startswith("error:"):
        proc.join(5)
        raise UserError(f"{checkpoint}: {address[7:]}")
    return proc, RemotePolicy(address, None, timeout_s=timeout_s)

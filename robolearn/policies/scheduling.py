"""Chunk scheduling: turn timestamped action chunks into one action per time slot.

The one chunk executor: the control daemon (robolearn/real_robot/daemon.py, stepped by
`time.monotonic`) and sim evaluation (robolearn/eval/rollout.py, stepped by the sim clock:
slot k = env step k) both execute a policy's chunks through `ChunkScheduler`, so a sim success
rate measures the execution the arm runs. It lives beside the policies (below both users).

Time is cut into slots of `action_dt` on a global grid (slot k starts at
`t_ref + k * dt`; `t_ref` is fixed by the first chunk). The policy worker
takes its observation at the start of a slot, so a chunk predicted from the
observation at slot `k_obs` stamps action i at slot `k_obs + offset + i`.

One rule for every mode: a slot that has started (or starts before
`now + exec_latency`) is committed and never changes; a chunk that arrives
late only fills slots still in the future, and its actions for committed
slots are dropped (counted). Modes differ in how future slots are filled:

- `receding`: the newest chunk replaces every future slot (receding horizon).
- `ensemble`: every chunk's prediction for a slot is kept; the slot's value is
  their average weighted `exp(-k * i)`, `i = 0` for the oldest (ACT).
- `rtc`: real-time chunking. The worker passes the committed prefix (the
  actions that will execute while inference runs) into the policy; a policy
  with the prefix hook inpaints it so the new chunk continues the old one.
  Without the hook the first `blend_steps` future slots are blended from the
  old schedule into the new chunk (a post-hoc soft mask), then receding.

`history` records every committed slot (action and source chunk) so boundary
jumps (largest action change where the source chunk switches) can be measured.
"""

from __future__ import annotations

import inspect
import math
from dataclasses import dataclass

import numpy as np

MODES = ("receding", "ensemble", "rtc")


def supports_prefix(policy) -> bool:
    """Does `policy.predict_action_chunk` take the real-time-chunking hook (`prefix`, `prefix_len`)?

    The hook: given the committed actions `prefix` (B, P, action_dim), return a chunk whose first
    `prefix_len` actions continue them. A head declares it with its class attribute
    `supports_prefix`; a head declaring False is never passed a prefix. Objects without the
    attribute (stand-ins, a remote policy) are asked by their signature."""
    try:
        params = inspect.signature(policy.predict_action_chunk).parameters
    except (TypeError, ValueError):
        return False
    return "prefix" in params and "prefix_len" in params and getattr(policy, "supports_prefix", None) is not False


@dataclass
class Chunk:
    k0: int  # slot of actions[0]
    actions: np.ndarray  # (H, D)
    seq: int  # chunk number (increasing)
    t_obs: float = 0.0  # monotonic time of the observation it was predicted from
    prefix_used: int = 0  # committed actions the policy was conditioned on (rtc hook)


class ChunkScheduler:
    def __init__(self, mode: str, dt: float, exec_latency: float = 0.0, ensemble_k: float = 0.01,
                 blend_steps: int = 4, history: int = 100_000):
        assert mode in MODES, mode
        self.mode = mode
        self.dt = float(dt)
        self.exec_latency = float(exec_latency)
        self.ensemble_k = float(ensemble_k)
        self.blend_steps = int(blend_steps)
        self.t_ref: float | None = None
        self._future: dict[int, np.ndarray] = {}  # receding / rtc: slot -> action
        self._votes: dict[int, list[tuple[int, np.ndarray]]] = {}  # ensemble: slot -> [(seq, action)]
        self._src: dict[int, int] = {}  # slot -> newest chunk seq that wrote it
        self.committed: dict[int, tuple[np.ndarray, int]] = {}  # slot -> (action, src seq)
        self.history: list[tuple[int, np.ndarray, int]] = []
        self._history_max = history
        self.n_dropped = 0
        self.n_chunks = 0

    # ---- time grid -------------------------------------------------------------------------
    def anchor(self, t: float) -> None:
        if self.t_ref is None:
            self.t_ref = float(t)

    def slot_of(self, t: float) -> int:
        """Slot containing time t (floor)."""
        assert self.t_ref is not None
        return math.floor((t - self.t_ref) / self.dt + 1e-9)

    def nearest_slot(self, t: float) -> int:
        assert self.t_ref is not None
        return round((t - self.t_ref) / self.dt)

    def slot_time(self, k: int) -> float:
        assert self.t_ref is not None
        return self.t_ref + k * self.dt

    def first_open_slot(self, now: float) -> int:
        """First slot not yet committed: it starts at or after now + exec_latency."""
        return math.ceil((now + self.exec_latency - self.t_ref) / self.dt - 1e-9)

    # ---- chunks in ---------------------------------------------------------------------------
    def add(self, chunk: Chunk, now: float) -> int:
        """Schedule a chunk at time `now`; returns how many of its actions were dropped (already due)."""
        self.anchor(now)
        k_open = max(self.first_open_slot(now), max(self.committed, default=-(10**9)) + 1)
        H = len(chunk.actions)
        start = max(0, k_open - chunk.k0)
        dropped = min(start, H)
        self.n_dropped += dropped
        self.n_chunks += 1
        ks = range(chunk.k0 + start, chunk.k0 + H)
        if self.mode == "ensemble":
            for k in ks:
                self._votes.setdefault(k, []).append((chunk.seq, chunk.actions[k - chunk.k0]))
                self._src[k] = chunk.seq
            return dropped
        old = self._future
        self._future = {k: v for k, v in old.items() if k < chunk.k0 + start}  # keep nothing we overwrite
        for i, k in enumerate(ks):
            a = chunk.actions[k - chunk.k0]
            if self.mode == "rtc" and chunk.prefix_used == 0 and i < self.blend_steps:
                prev = old.get(k, self._last_committed())
                if prev is not None:
                    w = 1.0 - (i + 1) / (self.blend_steps + 1)  # old weight decays linearly to 0
                    a = w * prev + (1.0 - w) * a
            self._future[k] = a
            self._src[k] = chunk.seq
        return dropped

    def _last_committed(self) -> np.ndarray | None:
        if not self.committed:
            return None
        return self.committed[max(self.committed)][0]

    # ---- actions out -------------------------------------------------------------------------
    def _value(self, k: int) -> np.ndarray | None:
        if self.mode == "ensemble":
            votes = self._votes.get(k)
            if not votes:
                return None
            votes.sort(key=lambda sv: sv[0])  # oldest first
            w = np.exp(-self.ensemble_k * np.arange(len(votes)))
            return np.einsum("n,nd->d", w / w.sum(), np.stack([v for _, v in votes]))
        return self._future.get(k)

    def commit(self, k: int) -> np.ndarray | None:
        """Freeze slot k (called when it starts executing) and return its action."""
        if k in self.committed:
            return self.committed[k][0]
        a = self._value(k)
        if a is None:
            return None
        self.committed[k] = (a, self._src.get(k, -1))
        self.history.append((k, a, self._src.get(k, -1)))
        if len(self.history) > self._history_max:
            del self.history[: len(self.history) // 2]
        for store in (self._future, self._votes, self._src):
            store.pop(k, None)
        for old in [s for s in self.committed if s < k - 4]:
            del self.committed[old]
        return a

    def action_at(self, now: float, interpolate: bool = False) -> tuple[np.ndarray | None, int]:
        """(action for time `now`, its slot). None when nothing is scheduled (-> hold).

        Piecewise constant by default (delta actions apply for one slot); with
        `interpolate`, linear between this slot's and the next slot's action
        (absolute joint targets), falling back to constant at the schedule's end.
        """
        if self.t_ref is None:
            return None, 0
        k = self.slot_of(now)
        a = self.commit(k)
        if a is None or not interpolate:
            return a, k
        nxt = self._value(k + 1)
        if nxt is None:
            return a, k
        frac = (now - self.slot_time(k)) / self.dt
        return a + frac * (nxt - a), k

    def planned(self, k: int) -> int:
        """Scheduled, not yet committed actions at slots k and later."""
        store = self._votes if self.mode == "ensemble" else self._future
        return sum(1 for s in store if s >= k)

    def wants_chunk(self, k: int, horizon: int, n_action_steps: int) -> bool:
        """The one rule for when to ask for a new chunk, for sim eval and the daemon alike: at every
        slot in ensemble mode; otherwise once at most ``horizon - n_action_steps`` actions are planned
        from slot k on, so ``n_action_steps`` of each chunk execute."""
        return self.mode == "ensemble" or self.planned(k) <= horizon - n_action_steps

    def remaining(self, now: float) -> int:
        """Scheduled actions at slots starting after `now`."""
        if self.t_ref is None:
            return 0
        k = self.slot_of(now)
        store = self._votes if self.mode == "ensemble" else self._future
        return sum(1 for s in store if s > k)

    def prefix(self, k_start: int, n: int) -> np.ndarray | None:
        """Actions the schedule will execute at slots k_start .. k_start+n-1 (as far as known), (P, D)."""
        out = []
        for k in range(k_start, k_start + n):
            a = self.committed[k][0] if k in self.committed else self._value(k)
            if a is None:
                break
            out.append(a)
        return np.stack(out) if out else None

    def clear(self) -> None:
        """Forget every future action (after a hold/stop the old plan is stale)."""
        self._future.clear()
        self._votes.clear()
        self._src.clear()


def boundary_jumps(history: list[tuple[int, np.ndarray, int]]) -> dict:
    """Largest action change between consecutive slots where the source chunk switches, and within chunks."""
    at_boundary, within = [], []
    for (k0, a0, s0), (k1, a1, s1) in zip(history, history[1:]):
        if k1 != k0 + 1:
            continue
        d = float(np.max(np.abs(a1 - a0)))
        (at_boundary if s1 != s0 else within).append(d)
    return {
        "boundary_max": max(at_boundary, default=0.0),
        "boundary_mean": float(np.mean(at_boundary)) if at_boundary else 0.0,
        "within_max": max(within, default=0.0),
        "within_mean": float(np.mean(within)) if within else 0.0,
        "n_boundaries": len(at_boundary),
        "n_within": len(within),
    }

"""Training windows over an episode store.

One window per time step t of the selected episodes:

    obs      steps t-To+1 .. t+Tf     (before the episode start: the first frame repeated;
                                       Tf = obs_future, 0 for policies; past the end: the last)
    action   steps t .. t+Ta-1        (past the episode end: the last action repeated,
                                       flagged in `action_is_pad`)

Per-step labels named in `mask_keys` (e.g. `extraneous`) come along over the action
window as `masks`; the one named `step_weight_key` (e.g. EIL's `keep`) is the per-step
loss weight `step_weight` (0 removes a step, the rest of a chunk after it, and every window
that observes it from the loss: a chunk never jumps across removed steps), a per-episode weight
(OOD-IL's transferability) is `weight`, and per-episode metadata
named in `meta_fields` (e.g. `instruction` for language goals) as `meta`. With
`subgoal_keys`, `subgoal` holds those low-dim keys' values at the next key state (the
first step >= t flagged in the bool label `subgoal_label`, e.g. InfoCon's `key_state`;
an episode's last step always counts as one): the sub-goal a CoTPC-style head predicts.
With a `goal` config (robolearn/goal.py), `goal` holds each window's episode goal: the
instruction from episode metadata (absent where empty), the episode's final frame of each
goal camera and the final values of each goal-state key, with per-sample presence flags.

Low-dim keys are always held in RAM (they are small and reading a few rows from a
compressed chunk costs far more than they do); camera frames are read from the store
per batch (`EpisodeStore.read_frames`) unless `in_ram=True`. Each DataLoader worker opens its own handle on the
store, so `num_workers > 0` works with any store backend.
"""

from __future__ import annotations

import os
from typing import Any, Sequence

import numpy as np

from robolearn.datasets.store import EpisodeStore, is_image_array
from robolearn.errors import UserError
from robolearn.goal import GoalConfig


class WindowDataset:
    """A map-style dataset (works with `torch.utils.data.DataLoader`) of obs/action windows."""

    def __init__(
        self,
        store: EpisodeStore | str | os.PathLike,
        obs_keys: Sequence[str],
        action_key: str | None = "action",  # None: no action window (action-free pretraining)
        obs_horizon: int = 2,
        action_horizon: int = 16,
        episodes: Sequence[int] | None = None,
        in_ram: bool = False,
        mask_keys: Sequence[str] = (),
        weights: str | np.ndarray | Sequence[float] | None = None,
        meta_fields: Sequence[str] = (),
        obs_future: int = 0,
        subgoal_keys: Sequence[str] = (),
        subgoal_label: str = "key_state",
        step_weight_key: str | None = None,
        goal: GoalConfig | None = None,
        future_keys: Sequence[str] = (),
        future_steps: int = 0,
    ):
        """``obs_future`` > 0 appends that many future observation steps (pretraining objectives that
        predict o_{t+1..t+Tf}); ``obs_is_pad`` then flags the steps repeated past the episode end.
        ``future_keys`` with ``future_steps`` = k adds ``future`` {key: frame t+k} (the episode's last
        frame past its end): what a head predicts ahead (MDT's foresight)."""
        if obs_horizon < 1 or action_horizon < 1 or obs_future < 0:
            raise UserError(f"obs_horizon and action_horizon must be >= 1 and obs_future >= 0, "
                            f"got {obs_horizon}, {action_horizon}, {obs_future}")
        self._store = store if isinstance(store, EpisodeStore) else EpisodeStore.open(store)
        self._path = self._store.path
        self._pid = os.getpid()
        self.obs_keys = list(obs_keys)
        self.action_key = action_key
        self.obs_horizon = obs_horizon
        self.action_horizon = action_horizon
        self.obs_future = obs_future
        self.mask_keys = list(mask_keys)
        self.meta_fields = list(meta_fields)
        self.future_keys, self.future_steps = list(future_keys), int(future_steps)
        if self.future_keys and self.future_steps < 1:
            raise UserError(f"future_steps: expected >= 1 with future_keys {self.future_keys}, got {future_steps}")

        s = self._store
        self.subgoal_keys = list(subgoal_keys)
        self.step_weight_key = step_weight_key or None
        self._step_keys = [*self.obs_keys, *([action_key] if action_key else []), *self.mask_keys,
                           *([self.step_weight_key] if self.step_weight_key else [])]
        for key in [*self._step_keys, *self.future_keys, *self.subgoal_keys, *([subgoal_label] if self.subgoal_keys else [])]:
            if key not in s.keys:
                raise UserError(f"{self._path}: no data key {key!r} (store has {', '.join(s.keys) or 'none'})")
        self.episodes = np.arange(s.n_episodes) if episodes is None else np.asarray(episodes, dtype=np.int64)
        if len(self.episodes) and (self.episodes.min() < 0 or self.episodes.max() >= s.n_episodes):
            raise UserError(f"{self._path}: episode indices must lie in [0, {s.n_episodes})")

        # index: one entry per window -> (global step t, episode start, episode end, episode id)
        ends = s.episode_ends
        starts = np.concatenate([[0], ends[:-1]])
        rows = [
            np.stack([np.arange(starts[e], ends[e]), np.full(ends[e] - starts[e], starts[e]),
                      np.full(ends[e] - starts[e], ends[e]), np.full(ends[e] - starts[e], e)], axis=1)
            for e in self.episodes
        ]
        self._index = np.concatenate(rows).astype(np.int64) if rows else np.zeros((0, 4), np.int64)

        self._weights = self._resolve_weights(weights)
        self._meta = {f: s.meta_column(f) for f in self.meta_fields}
        self._image_keys = [k for k in self.obs_keys if is_image_array(s.array(k))]
        self._subgoal = self._next_key_values(subgoal_label) if self.subgoal_keys else {}
        self._goals = self._episode_goals(goal) if goal is not None and goal.enabled else None
        self._ram: dict[str, np.ndarray] = {}
        for key in self._step_keys:
            if key not in self._image_keys or in_ram:
                self._ram[key] = s.get(key)
        if self.step_weight_key:
            w = self._ram[self.step_weight_key]
            if w.ndim != 1 or not np.all(np.isfinite(w.astype(np.float64))) or np.any(w < 0):
                raise UserError(f"{self._path}: step-weight label {self.step_weight_key!r} must be one finite "
                                f"weight >= 0 per step, got shape {w.shape}")

    def _resolve_weights(self, weights) -> np.ndarray:
        n = self._store.n_episodes
        if weights is None:
            return np.ones(n, dtype=np.float32)
        w = self._store.meta_column(weights) if isinstance(weights, str) else np.asarray(weights)
        if w.shape != (n,):
            raise UserError(f"{self._path}: per-episode weights must have shape ({n},), got {w.shape}")
        w = w.astype(np.float32)
        if not np.all(np.isfinite(w)) or np.any(w < 0):
            raise UserError(f"{self._path}: per-episode weights must be finite and >= 0")
        return w

    def _episode_goals(self, cfg: GoalConfig) -> dict[str, Any]:
        """Per-episode goal parts, held in RAM: instructions, final frames of the goal cameras, final goal-state values."""
        s = self._store
        last = s.episode_ends - 1  # global index of each episode's final step
        goals: dict[str, Any] = {}
        if "language" in cfg.modalities:
            if cfg.instruction_field not in s.meta_fields:
                raise UserError(f"{self._path}: no episode meta field {cfg.instruction_field!r} for language goals "
                                f"(store has {', '.join(s.meta_fields) or 'none'})")
            goals["instruction"] = [str(x) for x in s.meta_column(cfg.instruction_field)]
        for part, keys, want_image in (("image", cfg.image_keys, True), ("state", cfg.state_keys, False)):
            if part not in cfg.modalities:
                continue
            goals[part] = {}
            for key in keys:
                if key not in s.keys:
                    raise UserError(f"{self._path}: no data key {key!r} for goal {part}s (store has {', '.join(s.keys)})")
                if is_image_array(s.array(key)) != want_image:
                    raise UserError(f"{self._path}: goal {part} key {key!r} is {'not ' if want_image else ''}a camera")
                goals[part][key] = s.read_frames(key, last) if want_image else s.get(key)[last].astype(np.float32)
        return goals

    def _next_key_values(self, label: str) -> dict[str, np.ndarray]:
        """{key: (n_steps, ...)}: each step's value of ``key`` at the first key state at or after it."""
        s = self._store
        if s.array(label).ndim != 1:
            raise UserError(f"{self._path}: sub-goal label {label!r} must be one flag per step, got shape {s.array(label).shape}")
        is_key = s.get(label).astype(bool)
        is_key[s.episode_ends - 1] = True  # an episode's end is always a key state
        steps = np.arange(len(is_key))
        # next key index: the minimum over later flagged steps, scanned from the end (never crosses
        # an episode, since every episode's last step is flagged)
        nxt = np.minimum.accumulate(np.where(is_key, steps, len(is_key))[::-1])[::-1]
        out = {}
        for key in self.subgoal_keys:
            if is_image_array(s.array(key)):
                raise UserError(f"{self._path}: sub-goal key {key!r} is a camera; sub-goals are low-dim keys")
            out[key] = s.get(key)[nxt].astype(np.float32)
        return out

    def _goal(self, ep: int) -> dict[str, Any]:
        g = self._goals
        out: dict[str, Any] = {"present": {}}
        if "instruction" in g:
            out["instruction"] = g["instruction"][ep]
            out["present"]["language"] = np.bool_(bool(g["instruction"][ep]))
        for part, name in (("image", "image"), ("state", "state")):
            if part in g:
                out[part] = {k: v[ep] for k, v in g[part].items()}
                out["present"][name] = np.bool_(True)
        return out

    @property
    def store(self) -> EpisodeStore:
        """This process's handle on the store (re-opened after a fork into a worker)."""
        if os.getpid() != self._pid:
            self._store = EpisodeStore.open(self._path)
            self._pid = os.getpid()
        return self._store

    def __len__(self) -> int:
        return len(self._index)

    def _rows(self, key: str, idx: np.ndarray) -> np.ndarray:
        if key in self._ram:
            return self._ram[key][idx]
        return self.store.read_frames(key, idx)  # each frame once (repeats at the edges are copies)

    def _window_indices(self, i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, int, int]:
        t, start, end, ep = self._index[i].tolist()
        obs_idx = np.minimum(np.maximum(self._obs_offsets + t, start), end - 1)
        act_range = self._act_offsets + t
        return obs_idx, act_range, np.minimum(act_range, end - 1), ep, t - start

    @property
    def _obs_offsets(self) -> np.ndarray:
        return np.arange(-self.obs_horizon + 1, self.obs_future + 1)

    @property
    def _act_offsets(self) -> np.ndarray:
        return np.arange(self.action_horizon)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return self._window(i, {}, {})

    def __getitems__(self, indices: Sequence[int]) -> list[dict[str, Any]]:
        """A whole batch at once (DataLoader calls this): one store read per camera, not one per window.

        Every frame the batch needs is read once by `EpisodeStore.read_frames` (on a format-2
        store straight from the shard files: byte range, checksum, decode; no zarr per chunk) and
        gathered into (batch, steps, ...) in one step; each window gets its slice.
        """
        indices = np.asarray(indices, dtype=np.int64).reshape(-1)
        obs_lazy = [k for k in self.obs_keys if k not in self._ram]
        future_lazy = [k for k in self.future_keys if k not in self._ram]
        t, start, end = (self._index[indices, c] for c in range(3))
        obs_rows = np.minimum(np.maximum(t[:, None] + self._obs_offsets, start[:, None]), end[:, None] - 1)
        future_rows = np.minimum(t + self.future_steps, end - 1)[:, None]
        obs: dict[str, np.ndarray] = {}
        future: dict[str, np.ndarray] = {}
        for key in dict.fromkeys([*obs_lazy, *future_lazy]):
            rows = np.concatenate(([obs_rows] if key in obs_lazy else []) + ([future_rows] if key in future_lazy else []), axis=1)
            needed, where = np.unique(rows, return_inverse=True)
            got = self.store.read_frames(key, needed)[where.reshape(rows.shape)]  # (batch, steps, ...)
            if key in obs_lazy:
                obs[key] = got[:, : obs_rows.shape[1]]
            if key in future_lazy:
                future[key] = got[:, -1]
        return [self._window(i, {k: v[b] for k, v in obs.items()}, {k: v[b] for k, v in future.items()})
                for b, i in enumerate(indices.tolist())]

    def _future_index(self, i: int) -> int:
        t, _, end, _ = self._index[i].tolist()
        return min(t + self.future_steps, end - 1)

    def _window(self, i: int, frames: dict[str, np.ndarray], future: dict[str, np.ndarray]) -> dict[str, Any]:
        """Window `i`; `frames` / `future`: its observation steps / future frame of keys already read."""
        obs_idx, act_range, act_idx, ep, t = self._window_indices(i)

        def obs(key: str) -> np.ndarray:
            return frames[key] if key in frames else self._rows(key, obs_idx)

        item = {
            "obs": {k: obs(k) for k in self.obs_keys},
            "masks": {k: self._rows(k, act_idx).astype(np.float32) for k in self.mask_keys},
            "weight": self._weights[ep],
            "meta": {f: col[ep] for f, col in self._meta.items()},
            "episode": np.int64(ep),
            "t": np.int64(t),
        }
        if self.action_key:
            item["action"] = self._rows(self.action_key, act_idx).astype(np.float32)
            item["action_is_pad"] = act_range > act_idx
        if self.step_weight_key:
            w = self._rows(self.step_weight_key, act_idx).astype(np.float32)
            # a weight-0 step cuts the chunk: the steps after it weigh 0 too, so no window teaches a jump
            # across removed steps; a window that observes a removed step (its own or in its history)
            # teaches nothing, so removed steps' observations never reach the loss either
            seen = self._rows(self.step_weight_key, obs_idx[: self.obs_horizon])
            item["step_weight"] = w * (np.cumsum(w == 0) == 0) * np.float32(np.all(seen > 0))
        if self._goals is not None:
            item["goal"] = self._goal(ep)
        g = int(self._index[i, 0])  # global step of t
        if self._subgoal:
            item["subgoal"] = {k: v[g] for k, v in self._subgoal.items()}
        if self.future_keys:
            j = self._future_index(i)
            item["future"] = {k: future[k] if k in future else self._rows(k, np.array([j]))[0] for k in self.future_keys}
        if self.obs_future:  # True where a step past the episode end repeats the last frame
            item["obs_is_pad"] = np.arange(g - self.obs_horizon + 1, g + self.obs_future + 1) > obs_idx
        return item

"""GravMAD's sub-goal machinery: keypose discovery, GravMaps, and the grounders that propose a sub-goal.

GravMAD (Chen et al., ICLR 2025, "GravMAD: Grounded Spatial Value Maps Guided Action Diffusion for
Generalized 3D Manipulation") conditions a 3D keypose-diffusion policy on a *GravMap*: a cost map
over the workspace that is low near the current sub-goal, plus a gripper-openness map. In training
the sub-goals are the demos' keyposes; at run time a grounding module proposes them. This file
holds everything around the sub-goal; the policy head is robolearn/policies/gravmad.py.

Keypose discovery (`discover_keyposes`, the PerAct/Act3D keyframe heuristic). A step k is a keypose
when the gripper command changes (k = the first step with the new command), when the end effector
has been still (speed below ``still_speed`` m/step) for at least ``min_still`` steps and is about to
move again (k = the last still step), and at the episode end. A still keypose closer than
``min_gap`` steps to the previous keypose is dropped (PerAct's "stopped buffer"). Each step's label
is the *next* keypose strictly after it (the last step: itself) -- what the policy moves towards:
``keypose_pos`` (T, 3), ``keypose_quat`` (T, 4, xyzw), ``keypose_open`` (T, 1; 1 = open) and the flag
``keypose`` (T,) uint8. `label_store` writes them into a store with `store.write_labels` (atomic):

    python -m robolearn.policies.gravmap label STORE [--still-speed 0.004 --min-still 4 --min-gap 4]

`phase_match` measures discovered keyposes against the scripted experts' phase ends (`phase`).

GravMap (`gravmap`). The paper builds its maps VoxPoser-style at 100^3 and downsamples them to a
point cloud for a PointNet++. Chosen here for a 2-core CPU: a fixed coarse voxel grid over the
workspace box (``grid`` points, 10 x 10 x 6 by default) plus 32 fixed offsets around the sub-goal
(Gaussian, 3 cm; the first is the sub-goal itself: the map is sampled densely where its cost is low,
as the paper's downsampling keeps the informative region), each point carrying (xyz normalised to
[-1, 1] in the box, cost, gripper): cost = distance to the sub-goal divided by the box's half
diagonal (clipped to 1), so the minimum (0) sits at the sub-goal; gripper = +1 (open)
or -1 (closed) within ``radius`` of the sub-goal, 0 elsewhere. A sub-goal outside the box is refused
with `OutsideWorkspace` (the policy logs it and holds). `GravMapEncoder` is a PointNet (shared MLP +
max-pool) over those points; its token also carries the soft-argmin of the cost (the cost-weighted
mean position, relative to the end effector) and the gripper value there -- an explicit summary the paper's larger encoder learns
implicitly, added so a few minutes of CPU training can read the sub-goal precisely.

Grounders (the `Grounder` protocol: ``ground(obs, instructions) -> SubGoal`` with position (B, 3) in
world metres, open (B,) in [0, 1] and confidence (B,) in [0, 1]):

* ``learned`` (`LearnedGrounder`, trained with the policy on the discovered keyposes): per-point
  scores over the coloured scene points (RGB-XYZ) given the instruction embedding and proprio, a
  softmax-weighted mean of the points' positions (where the instruction points) plus a predicted
  offset, the gripper openness, and a confidence from the instruction embedding alone, trained with
  negatives: instructions naming objects or colours not in the scene (`NEGATIVE_INSTRUCTIONS`). Below
  ``min_confidence`` the policy holds and logs. No web-scale model and no network: the paper's
  GPT-4V Detector -> Planner -> Composer is replaced by this small network.
* ``oracle`` (`OracleGrounder`, an upper bound): the simulator's object poses reach the policy only
  through the observation, so the oracle reads the cube positions from the ``object`` obs key
  (multi_cube: 4 x [pos 3, quat 4] in COLORS order), parses the colours out of the instruction, and
  runs a stateless pick / lift / stack sub-goal rule on them and the gripper state.
* VLM hook: any object with the same ``ground`` method (e.g. one that renders the obs, asks a VLM,
  and returns a SubGoal) can be assigned to ``policy.grounder``; nothing here calls a network.
"""

from __future__ import annotations

import argparse
import logging
import re
import sys
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch
from torch import nn

from robolearn.errors import UserError
from robolearn.nn.language import EMBED_DIM
from robolearn.nn.mlp import mlp

log = logging.getLogger(__name__)

# the multi_cube scene (robolearn/sim/scenes.py): cube colours, the table top, the reachable box
COLORS = ("red", "green", "blue", "yellow")
TABLE_Z = 0.8
WORKSPACE_LOW = (-0.25, -0.3, 0.8)
WORKSPACE_HIGH = (0.2, 0.3, 1.15)
LABEL_KEYS = ("keypose", "keypose_pos", "keypose_quat", "keypose_open")

# instructions that name nothing in the multi_cube scene: the learned grounder's confidence negatives
_OTHER = ("purple", "orange", "pink", "white", "black", "brown", "grey", "cyan")
_THINGS = ("sphere", "bowl", "mug", "banana", "bottle", "drawer", "book", "spoon")
NEGATIVE_INSTRUCTIONS = tuple(
    [f"lift the {c} cube" for c in _OTHER] + [f"pick up the {c} cube" for c in _OTHER[:4]]
    + [f"stack the {c} cube on the {d} cube" for c, d in zip(_OTHER, _OTHER[1:] + _OTHER[:1])]
    + [f"put the {c} cube on top of the {d} cube" for c, d in zip(_OTHER[:4], _OTHER[4:])]
    + [f"lift the {t}" for t in _THINGS] + [f"open the {t}" for t in _THINGS[:4]]
    + ["pour the water", "wipe the table", "close the door", "turn on the light"]
)


# ------------------------------------------------------------------------ keypose discovery
def discover_keyposes(pos: np.ndarray, closed: np.ndarray, still_speed: float = 0.004, min_still: int = 4,
                      min_gap: int = 4) -> list[int]:
    """Keypose step indices of one demo: gripper command changes, ends of still runs, the last step.

    ``pos`` (T, 3) end-effector positions, ``closed`` (T,) bool gripper command (action > 0 closes)."""
    pos, closed = np.asarray(pos, np.float64), np.asarray(closed, bool)
    t_len = len(pos)
    if t_len == 0:
        return []
    keys = {t for t in range(1, t_len) if closed[t] != closed[t - 1]}
    speed = np.linalg.norm(np.diff(pos, axis=0), axis=-1) if t_len > 1 else np.zeros(0)  # speed[t]: t -> t+1
    still = [t for t in range(1, t_len - 1) if speed[t - 1] < still_speed]  # step t arrived with little motion
    run_end = [t for t in still if t + 1 not in still]
    still_set = set(still)
    for end in run_end:
        start = end
        while start - 1 in still_set:
            start -= 1
        if end - start + 1 >= min_still and speed[end] >= still_speed:  # about to move again
            keys.add(end)
    keys.add(t_len - 1)
    out: list[int] = []
    changes = {t for t in range(1, t_len) if closed[t] != closed[t - 1]}
    for k in sorted(keys):
        if out and k - out[-1] < min_gap and k not in changes and k != t_len - 1:
            continue
        out.append(k)
    return out


def keypose_labels(pos: np.ndarray, quat: np.ndarray, closed: np.ndarray, **kw) -> dict[str, np.ndarray]:
    """Per-step labels of one demo: each step's next keypose strictly after it (the last step: itself)."""
    keys = discover_keyposes(pos, closed, **kw)
    t_len = len(pos)
    nxt = np.searchsorted(np.asarray(keys), np.arange(t_len), side="right")  # first keypose > t
    idx = np.asarray(keys)[np.minimum(nxt, len(keys) - 1)]
    flag = np.zeros(t_len, np.uint8)
    flag[keys] = 1
    return {"keypose": flag, "keypose_pos": np.asarray(pos, np.float32)[idx],
            "keypose_quat": np.asarray(quat, np.float32)[idx],
            "keypose_open": (~np.asarray(closed, bool)[idx]).astype(np.float32)[:, None]}


def label_store(path: str, still_speed: float = 0.004, min_still: int = 4, min_gap: int = 4) -> dict:
    """Discover every episode's keyposes and write the per-step labels into the store (atomic)."""
    from robolearn.datasets.store import EpisodeStore

    store = EpisodeStore.open(path, mode="a")
    for key in ("proprio", "action"):
        if key not in store.keys:
            raise UserError(f"{path}: no {key!r} data (keypose discovery reads the eef pose from proprio and the gripper from action)")
    proprio, action = store.get("proprio"), store.get("action")
    parts: dict[str, list] = {k: [] for k in LABEL_KEYS}
    n_keys = []
    for i in range(store.n_episodes):
        sl = store.episode_slice(i)
        lab = keypose_labels(proprio[sl, :3], proprio[sl, 3:7], action[sl, -1] > 0, still_speed=still_speed,
                             min_still=min_still, min_gap=min_gap)
        n_keys.append(int(lab["keypose"].sum()))
        for k in LABEL_KEYS:
            parts[k].append(lab[k])
    store.write_labels({k: np.concatenate(v) for k, v in parts.items()})
    store.update_attrs(keyposes={"still_speed": still_speed, "min_still": min_still, "min_gap": min_gap})
    return {"episodes": store.n_episodes, "mean_keyposes": float(np.mean(n_keys)) if n_keys else 0.0}


def phase_ends(phase: np.ndarray) -> list[int]:
    """The scripted expert's phase boundaries: the first step of each new phase, and the last step."""
    phase = np.asarray(phase)
    return [t for t in range(1, len(phase)) if phase[t] != phase[t - 1]] + [len(phase) - 1]


def phase_match(keys: list[int], ends: list[int], tol: int = 5) -> dict:
    """Greedy one-to-one matching of keyposes to phase ends within ``tol`` steps: matched pairs'
    |timing error|, phase ends with no keypose (missed) and keyposes with no phase end (extra)."""
    pairs = sorted((abs(k - e), k, e) for k in keys for e in ends if abs(k - e) <= tol)
    used_k, used_e, errors = set(), set(), []
    for err, k, e in pairs:
        if k in used_k or e in used_e:
            continue
        used_k.add(k)
        used_e.add(e)
        errors.append(err)
    return {"errors": errors, "missed": len(ends) - len(used_e), "extra": len(keys) - len(used_k),
            "n_ends": len(ends), "n_keys": len(keys)}


# ------------------------------------------------------------------------------- GravMap
class OutsideWorkspace(ValueError):
    """A sub-goal outside the workspace box: refused, never turned into a command."""


def grid_points(low=WORKSPACE_LOW, high=WORKSPACE_HIGH, shape=(10, 10, 6)) -> np.ndarray:
    """(N, 3) voxel centres of a ``shape`` grid over the box."""
    lo, hi = np.asarray(low, np.float64), np.asarray(high, np.float64)
    axes = [lo[i] + (np.arange(n) + 0.5) * (hi[i] - lo[i]) / n for i, n in enumerate(shape)]
    return np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 3).astype(np.float32)


def in_box(pos: torch.Tensor, low, high, margin: float = 1e-6) -> torch.Tensor:
    """(B,) bool: each position inside the box."""
    lo, hi = torch.as_tensor(low, dtype=pos.dtype, device=pos.device), torch.as_tensor(high, dtype=pos.dtype, device=pos.device)
    return ((pos >= lo - margin) & (pos <= hi + margin)).all(-1)


def local_offsets(n: int = 32, sigma: float = 0.03, seed: int = 0) -> np.ndarray:
    """(n, 3) fixed offsets around a sub-goal (the first is zero): where a GravMap is sampled densely."""
    rng = np.random.default_rng(seed)
    out = rng.normal(0.0, sigma, (n, 3))
    out[0] = 0.0
    return out.astype(np.float32)


def gravmap(pos: torch.Tensor, open_: torch.Tensor, grid: torch.Tensor, low, high, radius: float = 0.06,
            check: bool = True, local: torch.Tensor | None = None) -> torch.Tensor:
    """GravMaps of sub-goals ``pos`` (B, 3) world metres, ``open_`` (B,) in [0, 1], sampled at the voxel
    centres ``grid`` (N, 3) and, if given, at ``local`` (K, 3) offsets around each sub-goal (clipped to
    the box): (B, N [+ K], 5) = (xyz normalised to [-1, 1] in the box, cost in [0, 1], gripper in [-1, 1])."""
    lo = torch.as_tensor(low, dtype=grid.dtype, device=grid.device)
    hi = torch.as_tensor(high, dtype=grid.dtype, device=grid.device)
    pos = pos.to(grid)
    if check and not bool(in_box(pos, low, high).all()):
        bad = pos[~in_box(pos, low, high)][0].tolist()
        raise OutsideWorkspace(f"sub-goal {[round(x, 3) for x in bad]} is outside the workspace box {list(low)}..{list(high)}")
    pts = grid[None].expand(pos.shape[0], -1, -1)
    if local is not None:
        pts = torch.cat([pts, torch.minimum(torch.maximum(pos[:, None] + local.to(grid)[None], lo), hi)], dim=1)
    half_diag = float(torch.linalg.norm(hi - lo)) / 2
    d = torch.linalg.norm(pts - pos[:, None], dim=-1)  # (B, P)
    cost = (d / half_diag).clamp(max=1.0)
    grip = torch.where(d < radius, 2 * open_.to(grid)[:, None] - 1, torch.zeros_like(d))
    xyz = 2 * (pts - lo) / (hi - lo) - 1
    return torch.cat([xyz, cost[..., None], grip[..., None]], dim=-1)


class PointNet(nn.Module):
    """Shared per-point MLP + max-pool: (B, N, C) -> (B, out)."""

    def __init__(self, in_dim: int, out_dim: int, hidden: int = 64):
        super().__init__()
        self.point = mlp(in_dim, [hidden, 2 * hidden], None)
        self.out = nn.Linear(2 * hidden, out_dim)

    def forward(self, pts: torch.Tensor) -> torch.Tensor:
        return self.out(self.point(pts).max(dim=1).values)


class GravMapEncoder(nn.Module):
    """GravMap points (B, N, 5) -> token (B, out_dim): PointNet + [soft-argmin xyz relative to
    ``origin`` (the end effector, box-normalised), gripper value there]."""

    def __init__(self, out_dim: int = 64, temperature: float = 0.02):
        super().__init__()
        self.pointnet = PointNet(5, out_dim - 4)
        self.temperature = temperature
        self.out_dim = out_dim

    def forward(self, gmap: torch.Tensor, origin: torch.Tensor | None = None) -> torch.Tensor:
        w = torch.softmax(-gmap[..., 3] / self.temperature, dim=-1)[..., None]  # (B, N, 1)
        summary = (w * gmap[..., [0, 1, 2, 4]]).sum(1)  # (B, 4)
        if origin is not None:
            summary = torch.cat([summary[:, :3] - origin, summary[:, 3:]], dim=-1)
        return torch.cat([self.pointnet(gmap), summary], dim=-1)


# ------------------------------------------------------------------------------- grounders
@dataclass
class SubGoal:
    pos: torch.Tensor  # (B, 3) world metres
    open: torch.Tensor  # (B,) 1 = open
    confidence: torch.Tensor  # (B,) in [0, 1]


class Grounder(Protocol):
    """Proposes the current sub-goal. ``obs``: the policy's raw last observation {key: (B, ...)} plus
    ``scene`` (B, N, 6) RGB-XYZ points in the box and ``proprio`` (B, 9) raw; ``instructions``: (B,) strings."""

    def ground(self, obs: dict[str, torch.Tensor], instructions: list[str]) -> SubGoal: ...


def parse_colors(instruction: str) -> list[str]:
    """The cube colours an instruction names, in order of mention."""
    found = [(m.start(), c) for c in COLORS for m in re.finditer(rf"\b{c}\b", instruction.lower())]
    return [c for _, c in sorted(found)]


class OracleGrounder:
    """Sub-goals from the true cube positions (the ``object`` obs key) and the instruction's colours.
    An upper bound: it sees privileged state. Instructions naming no cube get confidence 0.

    The rule (stateless, from the observation): until the named cube is held, the sub-goal is the
    cube's centre with the gripper closed (the policy's controller approaches from above and closes
    only once there, as the demos' first keypose is the grasp); held and lifting: 15 cm above the
    table; held and stacking: the bottom cube + 4.6 cm (keeping the grasp offset); the top cube
    resting on the bottom one: open in place, then back off upwards."""

    lift_z, place_gap = 0.15, 0.046
    held_gap = (0.03, 0.045)  # finger gap (m) of a gripper closed on a 4 cm cube
    open_gap = 0.075  # finger gap of a fully open gripper

    def __init__(self, object_key: str = "object"):
        self.object_key = object_key

    def ground(self, obs: dict[str, torch.Tensor], instructions: list[str]) -> SubGoal:
        if self.object_key not in obs:
            raise UserError(f"grounder 'oracle': needs the {self.object_key!r} observation (cube poses); "
                            f"the policy's obs_keys must include it")
        objs = torch.as_tensor(obs[self.object_key]).float().reshape(len(instructions), len(COLORS), 7)
        proprio = torch.as_tensor(obs["proprio"]).float()
        pos, opn, conf = [], [], []
        for i, text in enumerate(instructions):
            colors = parse_colors(text or "")
            if not colors:
                pos.append(proprio[i, :3].clone())
                opn.append(1.0)
                conf.append(0.0)
                continue
            cubes = {c: objs[i, j, :3] for j, c in enumerate(COLORS)}
            p, o = self.rule(proprio[i], cubes[colors[0]], cubes[colors[1]] if len(colors) > 1 else None)
            pos.append(p)
            opn.append(o)
            conf.append(1.0)
        return SubGoal(torch.stack(pos), torch.tensor(opn), torch.tensor(conf))

    def rule(self, proprio: torch.Tensor, a: torch.Tensor, b: torch.Tensor | None) -> tuple[torch.Tensor, float]:
        eef, gap = proprio[:3], float(proprio[7] - proprio[8])
        if b is not None:
            dz = float(a[2] - b[2])
            if float(torch.linalg.norm(a[:2] - b[:2])) < 0.02 and 0.03 < dz < 0.05:  # a rests on b
                return (eef + torch.tensor([0.0, 0.0, 0.08])) if gap > self.open_gap else eef.clone(), 1.0
        held = float(torch.linalg.norm(eef - a)) < 0.02 and self.held_gap[0] < gap < self.held_gap[1]
        if not held:
            return a.clone(), 0.0
        if b is None:
            return torch.stack([a[0], a[1], torch.tensor(TABLE_Z + self.lift_z)]), 0.0
        return b + torch.tensor([0.0, 0.0, self.place_gap]) + (eef - a), 0.0


class LearnedGrounder(nn.Module):
    """Instruction embedding + coloured scene points + proprio -> sub-goal and confidence."""

    def __init__(self, proprio_dim: int, low, high, dim: int = 64):
        super().__init__()
        self.register_buffer("low", torch.tensor(low, dtype=torch.float32), persistent=False)
        self.register_buffer("high", torch.tensor(high, dtype=torch.float32), persistent=False)
        self.instr = nn.Linear(EMBED_DIM, dim)
        self.proprio = nn.Linear(proprio_dim, dim)
        self.point = mlp(6, [dim], dim)
        self.score = mlp(3 * dim, [dim], 1)
        self.head = mlp(4 * dim + 3, [2 * dim, dim], 4)  # offset (3, normalised), open logit
        self.conf = mlp(EMBED_DIM, [dim], 1)

    def forward(self, scene: torch.Tensor, proprio_n: torch.Tensor, emb: torch.Tensor) -> dict[str, torch.Tensor]:
        """scene (B, N, 6) RGB in [0, 1] + xyz normalised to the box; proprio_n (B, Dp) normalised;
        emb (B, 384) -> pos_n (B, 3) normalised to the box, open_logit (B,), conf_logit (B,)."""
        fi, fp = self.instr(emb), self.proprio(proprio_n)
        pts = self.point(scene)  # (B, N, d)
        ctx = torch.cat([fi, fp], -1)[:, None].expand(-1, pts.shape[1], -1)
        w = torch.softmax(self.score(torch.cat([pts, ctx], -1))[..., 0], dim=-1)  # (B, N)
        loc = (w[..., None] * scene[..., 3:]).sum(1)  # (B, 3) normalised
        out = self.head(torch.cat([fi, fp, pts.max(1).values, (w[..., None] * pts).sum(1), loc], -1))
        return {"pos_n": loc + out[:, :3], "open_logit": out[:, 3], "conf_logit": self.conf(emb)[:, 0]}


# ------------------------------------------------------------------------------------ CLI
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m robolearn.policies.gravmap",
                                description="Write GravMAD keypose labels (keypose, keypose_pos/quat/open) into a store.")
    sub = p.add_subparsers(dest="cmd", required=True)
    lab = sub.add_parser("label", help="discover keyposes in every episode and write the per-step labels")
    lab.add_argument("store")
    lab.add_argument("--still-speed", type=float, default=0.004)
    lab.add_argument("--min-still", type=int, default=4)
    lab.add_argument("--min-gap", type=int, default=4)
    args = p.parse_args(argv)
    try:
        out = label_store(args.store, args.still_speed, args.min_still, args.min_gap)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())

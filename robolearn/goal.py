"""The goal contract: what a policy is asked to achieve, carried one way from the store to the arm.

A goal has up to three modalities, each optional and each flagged per sample:

    language  an instruction string; the policy embeds it with its own (frozen) text encoder
    image     a goal image per camera: uint8 (H, W, C), keyed by the camera's obs key
              (e.g. "agentview_image"), the same size as that camera's observations
    state     goal low-dim values, keyed by obs key (e.g. "object"): float (D,)

In a batch (the sampler's collated windows, and what every head's ``predict_action_chunk``
receives) a goal is the plain dict ``GoalBatch``:

    {"instruction": list[str] (B,)            "" where a sample has none
     "image":  {camera key: uint8 (B, H, W, C)}
     "state":  {key: float (B, D)}
     "present": {"language": bool (B,), "image": bool (B,), "state": bool (B,)}}

Only modalities the policy was trained with appear. ``Goal`` is the one-episode form that
``robolearn eval --goal``, ``robolearn serve --instruction/--goal-image`` and the remote wire
format build; ``Goal.batch()`` turns it into a B=1 ``GoalBatch``. A policy's config lists the
modalities it was trained with (``policy.goal.modalities``); ``check_goal`` refuses anything else
with one line, so a goal can never be silently ignored.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from robolearn.errors import UserError

MODALITIES = ("language", "image", "state")


@dataclass
class GoalConfig:
    """Which goal modalities a policy is conditioned on, and where the sampler finds them."""

    modalities: list[str] = field(default_factory=list)  # subset of MODALITIES; [] = no goal
    instruction_field: str = "instruction"  # episode meta field holding the instruction
    image_keys: list[str] = field(default_factory=list)  # cameras whose final frame is the goal image
    state_keys: list[str] = field(default_factory=list)  # low-dim keys whose final value is the goal state
    image_shapes: dict[str, list[int]] = field(default_factory=dict)  # filled from the store: (H, W, C)
    state_dims: dict[str, int] = field(default_factory=dict)  # filled from the store
    dropout: float = 0.0  # training only: drop each present modality of a sample with this probability

    def validate(self, where: str = "policy.goal") -> None:
        for m in self.modalities:
            if m not in MODALITIES:
                raise UserError(f"{where}.modalities: unknown modality {m!r} (expected some of {list(MODALITIES)})")
        if "image" in self.modalities and not self.image_keys:
            raise UserError(f"{where}.image_keys: image goals need at least one camera key")
        if "state" in self.modalities and not self.state_keys:
            raise UserError(f"{where}.state_keys: state goals need at least one low-dim key")
        if not 0.0 <= self.dropout < 1.0:
            raise UserError(f"{where}.dropout: expected 0 <= dropout < 1, got {self.dropout}")

    @property
    def enabled(self) -> bool:
        return bool(self.modalities)


@dataclass
class Goal:
    """One episode's goal. Any part may be left out."""

    instruction: str | None = None
    images: dict[str, np.ndarray] = field(default_factory=dict)  # camera key -> uint8 (H, W, C)
    state: dict[str, np.ndarray] = field(default_factory=dict)  # key -> float (D,)

    @property
    def modalities(self) -> list[str]:
        out = []
        if self.instruction:
            out.append("language")
        if self.images:
            out.append("image")
        if self.state:
            out.append("state")
        return out

    def same_as(self, other: "Goal | None") -> bool:
        """The same goal: this object, or an equal instruction, goal images and goal state (a goal that
        crossed the wire is a new object each request, but the same goal)."""
        if other is self:
            return True
        if other is None or self.instruction != other.instruction:
            return False
        return all(a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
                   for a, b in ((self.images, other.images), (self.state, other.state)))

    def batch(self, modalities: list[str] | tuple[str, ...]) -> dict[str, Any]:
        """The B=1 GoalBatch for a policy trained with ``modalities`` (numpy arrays; the policy moves
        them to its device). A modality it was trained with but this goal lacks is flagged absent."""
        out: dict[str, Any] = {"present": {}}
        if "language" in modalities:
            out["instruction"] = [self.instruction or ""]
            out["present"]["language"] = np.array([bool(self.instruction)])
        if "image" in modalities:
            out["image"] = {k: np.asarray(v, dtype=np.uint8)[None] for k, v in self.images.items()}
            out["present"]["image"] = np.array([bool(self.images)])
        if "state" in modalities:
            out["state"] = {k: np.asarray(v, dtype=np.float32).reshape(1, -1) for k, v in self.state.items()}
            out["present"]["state"] = np.array([bool(self.state)])
        return out

    # --- wire form (remote policy server): flat named arrays, no pickle ----------------------
    def to_arrays(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """(JSON-able header fields, {name: array}) for the remote wire format."""
        arrays = {f"goal_image/{k}": np.asarray(v, dtype=np.uint8) for k, v in self.images.items()}
        arrays.update({f"goal_state/{k}": np.asarray(v, dtype=np.float32) for k, v in self.state.items()})
        return {"instruction": self.instruction}, arrays

    @classmethod
    def from_arrays(cls, header: dict[str, Any], arrays: dict[str, np.ndarray]) -> "Goal | None":
        instruction = header.get("instruction")
        if instruction is not None and not isinstance(instruction, str):
            raise ValueError("goal: instruction must be a string")
        images = {k.split("/", 1)[1]: v for k, v in arrays.items() if k.startswith("goal_image/")}
        state = {k.split("/", 1)[1]: v for k, v in arrays.items() if k.startswith("goal_state/")}
        goal = cls(instruction or None, images, state)
        return goal if goal.modalities else None


def check_goal(goal: Goal | None, cfg: GoalConfig, where: str = "goal") -> None:
    """One clear line if ``goal`` asks for a modality the policy was not trained with, or a goal
    image / state of the wrong camera, size or length. A policy with goal modalities accepts
    ``None`` (no goal: every modality flagged absent)."""
    if goal is None:
        return
    trained = cfg.modalities
    for m in goal.modalities:
        if m not in trained:
            have = ", ".join(trained) or "none"
            what = {"language": "an instruction", "image": "a goal image", "state": "a goal state"}[m]
            extra = " (it has no text encoder)" if m == "language" else ""
            raise UserError(f"{where}: {what} was given but this policy was trained without {m} goals{extra}; "
                            f"its goal modalities: {have}")
    if goal.images and sorted(goal.images) != sorted(cfg.image_keys):
        raise UserError(f"{where}: goal images for {sorted(goal.images)}, the policy takes one for each of {cfg.image_keys}")
    if goal.state and sorted(goal.state) != sorted(cfg.state_keys):
        raise UserError(f"{where}: goal state for {sorted(goal.state)}, the policy takes {cfg.state_keys}")
    for key, img in goal.images.items():
        if key not in cfg.image_keys:
            raise UserError(f"{where}: goal image for camera {key!r}, the policy takes goal images for {cfg.image_keys}")
        want = cfg.image_shapes.get(key)
        arr = np.asarray(img)
        if arr.dtype != np.uint8 or (want and list(arr.shape) != list(want)):
            raise UserError(f"{where}: goal image {key!r} is {arr.dtype} {list(arr.shape)}, "
                            f"the policy expects uint8 {want} (H, W, C)")
    for key, val in goal.state.items():
        if key not in cfg.state_keys:
            raise UserError(f"{where}: goal state {key!r}, the policy takes goal state for {cfg.state_keys}")
        want = cfg.state_dims.get(key)
        if want and np.asarray(val).size != want:
            raise UserError(f"{where}: goal state {key!r} has {np.asarray(val).size} values, the policy expects {want}")


def read_goal_image(path: str, key: str) -> np.ndarray:
    """A PNG/JPEG file -> uint8 (H, W, 3) for camera ``key``; one-line error if unreadable."""
    try:
        import imageio.v2 as imageio

        img = np.asarray(imageio.imread(path))
    except (OSError, ValueError) as exc:
        raise UserError(f"--goal-image {path}: cannot read image ({exc})") from None
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=-1)
    if img.ndim != 3 or img.shape[-1] not in (3, 4):
        raise UserError(f"--goal-image {path}: expected an RGB image, got shape {img.shape}")
    return np.ascontiguousarray(img[..., :3].astype(np.uint8))

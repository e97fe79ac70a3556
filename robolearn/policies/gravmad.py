"""GravMAD: keypose diffusion guided by a GravMap of the current sub-goal (Chen et al., ICLR 2025).

The head denoises the *next keypose* of the end effector -- position (as a delta from the current
one, scaled by ``delta_scale``), rotation (the 6-D representation: the first two columns of the
rotation matrix) and gripper openness -- with a DDPM (training) / DDIM (acting) scheduler from
diffusers, as robolearn/policies/diffusion.py does. The denoiser is an MLP over [noisy keypose,
step embedding, conditioning]; the conditioning concatenates

    scene token      PointNet over ``n_points`` RGB-XYZ points of the camera's world-frame point
                     cloud inside the workspace box, above the table (sampled at random in
                     training, with a fixed generator when acting)
    proprio          the normalised ``proprio`` (eef pos, quat, gripper qpos)
    instruction      the goal contract's language feature (robolearn/goal.py: frozen MiniLM)
    GravMap token    robolearn/policies/gravmap.py: the cost / gripper map of the sub-goal over a
                     voxel grid of the box, encoded by a PointNet (+ its soft-argmin)

In training the GravMap is built from the demo's discovered next keypose (teacher forcing, as the
paper trains on keypose-derived GravMaps) and the learned grounder is trained alongside on the same
labels; when acting the sub-goal comes from the grounder (``grounder = "learned"`` or ``"oracle"``).
``use_gravmap = false`` removes the token and the grounder: the 3D Diffuser Actor-style ablation.

Acting goes through the ordinary contract: ``predict_action_chunk`` returns ``horizon`` OSC_POSE
actions that move from the current pose to the predicted keypose. Chosen here (the paper hands
keyposes to a motion planner): a proportional controller rolled out open-loop over the chunk, with
the assumed per-step tracking ``track`` of the OSC (0.4: measured from the experts' demos), position
steps capped at ``max_step`` and rotation steps at 0.5 (the experts' limits, so never outside the
action box); far from the keypose in x-y it first rises to ``hover`` above the keypose's height and
travels level (no sweeping through other cubes); the gripper switches to the keypose's openness only
once the end effector is within ``reach_tol`` of the keypose, otherwise it keeps its last command
(reset to open at each episode). The predicted keypose is clipped to the workspace box. A grounded
sub-goal with confidence below ``min_confidence``, or more than ``box_margin`` outside the box, is refused: that sample's
chunk holds (zero motion, gripper unchanged) and the refusal is logged.

Keypose labels come from `python -m robolearn.policies.gravmap label STORE` and reach the batch
through ``data.mask_keys = ["keypose_pos", "keypose_quat", "keypose_open"]`` (the label at each
window's first step); observation horizon 1 (the paper's keypose policies see the current frame).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import DDIMScheduler, DDPMScheduler
from torch import nn

from robolearn.errors import UserError
from robolearn.goal import Goal, GoalConfig
from robolearn.nn.goal_encoder import embed_instructions
from robolearn.nn.mlp import SinusoidalPosEmb, mlp
from robolearn.policies.base import Policy, PolicyConfig, register_policy
from robolearn.policies.gravmap import (NEGATIVE_INSTRUCTIONS, TABLE_Z, WORKSPACE_HIGH, WORKSPACE_LOW, GravMapEncoder,
                                        local_offsets,
                                        LearnedGrounder, OracleGrounder, PointNet, SubGoal, gravmap, grid_points, in_box)

log = logging.getLogger(__name__)
POS_SCALE, ROT_SCALE, MAX_ROT = 0.05, 0.5, 0.5  # OSC_POSE output_max (m, rad per unit action), the experts' rotation cap
LABELS = ("keypose_pos", "keypose_quat", "keypose_open")


@dataclass
class GravMADConfig(PolicyConfig):
    method: str = "gravmad"
    obs_keys: list[str] = field(default_factory=lambda: ["proprio", "object", "agentview_image", "agentview_pointcloud"])
    image_keys: list[str] = field(default_factory=lambda: ["agentview_image"])  # uint8 cameras (the store fills it)
    obs_horizon: int = 1
    horizon: int = 16
    n_action_steps: int = 8
    goal: GoalConfig = field(default_factory=lambda: GoalConfig(modalities=["language"]))
    proprio_key: str = "proprio"  # eef pos (3), eef quat xyzw (4), gripper qpos (2)
    pointcloud_key: str = "agentview_pointcloud"  # world-frame XYZ per pixel (H, W, 3)
    rgb_key: str = "agentview_image"  # the same camera's colours (H, W, 3) uint8
    object_key: str = "object"  # cube poses, read by the oracle grounder only
    n_points: int = 256
    workspace_low: list[float] = field(default_factory=lambda: list(WORKSPACE_LOW))
    workspace_high: list[float] = field(default_factory=lambda: list(WORKSPACE_HIGH))
    grid_shape: list[int] = field(default_factory=lambda: [10, 10, 6])
    gravmap_radius: float = 0.06
    gravmap_local: int = 32  # GravMap samples around the sub-goal (on top of the grid)
    use_gravmap: bool = True  # false: no GravMap token, no grounder (3D Diffuser Actor-style ablation)
    grounder: str = "learned"  # learned | oracle (when acting; the learned grounder is always trained)
    min_confidence: float = 0.5
    box_margin: float = 0.02  # a sub-goal this close outside the box is clipped into it; farther out it is refused
    grounder_coef: float = 1.0
    hidden: int = 256
    token_dim: int = 64
    num_train_timesteps: int = 100
    num_inference_steps: int = 10
    beta_schedule: str = "squaredcos_cap_v2"
    prediction_type: str = "sample"  # the denoiser predicts the clean keypose (converges in fewer CPU steps than epsilon)
    delta_scale: float = 0.3  # keypose position delta (m) that maps to 1
    track: float = 0.4  # assumed fraction of a commanded OSC step the arm achieves per step
    gain: float = 1.0
    max_step: float = 1.0  # cap on |position action| per step
    hover: float = 0.06
    reach_tol: float = 0.012
    xy_tol: float = 0.02

    def validate(self, where: str = "policy") -> None:
        super().validate(where)
        what = {"proprio_key": "the proprio", "pointcloud_key": "a world-frame point cloud", "rgb_key": "the camera's RGB"}
        for name in ("proprio_key", "pointcloud_key", "rgb_key"):
            if getattr(self, name) not in self.obs_keys:
                extra = " (collect with --pointcloud, e.g. datasets/multi_cube_pointcloud.toml)" if name == "pointcloud_key" else ""
                raise UserError(f"{where}.obs_keys: GravMAD needs {what[name]} ({name} = {getattr(self, name)!r}) "
                                f"among obs_keys{extra}")
        if self.grounder not in ("learned", "oracle"):
            raise UserError(f"{where}.grounder: expected 'learned' or 'oracle', got {self.grounder!r}")
        if self.grounder == "oracle" and self.object_key not in self.obs_keys:
            raise UserError(f"{where}.grounder: 'oracle' reads the object poses from {self.object_key!r}; add it to obs_keys")
        if "language" not in self.goal.modalities:
            raise UserError(f"{where}.goal.modalities: GravMAD grounds an instruction; include 'language'")
        if len(self.workspace_low) != 3 or len(self.workspace_high) != 3 or \
                any(lo >= hi for lo, hi in zip(self.workspace_low, self.workspace_high)):
            raise UserError(f"{where}.workspace_low/high: expected two xyz corners with low < high")
        if len(self.grid_shape) != 3 or min(self.grid_shape) < 1:
            raise UserError(f"{where}.grid_shape: expected three positive sizes")
        if self.n_points < 1 or not 0 <= self.min_confidence <= 1:
            raise UserError(f"{where}.n_points >= 1 and 0 <= min_confidence <= 1 expected")
        if self.prediction_type not in ("epsilon", "sample"):
            raise UserError(f"{where}.prediction_type: expected 'epsilon' or 'sample', got {self.prediction_type!r}")
        if not 1 <= self.num_inference_steps <= self.num_train_timesteps:
            raise UserError(f"{where}.num_inference_steps: expected 1..{self.num_train_timesteps}")


@register_policy("gravmad")
class GravMADPolicy(Policy):
    config_class = GravMADConfig
    goal_modalities = ("language",)

    def __init__(self, config: GravMADConfig, stats: dict[str, dict]):
        super().__init__(config, stats)
        c = config
        if c.action_dim != 7:
            raise UserError(f"policy.action_dim: GravMAD emits OSC_POSE actions (7: dpos, drot, gripper), got {c.action_dim}")
        pdim = int(c.obs_shapes[c.proprio_key][-1])
        if pdim < 9:
            raise UserError(f"policy.obs_shapes: {c.proprio_key!r} must hold eef pos, quat xyzw and gripper qpos (>= 9), got {pdim}")
        self.register_buffer("low", torch.tensor(c.workspace_low, dtype=torch.float32), persistent=False)
        self.register_buffer("high", torch.tensor(c.workspace_high, dtype=torch.float32), persistent=False)
        self.register_buffer("grid", torch.from_numpy(grid_points(c.workspace_low, c.workspace_high, c.grid_shape)),
                             persistent=False)
        self.register_buffer("local", torch.from_numpy(local_offsets(c.gravmap_local)), persistent=False)
        d = c.token_dim
        self.scene_encoder = PointNet(6, d)
        self.proprio_encoder = nn.Linear(pdim, d)
        self.gravmap_encoder = GravMapEncoder(d) if c.use_gravmap else None
        self.learned_grounder = LearnedGrounder(pdim, c.workspace_low, c.workspace_high, d) if c.use_gravmap else None
        self.oracle = OracleGrounder(c.object_key)
        cond_dim = 2 * d + self.goal_out_dim + (d if c.use_gravmap else 0)
        self.step_embed = SinusoidalPosEmb(32)
        self.denoiser = mlp(10 + 32 + cond_dim, [c.hidden, c.hidden, c.hidden], 10)
        sched = dict(num_train_timesteps=c.num_train_timesteps, beta_schedule=c.beta_schedule, clip_sample=True,
                     prediction_type=c.prediction_type)
        self.train_scheduler = DDPMScheduler(**sched)
        self.infer_scheduler = DDIMScheduler(**sched, set_alpha_to_one=True, steps_offset=0)
        self.grounder = None  # a Grounder assigned from outside (e.g. a VLM hook) overrides config.grounder
        self.last_subgoal: SubGoal | None = None  # what the last chunk aimed at (for logs and pictures)
        self.refusals = 0
        self._grip: torch.Tensor | None = None  # the last gripper command per sample (+1 closes)

    def reset(self) -> None:
        self._grip = None

    # --- inputs ---------------------------------------------------------------------------------
    def _last(self, obs: dict, key: str) -> torch.Tensor:
        if key not in obs:
            raise UserError(f"obs: missing key {key!r} (GravMAD expects {self.config.obs_keys})")
        x = torch.as_tensor(obs[key], device=self.device)
        return x[:, -1]

    def scene_points(self, obs: dict, generator: torch.Generator | None = None) -> torch.Tensor:
        """(B, n_points, 6): RGB in [0, 1] and xyz normalised to [-1, 1] in the box, of camera points
        inside the box and above the table (a frame with none gives the box centre, black)."""
        c = self.config
        xyz = self._last(obs, c.pointcloud_key).float().flatten(1, -2)  # (B, HW, 3)
        rgb = self._last(obs, c.rgb_key).float().flatten(1, -2) / 255.0
        if xyz.shape[1] != rgb.shape[1]:
            raise UserError(f"obs: {c.pointcloud_key!r} and {c.rgb_key!r} must be the same camera at the same size")
        keep = ((xyz >= self.low) & (xyz <= self.high)).all(-1) & (xyz[..., 2] > TABLE_Z + 0.005)
        w = keep.float() + 1e-12  # a frame with no point in the box still samples (then flagged below)
        idx = torch.multinomial(w.cpu(), c.n_points, replacement=True, generator=generator).to(xyz.device)
        pts = torch.gather(xyz, 1, idx[..., None].expand(-1, -1, 3))
        col = torch.gather(rgb, 1, idx[..., None].expand(-1, -1, 3))
        empty = ~keep.any(1)
        pts = torch.where(empty[:, None, None], (self.low + self.high) / 2, pts)
        col = torch.where(empty[:, None, None], torch.zeros_like(col), col)
        return torch.cat([col, self.normalize_pos(pts)], dim=-1)

    def normalize_pos(self, p: torch.Tensor) -> torch.Tensor:
        return 2 * (p - self.low) / (self.high - self.low) - 1

    def unnormalize_pos(self, p: torch.Tensor) -> torch.Tensor:
        return (p + 1) / 2 * (self.high - self.low) + self.low

    def _instructions(self, goal: Any, b: int) -> list[str]:
        """(B,) instruction strings from a Goal, a GoalBatch, or a list of strings."""
        if isinstance(goal, (list, tuple)) and all(isinstance(t, str) for t in goal):
            if len(goal) != b:
                raise UserError(f"goal: {len(goal)} instructions for a batch of {b}")
            return list(goal)
        if isinstance(goal, Goal):
            return [goal.instruction or ""] * b
        if isinstance(goal, dict) and "instruction" in goal:
            present = goal.get("present", {}).get("language")
            texts = list(goal["instruction"])
            return [t if present is None or bool(present[i]) else "" for i, t in enumerate(texts)]
        return [""] * b

    def _cond(self, scene, proprio_n, goal, token) -> torch.Tensor:
        b = scene.shape[0]
        parts = [self.scene_encoder(scene), self.proprio_encoder(proprio_n)]
        g = self.goal_features(goal, b)
        if g is not None:
            parts.append(g)
        if token is not None:
            parts.append(token)
        return torch.cat(parts, dim=-1)

    def _keypose_vector(self, eef, kp_pos, kp_quat, kp_open) -> torch.Tensor:
        delta = ((kp_pos - eef) / self.config.delta_scale).clamp(-1, 1)
        rot = quat_to_mat(kp_quat)
        return torch.cat([delta, rot[..., :, 0], rot[..., :, 1], 2 * kp_open.reshape(-1, 1) - 1], dim=-1)

    # --- training ---------------------------------------------------------------------------------
    def compute_loss(self, batch: dict) -> dict[str, torch.Tensor]:
        c = self.config
        masks = batch.get("masks") or {}
        missing = [k for k in LABELS if k not in masks]
        if missing:
            raise UserError(f"batch: no keypose labels {missing}; label the store (python -m robolearn.policies.gravmap "
                            f"label STORE) and set data.mask_keys = {list(LABELS)}")
        kp_pos, kp_quat = masks["keypose_pos"][:, 0].float().to(self.device), masks["keypose_quat"][:, 0].float().to(self.device)
        kp_open = masks["keypose_open"][:, 0].float().to(self.device).reshape(-1)
        obs = batch["obs"]
        proprio = self._last(obs, c.proprio_key).float()
        proprio_n = self.normalizer.normalize(c.proprio_key, proprio)
        scene = self.scene_points(obs)
        goal = batch.get("goal")
        out: dict[str, torch.Tensor] = {}
        token = None
        if self.gravmap_encoder is not None:
            target = kp_pos.clamp(self.low, self.high)
            token = self.gravmap_encoder(gravmap(target, kp_open, self.grid, c.workspace_low, c.workspace_high,
                                                 c.gravmap_radius, check=False, local=self.local),
                                         self.normalize_pos(proprio[:, :3]))
        x0 = self._keypose_vector(proprio[:, :3], kp_pos, kp_quat, kp_open)
        noise = torch.randn_like(x0)
        t = torch.randint(0, c.num_train_timesteps, (x0.shape[0],), device=x0.device)
        noisy = self.train_scheduler.add_noise(x0, noise, t)
        cond = self._cond(scene, proprio_n, goal, token)
        pred = self.denoiser(torch.cat([noisy, self.step_embed(t), cond], -1))
        target = noise if c.prediction_type == "epsilon" else x0
        loss = self.chunk_loss(F.mse_loss(pred, target, reduction="none")[:, None], batch)
        out["keypose_loss"] = loss
        if self.learned_grounder is not None and c.grounder_coef > 0:
            texts = self._instructions(goal, x0.shape[0])
            emb = embed_instructions(texts, self.device)
            g = self.learned_grounder(scene, proprio_n, emb)
            err = F.mse_loss(g["pos_n"], self.normalize_pos(kp_pos), reduction="none")
            err = err + F.binary_cross_entropy_with_logits(g["open_logit"], kp_open, reduction="none")[:, None]
            gl = self.chunk_loss(err[:, None], batch)
            # confidence: the batch's instructions (1; an absent one 0) against instructions naming nothing
            # in the scene (0), each side weighted one half whatever their counts
            neg = embed_instructions(list(NEGATIVE_INSTRUCTIONS), self.device)
            pos_target = torch.tensor([float(bool(s)) for s in texts], device=self.device)
            neg_logits = self.learned_grounder.conf(neg)[:, 0]
            gl = gl + 0.5 * (F.binary_cross_entropy_with_logits(g["conf_logit"], pos_target)
                             + F.binary_cross_entropy_with_logits(neg_logits, torch.zeros_like(neg_logits)))
            out["grounder_loss"] = gl
            loss = loss + c.grounder_coef * gl
        out["loss"] = loss
        return out

    # --- acting ---------------------------------------------------------------------------------------
    @torch.no_grad()
    def ground(self, obs: dict, goal: Any = None, scene: torch.Tensor | None = None) -> SubGoal:
        """The current sub-goal from the configured grounder (or an assigned ``policy.grounder``)."""
        c = self.config
        proprio = self._last(obs, c.proprio_key).float()
        b = proprio.shape[0]
        texts = self._instructions(goal, b)
        if self.grounder is not None or c.grounder == "oracle":
            last = {k: self._last(obs, k) for k in obs if k in (c.object_key, c.proprio_key)}
            last["proprio"] = proprio
            sg = (self.grounder or self.oracle).ground(last, texts)
            return SubGoal(sg.pos.to(self.device).float(), sg.open.to(self.device).float(), sg.confidence.to(self.device).float())
        if self.learned_grounder is None:
            raise UserError("policy.use_gravmap is false: this policy has no grounder")
        scene = self.scene_points(obs, torch.Generator().manual_seed(0)) if scene is None else scene
        g = self.learned_grounder(scene, self.normalizer.normalize(c.proprio_key, proprio), embed_instructions(texts, self.device))
        return SubGoal(self.unnormalize_pos(g["pos_n"]), torch.sigmoid(g["open_logit"]), torch.sigmoid(g["conf_logit"]))

    @torch.no_grad()
    def predict_keypose(self, obs: dict, goal: Any = None, generator: torch.Generator | None = None,
                        subgoal: SubGoal | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """-> (keypose position (B, 3) clipped to the box, rotation matrix (B, 3, 3), open (B,) bool,
        hold (B,) bool: the sub-goal was refused)."""
        c = self.config
        proprio = self._last(obs, c.proprio_key).float()
        b = proprio.shape[0]
        scene = self.scene_points(obs, torch.Generator().manual_seed(0))
        hold = torch.zeros(b, dtype=torch.bool, device=self.device)
        token = None
        if self.gravmap_encoder is not None:
            sg = subgoal or self.ground(obs, goal, scene)
            inside = in_box(sg.pos, [x - c.box_margin for x in c.workspace_low], [x + c.box_margin for x in c.workspace_high])
            hold = (sg.confidence < c.min_confidence) | ~inside
            for i in torch.nonzero(hold).flatten().tolist():
                self.refusals += 1
                why = "outside the workspace box" if not inside[i] else f"confidence {float(sg.confidence[i]):.2f} < {c.min_confidence}"
                log.warning("gravmad: sub-goal %s refused (%s); holding", [round(float(x), 3) for x in sg.pos[i]], why)
            self.last_subgoal = sg
            pos = torch.where(hold[:, None], proprio[:, :3], sg.pos).clamp(self.low, self.high)
            token = self.gravmap_encoder(gravmap(pos, sg.open, self.grid, c.workspace_low, c.workspace_high,
                                                 c.gravmap_radius, check=False, local=self.local),
                                         self.normalize_pos(proprio[:, :3]))
        cond = self._cond(scene, self.normalizer.normalize(c.proprio_key, proprio), goal, token)
        x = torch.randn(b, 10, device=self.device, generator=generator)
        self.infer_scheduler.set_timesteps(c.num_inference_steps)
        for t in self.infer_scheduler.timesteps:
            tt = torch.full((b,), int(t), device=self.device, dtype=torch.long)
            eps = self.denoiser(torch.cat([x, self.step_embed(tt), cond], -1))
            x = self.infer_scheduler.step(eps, t, x, generator=generator).prev_sample
        pos = (proprio[:, :3] + x[:, :3] * c.delta_scale).clamp(self.low, self.high)
        return pos, six_d_to_mat(x[:, 3:9]), x[:, 9] > 0, hold

    @torch.no_grad()
    def predict_action_chunk(self, obs: dict[str, torch.Tensor], goal: Any = None,
                             generator: torch.Generator | None = None) -> torch.Tensor:
        c = self.config
        proprio = self._last(obs, c.proprio_key).float()
        b = proprio.shape[0]
        if self._grip is None or self._grip.shape[0] != b:
            self._grip = -torch.ones(b, device=self.device)  # episodes start with the gripper open
        pos, rot, open_, hold = self.predict_keypose(obs, goal, generator)
        actions = self.keypose_to_actions(proprio[:, :3], quat_to_mat(proprio[:, 3:7]), pos, rot, open_, hold)
        self._grip = actions[:, 0, -1].clone()
        return actions

    def keypose_to_actions(self, eef, r_cur, pos, r_target, open_, hold) -> torch.Tensor:
        """(B, horizon, 7) OSC_POSE actions from the current pose to the keypose (see the docstring)."""
        c = self.config
        b = eef.shape[0]
        grip_now = self._grip if self._grip is not None else -torch.ones(b, device=eef.device)
        reached = torch.linalg.norm(pos - eef, dim=-1) < c.reach_tol
        grip = torch.where(reached & ~hold, torch.where(open_, -1.0, 1.0), grip_now)
        rerr = rot_error(r_target, r_cur)  # (B, 3) world axis-angle
        out = torch.zeros(b, c.horizon, 7, device=eef.device)
        p = eef.clone()
        far = torch.linalg.norm(pos[:, :2] - eef[:, :2], dim=-1) > c.xy_tol
        cruise = torch.maximum(eef[:, 2], pos[:, 2] + c.hover)
        for i in range(c.horizon):
            xy_far = torch.linalg.norm(pos[:, :2] - p[:, :2], dim=-1) > c.xy_tol
            low = p[:, 2] < cruise - 0.01
            wp = torch.where((far & xy_far & low)[:, None], torch.stack([p[:, 0], p[:, 1], cruise], -1),  # rise
                             torch.where((far & xy_far)[:, None], torch.stack([pos[:, 0], pos[:, 1], cruise], -1), pos))
            a_pos = (c.gain * (wp - p) / POS_SCALE).clamp(-c.max_step, c.max_step)
            a_rot = (rerr / ROT_SCALE).clamp(-MAX_ROT, MAX_ROT)
            p = p + c.track * a_pos * POS_SCALE
            rerr = rerr - c.track * a_rot * ROT_SCALE
            out[:, i, :3], out[:, i, 3:6], out[:, i, 6] = a_pos, a_rot, grip
        out[hold, :, :6] = 0.0
        return out.clamp(-1.0, 1.0)


# --- rotations ---------------------------------------------------------------------------------------------
def quat_to_mat(q: torch.Tensor) -> torch.Tensor:
    """(..., 4) xyzw -> (..., 3, 3)."""
    q = F.normalize(q.float(), dim=-1)
    x, y, z, w = q.unbind(-1)
    return torch.stack([
        torch.stack([1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)], -1),
        torch.stack([2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)], -1),
        torch.stack([2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)], -1),
    ], -2)


def six_d_to_mat(x: torch.Tensor) -> torch.Tensor:
    """(..., 6) first two columns -> (..., 3, 3) by Gram-Schmidt (Zhou et al. 2019)."""
    a = F.normalize(x[..., :3], dim=-1)
    b = F.normalize(x[..., 3:] - (a * x[..., 3:]).sum(-1, keepdim=True) * a, dim=-1)
    return torch.stack([a, b, torch.cross(a, b, dim=-1)], dim=-1)


def rot_error(r_target: torch.Tensor, r_cur: torch.Tensor) -> torch.Tensor:
    """(B, 3) world-frame axis-angle rotating r_cur onto r_target (as the scripted experts compute it)."""
    r = r_target @ r_cur.transpose(-1, -2)
    cos = ((r.diagonal(dim1=-2, dim2=-1).sum(-1) - 1) / 2).clamp(-1 + 1e-6, 1 - 1e-6)
    angle = torch.arccos(cos)
    axis = torch.stack([r[..., 2, 1] - r[..., 1, 2], r[..., 0, 2] - r[..., 2, 0], r[..., 1, 0] - r[..., 0, 1]], -1)
    axis = axis / (2 * torch.sin(angle)).clamp_min(1e-6)[..., None]
    return torch.where(angle[..., None] < 1e-5, torch.zeros_like(axis), axis * angle[..., None])


"""OOD-IL (Qiu, Wu, Cao, Long; CoRL 2022): imitation from demonstrators with other dynamics.
Cluster the demos by mode with a sequence-contrastive encoder, then score each demo's
*transferability* to the imitator adversarially inside its mode, and write the scores into the
store as per-episode metadata so any policy head can down-weight what the imitator cannot do.

    encoder     1-D conv over an L-step window of (normalised) states, masked mean pool -> h;
                projection head -> z (unit norm). Trained by the Trainer (compute_loss): InfoNCE
                between two augmented views of each window (random sub-sequence of 60-100 % of
                its valid steps, a random monotone time-warp resampled to L steps, Gaussian noise);
                the other windows of the batch are the negatives, except windows of the same demo
                (masked: they are not false negatives of the demo's mode)
    modes       a demo's embedding = the normalised mean of h over its windows (stride L/2, no
                augmentation); spherical k-means (10 k-means++ restarts); k = `n_clusters`, or
                with n_clusters = 0 the k in 2..max_clusters with the best silhouette
                -> `mode_cluster`
    adversarial (finish) `rounds` rounds of: train the imitator (an MLP state -> action) on all
                demos with the current weights; roll it out `rollouts` times for at most
                `rollout_steps` steps in the simulator with the *default* dynamics (the
                imitator's own environment; seeds `sim_seed` + i); assign each rollout to its
                nearest mode; per mode, fit the imitator's dynamics on that mode's rollouts (ridge-
                linear: s' - s from the previous step's change and the action) and train a
                discriminator D between the imitator's transitions (1) and the mode's demo
                transitions (0), both seen through that model: the part of s' - s it does not explain
                (`disc_inputs = "residual"`; "transition" gives D the raw (s, a, s' - s)). A demo's raw
                score = the mean of sigmoid(D) over its transitions (how much it looks like something
                the imitator does in its own dynamics); transferability = raw / the 90th percentile
                of the raw scores, clipped to [0, 1]; these are the next round's imitation weights
    write       `transferability` and `mode_cluster` into meta/episodes (store.write_episode_meta:
                each field built whole, then renamed in) + `oodil_scores.json` in the run dir
                (scores, clusters, silhouette, the interaction budget spent)

The feasibility baseline of Cao & Sadigh 2021 ("Learning Feasibility to Imitate
Demonstrators with Different Dynamics") is the same loop without modes: one pool, one
discriminator (method `feasibility`, field `feasibility`), so the comparison is like for like.

Choices where the paper is silent or we differ, on purpose: the discriminator sees transitions
through the imitator's own (linear) dynamics model, action included (a demo from a stronger robot
reaches s' with an action that moves the default robot less). Given raw (s, a, s' - s) on our
lift demos, an MLP discriminator told the imitator from *every* demonstrator by where the states
were and how large the actions were (AUROC 0.3-0.5 against replay success), so the raw form is
kept as an option only; scores are ratios to a high quantile rather than a learned weighting
network; the imitator is a one-step MLP trained for a few hundred steps per round (it only has to
produce the default robot's transitions near the demos' states, not to solve the task); the encoder is trained on windows (the Trainer's unit), a demo is the mean
of its windows. No labels (`demonstrator`, `mode`) are read; when the store has them the summary
reports the clustering ARI against `mode` and the mean score per demonstrator.
"""

from __future__ import annotations

import json
import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from robolearn.datasets.store import EpisodeStore
from robolearn.errors import UserError
from robolearn.nn.mlp import mlp
from robolearn.pretrain.base import PretrainConfig, Pretrainer, register_pretrainer

log = logging.getLogger(__name__)


@dataclass
class OODILConfig(PretrainConfig):
    obs_keys: list[str] = field(default_factory=lambda: ["state"])  # low-dim keys only
    task: str = ""  # the imitator's simulator task; "" = the store's task
    score_field: str = "transferability"  # the per-episode meta field written (recipes: data.weights = this)
    # sequence encoder + contrastive views
    window_len: int = 32
    hidden: int = 64
    embed_dim: int = 32
    temperature: float = 0.1
    min_crop: float = 0.6  # a view keeps a random sub-sequence of at least this share of the window
    time_warp: float = 0.25  # amplitude of the monotone warp u + a sin(pi u), |a| <= this (< 1/pi)
    noise_std: float = 0.05  # Gaussian noise on the normalised states of each view
    # modes
    n_clusters: int = 2  # 0 = choose k in 2..max_clusters by silhouette
    max_clusters: int = 4
    # adversarial transferability
    rounds: int = 2
    rollouts: int = 6  # imitator episodes per round in the default-dynamics simulator
    rollout_steps: int = 0  # steps per rollout at most; 0 = the task's horizon
    sim_seed: int = 50_000
    imitator_steps: int = 400
    imitator_hidden: int = 256
    disc_steps: int = 300
    disc_hidden: int = 128
    disc_noise: float = 0.05  # input noise on the discriminator (keeps it from separating by tiny offsets)
    disc_inputs: str = "residual"  # "residual": what the imitator's own dynamics do not explain; "transition": (s, a, s' - s)
    batch: int = 256
    lr: float = 1e-3

    def validate(self, where: str = "pretrain") -> None:
        super().validate(where)
        if self.image_keys:
            raise UserError(f"{where}.obs_keys: {self.method or 'oodil'} uses low-dim keys only, got cameras {self.image_keys}")
        if self.window_len < 4:
            raise UserError(f"{where}.window_len: expected >= 4, got {self.window_len}")
        if self.n_clusters < 0 or self.n_clusters == 1 or self.max_clusters < 2:
            raise UserError(f"{where}.n_clusters: expected 0 (silhouette) or >= 2, got {self.n_clusters}")
        if not 0 < self.min_crop <= 1 or not 0 <= self.time_warp < 1 / math.pi:
            raise UserError(f"{where}.min_crop/time_warp: expected 0 < min_crop <= 1 and 0 <= time_warp < 0.318")
        for name in ("rounds", "rollouts", "imitator_steps", "disc_steps", "batch"):
            if getattr(self, name) < 1:
                raise UserError(f"{where}.{name}: expected >= 1, got {getattr(self, name)}")
        if self.disc_inputs not in ("residual", "transition"):
            raise UserError(f"{where}.disc_inputs: expected 'residual' or 'transition', got {self.disc_inputs!r}")
        if not self.score_field or "/" in self.score_field:
            raise UserError(f"{where}.score_field: expected a plain metadata field name, got {self.score_field!r}")


def augment(x: torch.Tensor, valid: torch.Tensor, c: OODILConfig) -> torch.Tensor:
    """A view of each window x (B, L, D): a random sub-sequence of its valid steps, time-warped and
    resampled to L steps (linear interpolation), plus Gaussian noise."""
    b, n, _ = x.shape
    length = valid.sum(1).float().clamp_min(1)  # valid steps (the sampler pads the end)
    span = (length - 1) * torch.empty(b, device=x.device).uniform_(c.min_crop, 1.0)
    start = (length - 1 - span) * torch.rand(b, device=x.device)
    u = torch.linspace(0, 1, n, device=x.device)[None]  # (1, L)
    a = torch.empty(b, 1, device=x.device).uniform_(-c.time_warp, c.time_warp)
    pos = start[:, None] + span[:, None] * (u + a * torch.sin(math.pi * u))  # monotone for |a| < 1/pi
    lo = pos.floor().long().clamp(0, n - 1)
    hi = (lo + 1).clamp(max=n - 1)
    frac = (pos - lo.float())[..., None]
    idx = lambda i: i[..., None].expand(-1, -1, x.shape[-1])  # noqa: E731
    out = torch.gather(x, 1, idx(lo)) * (1 - frac) + torch.gather(x, 1, idx(hi)) * frac
    return out + c.noise_std * torch.randn_like(out)


def kmeans(x: np.ndarray, k: int, seed: int = 0, restarts: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """Spherical k-means on unit rows x (N, E), k-means++ starts; the best of `restarts` by inertia.
    -> (labels (N,), centers (k, E))."""
    rng, best = np.random.default_rng(seed), None
    for _ in range(restarts):
        centers = [x[rng.integers(len(x))]]
        for _ in range(k - 1):
            d = np.clip(1 - (x @ np.stack(centers).T).max(1), 0, None) + 1e-12
            centers.append(x[rng.choice(len(x), p=d / d.sum())])
        centers = np.stack(centers)
        for _ in range(50):
            labels = (x @ centers.T).argmax(1)
            new = np.stack([x[labels == j].sum(0) if np.any(labels == j) else centers[j] for j in range(k)])
            new /= np.linalg.norm(new, axis=1, keepdims=True).clip(1e-12)
            if np.allclose(new, centers):
                break
            centers = new
        labels = (x @ centers.T).argmax(1)
        inertia = float((1 - (x * centers[labels]).sum(1)).sum())
        if best is None or inertia < best[0]:
            best = (inertia, labels, centers)
    return best[1], best[2]


def silhouette(x: np.ndarray, labels: np.ndarray) -> float:
    """Mean silhouette of a clustering under cosine distance (0 when fewer than 2 clusters)."""
    if len(np.unique(labels)) < 2:
        return 0.0
    dist = np.clip(1 - x @ x.T, 0, None)
    scores = []
    for i in range(len(x)):
        own = labels == labels[i]
        if own.sum() <= 1:
            scores.append(0.0)
            continue
        a = dist[i, own].sum() / (own.sum() - 1)
        b = min(dist[i, labels == j].mean() for j in np.unique(labels) if j != labels[i])
        scores.append((b - a) / max(a, b, 1e-12))
    return float(np.mean(scores))


def imitator_env(task: str) -> tuple[Callable[[], object], int]:
    """The imitator's environment: a factory of the task's simulator with the default dynamics
    (state only) and the task's horizon. UserError (cheap: no simulator is built) if there is none."""
    from robolearn.sim.suite import get_spec

    try:
        spec = get_spec(task)
    except UserError as exc:
        raise UserError(f"pretrain.task: the imitator needs a simulator, cannot build {task!r} ({exc})") from None

    def make():
        from robolearn.sim import make as make_env

        return make_env(task, cameras=())

    return make, int(spec.horizon)


@register_pretrainer("oodil")
class OODIL(Pretrainer):
    config_class = OODILConfig
    needs_images = False
    needs_actions = True
    min_episodes = 2  # transferability compares demos; one has nothing to compare with
    use_modes = True  # the feasibility baseline: one pool

    def __init__(self, config: OODILConfig, stats: dict[str, dict]):
        super().__init__(config, stats)
        c = config
        ds = sum(int(c.obs_shapes[k][-1]) for k in c.lowdim_keys)
        self.conv = nn.Sequential(
            nn.Conv1d(ds, c.hidden, 5, padding=2), nn.GELU(),
            nn.Conv1d(c.hidden, c.hidden, 5, padding=4, dilation=2), nn.GELU(),
            nn.Conv1d(c.hidden, c.hidden, 5, padding=8, dilation=4), nn.GELU(),
        )  # fmt: skip
        self.project = mlp(c.hidden, [c.hidden], c.embed_dim)

    @classmethod
    def check_store(cls, store: EpisodeStore, config: OODILConfig) -> None:
        """Before anything is written: two demos at least, and a simulator for the imitator."""
        super().check_store(store, config)
        imitator_env(config.task or str(config.env.get("task", "") or store.attrs.get("task", "")))

    @property
    def window(self) -> tuple[int, int, int]:
        return 1, self.config.window_len - 1, 1

    # --- encoder ---------------------------------------------------------------------------------
    def features(self, x: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
        """(B, L, Ds) normalised states -> h (B, hidden), masked mean over the valid steps."""
        h = self.conv(x.transpose(1, 2)).transpose(1, 2)  # (B, L, H)
        if valid is None:
            return h.mean(1)
        w = valid.float()[..., None]
        return (h * w).sum(1) / w.sum(1).clamp_min(1)

    def compute_loss(self, batch: dict) -> dict[str, torch.Tensor]:
        c = self.config
        x = self.lowdim(batch["obs"])  # (B, L, Ds)
        valid = ~batch["obs_is_pad"] if "obs_is_pad" in batch else torch.ones(x.shape[:2], dtype=torch.bool, device=x.device)
        z1 = F.normalize(self.project(self.features(augment(x, valid, c))), dim=-1)
        z2 = F.normalize(self.project(self.features(augment(x, valid, c))), dim=-1)
        logits = z1 @ z2.T / c.temperature  # (B, B): the diagonal are the positives
        if "episode" in batch:  # other windows of the same demo are no negatives
            ep = batch["episode"].to(x.device)
            same = (ep[:, None] == ep[None]) & ~torch.eye(len(ep), dtype=torch.bool, device=x.device)
            logits = logits.masked_fill(same, float("-inf"))
        target = torch.arange(len(x), device=x.device)
        loss = 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))
        acc = (logits.argmax(1) == target).float().mean()
        return {"loss": loss, "view_match": acc.detach()}

    @torch.no_grad()
    def embed(self, states: np.ndarray) -> np.ndarray:
        """One trajectory (T, Ds) of normalised states -> its unit embedding: the mean of h over
        windows of window_len at stride window_len / 2 (one shorter window if T < window_len)."""
        n = self.config.window_len
        x = torch.as_tensor(states, dtype=torch.float32, device=self.conv[0].weight.device)
        starts = list(range(0, max(1, len(x) - n + 1), max(1, n // 2)))
        if len(x) > n and starts[-1] != len(x) - n:
            starts.append(len(x) - n)
        h = torch.cat([self.features(x[s : s + n][None]) for s in starts]).mean(0)
        return F.normalize(h, dim=0).cpu().numpy()

    def cluster(self, embeddings: np.ndarray) -> tuple[np.ndarray, np.ndarray, dict]:
        """-> (labels (N,), centers (k, E), info {k, silhouette, chosen_by})."""
        c = self.config
        if not self.use_modes:
            center = embeddings.mean(0, keepdims=True)
            return np.zeros(len(embeddings), np.int64), center / np.linalg.norm(center).clip(1e-12), {"k": 1}
        if c.n_clusters:
            k = min(c.n_clusters, len(embeddings))
            labels, centers = kmeans(embeddings, k)
            return labels, centers, {"k": k, "chosen_by": "config", "silhouette": silhouette(embeddings, labels)}
        fits = []
        for k in range(2, min(c.max_clusters, len(embeddings) - 1) + 1):
            labels, centers = kmeans(embeddings, k)
            fits.append((silhouette(embeddings, labels), k, labels, centers))
        if not fits:  # 2 demos: one cluster each
            return np.arange(len(embeddings)), embeddings.copy(), {"k": len(embeddings), "chosen_by": "n_demos"}
        sil, k, labels, centers = max(fits, key=lambda f: f[0])
        return labels, centers, {"k": k, "chosen_by": "silhouette", "silhouette": sil,
                                 "silhouettes": {str(f[1]): round(f[0], 4) for f in fits}}

    # --- the adversarial stage ------------------------------------------------------------------
    def score_demos(self, states: list[np.ndarray], actions: list[np.ndarray], make_env: Callable[[], object],
                    horizon: int, seed: int = 0) -> dict:
        """Demos (raw states {T_i, Ds}, raw actions (T_i, Da)) and a factory of the imitator's env ->
        {"score", "raw", "mode_cluster", "clusters", "env_steps", "rounds": [...]}."""
        c, dev = self.config, self.conv[0].weight.device
        torch.manual_seed(seed)
        was_training = self.training
        self.eval()
        norm_s = [self.norm_states(s) for s in states]
        norm_a = [self.normalizer.normalize(c.action_key, torch.as_tensor(a, dtype=torch.float32)).numpy() for a in actions]
        labels, centers, info = self.cluster(np.stack([self.embed(s) for s in norm_s]))
        dscale = np.concatenate([s[1:] - s[:-1] for s in norm_s]).std(0).clip(1e-6)
        demo_ep = np.concatenate([np.full(len(s) - 1, i) for i, s in enumerate(norm_s)])
        s_all, a_all = np.concatenate(norm_s), np.concatenate(norm_a)
        step_ep = np.concatenate([np.full(len(s), i) for i, s in enumerate(norm_s)])

        weights, raw = np.ones(len(states)), np.zeros(len(states))
        env, env_steps, rounds = make_env(), 0, []
        steps = min(horizon, c.rollout_steps) if c.rollout_steps else horizon
        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # one small MLP per simulator step: threads only contend
        try:
            for r in range(c.rounds):
                imitator = self.train_imitator(s_all, a_all, weights[step_ep])
                rolls, roll_cluster, successes = [], [], 0
                for i in range(c.rollouts):
                    traj_s, traj_a, ok = self.rollout(env, imitator, c.sim_seed + r * c.rollouts + i, steps)
                    env_steps += len(traj_a)
                    successes += ok
                    rolls.append((traj_s, traj_a))
                    roll_cluster.append(int((centers @ self.embed(traj_s)).argmax()))
                raw = np.zeros(len(states))
                for k in range(len(centers)):
                    members = np.flatnonzero(labels == k)
                    if not len(members):
                        continue
                    mine = [x for x, j in zip(rolls, roll_cluster) if j == k] or rolls  # no rollout in this mode: all
                    roll_x, demo_x = self.features_for_disc(mine, [(norm_s[i], norm_a[i]) for i in members], dscale)
                    disc = self.train_discriminator(roll_x, demo_x, demo_x.shape[1])
                    with torch.no_grad():
                        p = torch.sigmoid(disc(torch.as_tensor(demo_x, device=dev))[:, 0]).cpu().numpy()
                    ep = np.concatenate([np.full(len(norm_s[i]) - 1, i) for i in members])
                    raw += np.bincount(ep, weights=p, minlength=len(states))
                raw /= np.bincount(demo_ep, minlength=len(states)).clip(1)
                # ratio to a high quantile, not the max: one lucky demo must not squash the rest
                weights = np.clip(raw / np.quantile(raw, 0.9).clip(1e-12), 0.0, 1.0)
                rounds.append({"round": r, "imitator_success": successes / c.rollouts,
                               "rollouts_per_mode": np.bincount(roll_cluster, minlength=len(centers)).tolist(),
                               "mean_score": float(weights.mean())})
                log.info("%s round %d: imitator success %.2f, mean score %.3f", self.method, r, successes / c.rollouts, weights.mean())
        finally:
            torch.set_num_threads(threads)
            close = getattr(env, "close", None)
            if close:
                close()
        self.train(was_training)
        return {"score": weights, "raw": raw, "mode_cluster": labels.astype(np.int64), "clusters": info,
                "env_steps": env_steps, "rounds": rounds}

    def features_for_disc(self, rolls: list, demos: list, dscale: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Discriminator inputs of the imitator's transitions and of the demos' ((states (T+1, Ds),
        actions (T, Da)) each, normalised).

        "transition": (s, a, s' - s). "residual": fit the imitator's own dynamics on its rollouts,
        a ridge-linear model s_{t+1} - s_t ~ [s_t - s_{t-1}, a_t, 1] (linear so that it carries over
        to demo states the imitator did not visit), and give D only the part of each transition it
        does not explain (in units of the rollouts' residual spread): D then cannot tell demos from
        the imitator by where they are or how large their actions are, only by how the world answered."""
        def parts(s, a):
            d = (s[1 : len(a) + 1] - s[: len(a)]) / dscale
            v = np.concatenate([np.zeros_like(d[:1]), d[:-1]])
            return s[: len(a)], a, d, v

        if self.config.disc_inputs == "transition":
            build = lambda s, a, d, v: np.concatenate([s, a, d], -1)  # noqa: E731
            return (np.concatenate([build(*parts(s, a)) for s, a in rolls]).astype(np.float32),
                    np.concatenate([build(*parts(s, a[: len(s) - 1])) for s, a in demos]).astype(np.float32))
        design = lambda s, a, d, v: np.concatenate([v, a, np.ones((len(a), 1))], -1)  # noqa: E731
        x = np.concatenate([design(*parts(s, a)) for s, a in rolls])
        y = np.concatenate([parts(s, a)[2] for s, a in rolls])
        w = np.linalg.solve(x.T @ x + 1e-2 * np.eye(x.shape[1]), x.T @ y)
        spread = (y - x @ w).std(0).clip(1e-3)

        def residual(s, a):
            p = parts(s, a)
            return (p[2] - design(*p) @ w) / spread

        return ((y - x @ w) / spread).astype(np.float32), np.concatenate([residual(s, a[: len(s) - 1]) for s, a in demos]).astype(np.float32)

    def norm_states(self, states) -> np.ndarray:
        if isinstance(states, dict):
            states = np.concatenate([np.asarray(states[k], np.float32) for k in self.config.lowdim_keys], axis=-1)
        x, out, i = torch.as_tensor(states, dtype=torch.float32), [], 0
        for k in self.config.lowdim_keys:
            d = int(self.config.obs_shapes[k][-1])
            out.append(self.normalizer.normalize(k, x[:, i : i + d]))
            i += d
        return torch.cat(out, dim=-1).numpy()

    def train_imitator(self, s: np.ndarray, a: np.ndarray, w: np.ndarray) -> nn.Module:
        """Weighted one-step BC in normalised spaces: the imitator's policy for this round."""
        c, dev = self.config, self.conv[0].weight.device
        net = mlp(s.shape[1], [c.imitator_hidden, c.imitator_hidden], a.shape[1]).to(dev)
        opt = torch.optim.Adam(net.parameters(), lr=c.lr)
        s_t, a_t, w_t = (torch.as_tensor(v, dtype=torch.float32, device=dev) for v in (s, a, w))
        for _ in range(c.imitator_steps):
            idx = torch.randint(len(s_t), (c.batch,), device=dev)
            loss = (((net(s_t[idx]) - a_t[idx]) ** 2).mean(-1) * w_t[idx]).sum() / w_t[idx].sum().clamp_min(1e-6)
            opt.zero_grad()
            loss.backward()
            opt.step()
        return net.eval()

    @torch.no_grad()
    def rollout(self, env, imitator: nn.Module, seed: int, steps: int, hold: int = 5) -> tuple[np.ndarray, np.ndarray, bool]:
        """The imitator in its own environment: normalised states (T+1, Ds), its actions (T, Da)
        normalised as the demos', and whether the task succeeded."""
        c, dev = self.config, self.conv[0].weight.device
        obs, _ = env.reset(seed=seed)
        s = [self.norm_states({k: np.asarray(obs[k])[None] for k in c.lowdim_keys})[0]]
        acts, ok, since = [], False, 0
        for _ in range(steps):
            a_norm = imitator(torch.as_tensor(s[-1][None], device=dev))
            a = self.normalizer.unnormalize(c.action_key, a_norm.cpu())[0].numpy()
            obs, _, _, truncated, info = env.step(np.clip(a, -1.0, 1.0))
            acts.append(self.normalizer.normalize(c.action_key, torch.as_tensor(np.clip(a, -1.0, 1.0))[None].float())[0].numpy())
            s.append(self.norm_states({k: np.asarray(obs[k])[None] for k in c.lowdim_keys})[0])
            since = since + 1 if info.get("success") else 0
            ok = ok or since > 0
            if since >= hold or truncated:
                break
        return np.stack(s), np.stack(acts), ok

    def train_discriminator(self, imitator_x: np.ndarray, demo_x: np.ndarray, din: int) -> nn.Module:
        """D: the imitator's transitions (label 1) vs a mode's demo transitions (label 0), balanced batches."""
        c, dev = self.config, self.conv[0].weight.device
        disc = mlp(din, [c.disc_hidden, c.disc_hidden], 1).to(dev)
        opt = torch.optim.Adam(disc.parameters(), lr=c.lr, weight_decay=1e-4)
        pos = torch.as_tensor(imitator_x, device=dev)
        neg = torch.as_tensor(demo_x, device=dev)
        half = max(1, c.batch // 2)
        target = torch.cat([torch.ones(half, device=dev), torch.zeros(half, device=dev)])
        for _ in range(c.disc_steps):
            x = torch.cat([pos[torch.randint(len(pos), (half,), device=dev)], neg[torch.randint(len(neg), (half,), device=dev)]])
            logits = disc(x + c.disc_noise * torch.randn_like(x))[:, 0]
            loss = F.binary_cross_entropy_with_logits(logits, target)
            opt.zero_grad()
            loss.backward()
            opt.step()
        return disc.eval()

    # --- labelling the store ----------------------------------------------------------------------
    def finish(self, out: Path, store_path: str) -> dict[str, str]:
        """Score every demo of the training store, write `score_field` (+ `mode_cluster`) into its
        episode metadata, and `<method>_scores.json` into the run dir."""
        c = self.config
        store = EpisodeStore.open(store_path, mode="a")
        self.check_store(store, c)
        task = c.task or str(c.env.get("task", "") or store.attrs.get("task", ""))
        make_env, horizon = imitator_env(task)
        states = [store.get_episode(i, c.lowdim_keys) for i in range(store.n_episodes)]
        actions = [store.get_episode(i, [c.action_key])[c.action_key] for i in range(store.n_episodes)]
        with torch.enable_grad():
            res = self.score_demos(states, actions, make_env, horizon)
        fields = {c.score_field: res["score"].astype(np.float64)}
        if self.use_modes:
            fields["mode_cluster"] = res["mode_cluster"]
        store.write_episode_meta(fields)
        summary = {"store": str(store_path), "method": self.method, "task": task, "score_field": c.score_field,
                   "score": np.round(res["score"], 4).tolist(), "raw": np.round(res["raw"], 4).tolist(),
                   "mode_cluster": res["mode_cluster"].tolist(), "clusters": res["clusters"], "rounds": res["rounds"],
                   "interaction": {"env_steps": res["env_steps"], "rollouts": c.rounds * c.rollouts,
                                   "rollout_steps_max": min(horizon, c.rollout_steps) if c.rollout_steps else horizon}}
        if "mode" in store.meta_fields and self.use_modes:
            from robolearn.pretrain.infocon import adjusted_rand_index

            summary["ari_vs_mode"] = adjusted_rand_index(res["mode_cluster"], store.meta_column("mode"))
        if "demonstrator" in store.meta_fields:
            who = store.meta_column("demonstrator").astype(str)
            summary["mean_score_per_demonstrator"] = {d: round(float(res["score"][who == d].mean()), 4) for d in np.unique(who)}
        path = Path(out) / f"{self.method}_scores.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(summary, indent=2, sort_keys=True, default=float))
        os.replace(tmp, path)
        return {"labels": str(store_path), "summary": str(path)}


@dataclass
class FeasibilityConfig(OODILConfig):
    score_field: str = "feasibility"


@register_pretrainer("feasibility")
class Feasibility(OODIL):
    """Cao et al. 2021: the same adversarial feasibility score, all demos in one pool (no modes);
    the encoder is still trained (it costs little) but its clusters are not used."""

    config_class = FeasibilityConfig
    use_modes = False

"""InfoCon (Liu et al. 2024): discover manipulation concepts as a VQ codebook over (state, action)
sequences, trained for generative and discriminative informativeness; label every demo step.

    key net     transformer over a window of L steps of (state, action) -> z_e (B, L, C), unit norm
    codebook    K unit vectors; id = argmax cosine similarity; z_q straight-through from the
                softmax(sim / T)-weighted mix of entries; commitment loss; entries follow their
                assigned z_e by EMA (not by gradient); unused entries restart on badly fitted codes
    generative  reconstruct s_t from z_q alone; predict the segment's key (end) state from (s_t, z_q)
    discrim.    a concept-conditioned policy (s_t, z_q) -> a_t; a score head (s_t, e_k) -> logit that
                s_t lies in concept k's segment, for every k (BCE against the assigned id)

The first `vq_warmup` steps train on the continuous z_e (no quantisation); then the codebook is
fitted to a batch of codes by spherical k-means (8 seeds; the fit under which the policy head
predicts the actions best is kept). Without this warm start the codebook often froze two phases
into one entry (ARI 0.5-0.8 instead of ~1.0 on the synthetic 3-phase test store, depending on seed).

Labelling (`finish`, `label_episodes`): every step is scored by each window that covers it (the same
L-step windows the model trains on), the scores averaged, codebook entries ranked by the mean
relative episode time of the steps they win, and each episode decoded by dynamic programming into
the best *non-decreasing* sequence of ranks (a left-to-right Viterbi path). So concept ids are
monotone within every demo by construction; `data/concept` holds the rank, `data/key_state` is True
at the last step of each segment.

Differences from the public code (zrllrz/InfoCon), on purpose: no time-sphere embedding of the
episode-normalised time inside the codebook (our windows do not know the episode length), hence the
post-hoc time ranking + monotone decoding; a bidirectional window encoder (offline labelling) instead
of a causal GPT; one score head applied to every codebook entry instead of hyper-network parameters
per concept trained in rotation; plain MLP heads instead of GPT heads; a continuous warm-up + k-means
fit instead of their separate reconstruction-only pretraining stage. Loss weights follow their
script where they map (state reconstruction 0.1; the score term small, like their coe_cluster).
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from einops import repeat
from torch import nn

from robolearn.datasets.store import EpisodeStore
from robolearn.errors import UserError
from robolearn.nn.mlp import mlp
from robolearn.pretrain.base import PretrainConfig, Pretrainer, masked_mean, register_pretrainer

log = logging.getLogger(__name__)


@dataclass
class InfoConConfig(PretrainConfig):
    obs_keys: list[str] = field(default_factory=lambda: ["state"])  # low-dim keys only
    window_len: int = 16  # L steps per training window
    n_concepts: int = 6  # K codebook entries
    code_dim: int = 16
    d_model: int = 64
    n_heads: int = 4
    n_layers: int = 2
    hidden: int = 128  # width of the head MLPs
    vq_warmup: int = 200  # steps of training on the continuous codes before the codebook is fitted (k-means)
    temperature: float = 0.1  # softmax temperature over cosine similarities (the paper's KT)
    codebook_momentum: float = 0.95  # EMA of the codebook entries (the paper's code: 0.95)
    dead_usage: float = 0.02  # restart an entry whose running share of steps falls below this / K
    commit_weight: float = 0.25
    rec_weight: float = 0.1  # the paper's script: coe_rec=0.1
    key_weight: float = 1.0
    action_weight: float = 1.0
    score_weight: float = 0.1  # small: its gradient favours concepts that are a function of the state alone

    def validate(self, where: str = "pretrain") -> None:
        super().validate(where)
        if self.window_len < 2 or self.n_concepts < 2:
            raise UserError(f"{where}.window_len/n_concepts: expected >= 2")
        if self.image_keys:
            raise UserError(f"{where}.obs_keys: infocon uses low-dim keys only, got cameras {self.image_keys}")
        if self.d_model % self.n_heads:
            raise UserError(f"{where}.d_model: must be divisible by n_heads ({self.n_heads})")


def segment_ends(ids: torch.Tensor, valid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per step, the index of the last step of its segment within the window (B, L), and whether
    that end is known (the id changes, or the episode ends, inside the window)."""
    n = ids.shape[1]
    boundary = torch.zeros_like(valid)
    boundary[:, :-1] = (ids[:, 1:] != ids[:, :-1]) | ~valid[:, 1:]
    end = torch.full_like(ids, n - 1)
    known = torch.zeros_like(valid)
    for i in range(n - 2, -1, -1):
        end[:, i] = torch.where(boundary[:, i], i, end[:, i + 1])
        known[:, i] = boundary[:, i] | known[:, i + 1]
    return end, known


@register_pretrainer("infocon")
class InfoCon(Pretrainer):
    config_class = InfoConConfig
    needs_images = False
    needs_actions = True

    def __init__(self, config: InfoConConfig, stats: dict[str, dict]):
        super().__init__(config, stats)
        c = config
        ds, da, dc, h = sum(int(c.obs_shapes[k][-1]) for k in c.lowdim_keys), c.action_dim, c.code_dim, c.hidden
        self.embed = nn.Linear(ds + da, c.d_model)
        self.pos = nn.Parameter(torch.randn(1, c.window_len, c.d_model) * 0.02)
        layer = nn.TransformerEncoderLayer(c.d_model, c.n_heads, 4 * c.d_model, 0.0, batch_first=True, norm_first=True)
        self.seq = nn.TransformerEncoder(layer, c.n_layers, norm=nn.LayerNorm(c.d_model), enable_nested_tensor=False)
        self.to_code = nn.Linear(c.d_model, dc)
        self.register_buffer("codebook", F.normalize(torch.randn(c.n_concepts, dc), dim=-1))  # (K, C)
        self.register_buffer("usage", torch.full((c.n_concepts,), 1.0 / c.n_concepts))  # running share of steps
        self.register_buffer("initialized", torch.zeros((), dtype=torch.bool))
        self.register_buffer("steps", torch.zeros((), dtype=torch.int64))  # training steps seen
        self.rec_head = mlp(dc, [h, h], ds)  # generative: s_t from the concept alone
        self.key_head = mlp(ds + dc, [h, h], ds)  # generative: the segment's end state
        self.policy = mlp(ds + dc, [h, h], da)  # discriminative: concept-conditioned policy
        self.score = mlp(ds + dc, [h], 1)  # discriminative: is s_t in this concept's segment?

    @property
    def window(self) -> tuple[int, int, int]:
        n = self.config.window_len
        return 1, n - 1, n

    def codes(self, states: torch.Tensor, actions: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """(B, L, Ds) normalised states, (B, L, Da) normalised actions -> z_e (B, L, C), unit norm."""
        x = self.embed(torch.cat([states, actions], dim=-1)) + self.pos[:, : states.shape[1]]
        return F.normalize(self.to_code(self.seq(x, src_key_padding_mask=~valid)), dim=-1)

    def compute_loss(self, batch: dict) -> dict[str, torch.Tensor]:
        c = self.config
        s, a = self.lowdim(batch["obs"]), self.normalized_actions(batch)  # (B, L, Ds), (B, L, Da)
        valid = ~batch["obs_is_pad"] if "obs_is_pad" in batch else torch.ones(s.shape[:2], dtype=torch.bool, device=s.device)
        weight = batch.get("weight")
        z = self.codes(s, a, valid)  # (B, L, C)
        if self.training:
            self.steps += 1
            if not bool(self.initialized) and int(self.steps) > c.vq_warmup:
                self._init_codebook(z.detach(), s.detach(), a, valid)
        codebook = self.codebook.clone()  # (K, C); the EMA update below must not touch the autograd graph
        sims = z @ codebook.T  # (B, L, K) cosine similarities
        ids = sims.argmax(-1)  # (B, L)
        e = codebook[ids]
        # straight-through from the softmax(sims / T)-weighted mix of entries (as the paper's code):
        # the value is the chosen entry, the gradient tells z which entries would lower the loss
        soft = torch.softmax(sims / c.temperature, dim=-1) @ codebook  # (B, L, C)
        zq = soft + (e - soft).detach() if bool(self.initialized) else z  # warm-up: continuous codes
        commit = masked_mean(((z - e) ** 2).sum(-1), valid, weight) * float(bool(self.initialized))

        # generative informativeness
        rec = masked_mean(F.mse_loss(self.rec_head(zq), s, reduction="none").mean(-1), valid, weight)
        end, known = segment_ends(ids, valid)
        s_end = torch.gather(s, 1, repeat(end, "b l -> b l d", d=s.shape[-1]))  # (B, L, Ds)
        key_pred = self.key_head(torch.cat([s, zq], dim=-1))
        key = masked_mean(F.mse_loss(key_pred, s_end, reduction="none").mean(-1), valid & known, weight)

        # discriminative informativeness
        act = masked_mean((self.policy(torch.cat([s, zq], dim=-1)) - a).abs().mean(-1), ~batch["action_is_pad"], weight)
        onehot = F.one_hot(ids, c.n_concepts).float()  # (B, L, K)
        # every entry as it is, except the assigned one, which carries z's gradient (its value is unchanged)
        entries = codebook + onehot[..., None] * (zq - zq.detach())[..., None, :]  # (B, L, K, C)
        states = repeat(s, "b l d -> b l k d", k=c.n_concepts)
        logits = self.score(torch.cat([states, entries], dim=-1))[..., 0]  # (B, L, K)
        score = masked_mean(F.binary_cross_entropy_with_logits(logits, onehot, reduction="none").mean(-1), valid, weight)

        if self.training and bool(self.initialized):
            self._update_codebook(z.detach(), ids, valid)
        loss = (c.commit_weight * commit + c.rec_weight * rec + c.key_weight * key
                + c.action_weight * act + c.score_weight * score)
        used = (onehot[valid].sum(0) > 0).sum()
        return {"loss": loss, "commit": commit.detach(), "state_rec": rec.detach(), "key_state": key.detach(),
                "action_l1": act.detach(), "score_bce": score.detach(), "concepts_used": used.float()}

    # --- codebook ------------------------------------------------------------------------------
    @torch.no_grad()
    def _init_codebook(self, z: torch.Tensor, s: torch.Tensor, a: torch.Tensor, valid: torch.Tensor) -> None:
        """Fit the codebook to a batch of codes z (B, L, C): spherical k-means from several
        farthest-point seeds; keep the fit under which the policy head predicts actions best."""
        zv, best = z[valid], None
        for _ in range(8):
            picks = [int(torch.randint(len(zv), (1,)))]
            for _ in range(self.config.n_concepts - 1):
                picks.append(int((zv @ zv[picks].T).max(-1).values.argmin()))
            centers = zv[picks]
            for _ in range(20):
                onehot = F.one_hot((zv @ centers.T).argmax(-1), len(centers)).float()  # (N, K)
                centers = torch.where(onehot.sum(0)[:, None] > 0, F.normalize(onehot.T @ zv, dim=-1), centers)
            zq = centers[(z @ centers.T).argmax(-1)]  # (B, L, C)
            err = (self.policy(torch.cat([s, zq], dim=-1)) - a).abs().mean(-1)[valid].mean()
            if best is None or err < best[0]:
                best = (err, centers)
        self.codebook.copy_(best[1])
        self.initialized.fill_(True)

    @torch.no_grad()
    def _update_codebook(self, z: torch.Tensor, ids: torch.Tensor, valid: torch.Tensor) -> None:
        c, m = self.config, self.config.codebook_momentum
        onehot = F.one_hot(ids, c.n_concepts).float() * valid[..., None]  # (B, L, K)
        counts = onehot.sum((0, 1))  # (K,)
        means = torch.einsum("blk,blc->kc", onehot, z) / counts.clamp_min(1)[:, None]
        moved = F.normalize(m * self.codebook + (1 - m) * means, dim=-1)
        self.codebook.copy_(torch.where(counts[:, None] > 0, moved, self.codebook))
        self.usage.mul_(0.99).add_(0.01 * counts / counts.sum().clamp_min(1))
        dead = self.usage < c.dead_usage / c.n_concepts
        if dead.any():  # restart on the worst-represented codes of this batch
            zv = z[valid]
            worst = (zv @ self.codebook.T).max(-1).values.argsort()[: int(dead.sum())]
            self.codebook[dead] = zv[worst]
            self.usage[dead] = 1.0 / c.n_concepts

    # --- labelling -----------------------------------------------------------------------------
    @torch.no_grad()
    def episode_scores(self, states: dict[str, np.ndarray], actions: np.ndarray) -> np.ndarray:
        """One episode {key: (T, D)}, (T, Da) -> per-step concept log-probabilities (T, K), averaged over
        the L-step windows (starting at t, like the sampler's) that cover each step."""
        n, dev = self.config.window_len, self.codebook.device
        length = len(actions)
        idx = np.arange(length)[:, None] + np.arange(n)[None]  # (T, L) window of the step starting each row
        valid = torch.as_tensor(idx < length, device=dev)
        idx = np.minimum(idx, length - 1)
        obs = {k: torch.as_tensor(v[idx], device=dev) for k, v in states.items()}
        act = self.normalizer.normalize(self.config.action_key, torch.as_tensor(actions[idx], device=dev).float())
        z = self.codes(self.lowdim(obs), act, valid)  # (T, L, C)
        logp = torch.log_softmax(z @ self.codebook.T / self.config.temperature, dim=-1).cpu().numpy()  # (T, L, K)
        total, count = np.zeros((length, logp.shape[-1])), np.zeros((length, 1))
        for i in range(n):  # window t, position i scores step t + i
            total[i:] += logp[: length - i, i]
            count[i:] += 1
        return total / count

    @torch.no_grad()
    def label_episodes(self, store: EpisodeStore) -> tuple[np.ndarray, np.ndarray, dict]:
        """Concept ids (n_steps,) int64, monotone in each episode; key_state (n_steps,) bool; info."""
        c, was_training = self.config, self.training
        self.eval()
        scores = [self.episode_scores(store.get_episode(i, c.lowdim_keys), store.get_episode(i, [c.action_key])[c.action_key])
                  for i in range(store.n_episodes)]
        # rank entries by the mean relative time (0..1) of the steps they win; unused entries last
        won = np.concatenate([s.argmax(-1) for s in scores])
        rel_t = np.concatenate([np.linspace(0, 1, len(s)) for s in scores])
        mean_t = np.array([rel_t[won == k].mean() if np.any(won == k) else 2.0 for k in range(c.n_concepts)])
        order = np.argsort(mean_t, kind="stable")  # rank -> codebook entry
        concept = np.concatenate([monotone_decode(s[:, order]) for s in scores]).astype(np.int64)
        key_state = np.zeros(len(concept), dtype=bool)
        key_state[:-1] = concept[1:] != concept[:-1]
        key_state[store.episode_ends - 1] = True
        info = {"codebook_order": order.tolist(), "mean_time": mean_t[order].round(4).tolist(),
                "concepts_used": int(np.sum(mean_t <= 1.0)),
                "segments_per_episode": float(key_state.sum() / max(1, store.n_episodes))}
        self.train(was_training)
        return concept, key_state, info

    @torch.no_grad()
    def finish(self, out: Path, store_path: str) -> dict[str, str]:
        """Label every episode of the training store (`data/concept`, `data/key_state`) and write a
        summary (`infocon_labels.json`: concept order, segment counts, and agreement with the
        store's true `phase` vs a fixed-length baseline when it has one)."""
        if not bool(self.initialized):
            log.warning("infocon: the codebook was never fitted (train.steps <= vq_warmup); labels are arbitrary")
        store = EpisodeStore.open(store_path, mode="a")
        concept, key_state, info = self.label_episodes(store)
        store.write_labels({"concept": concept, "key_state": key_state})
        if "phase" in store.keys:  # baseline: as many equal segments as the median demo has true phases
            phase, lengths = store.get("phase"), store.episode_lengths
            k = int(np.median([1 + np.sum(np.diff(phase[store.episode_slice(i)]) != 0) for i in range(store.n_episodes)]))
            info["infocon"] = segmentation_scores(concept, phase, lengths)
            info["fixed_length"] = {"k": k, **segmentation_scores(fixed_length_segments(lengths, k), phase, lengths)}
        path = Path(out) / "infocon_labels.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps({"store": str(store_path), **info}, indent=2, sort_keys=True))
        os.replace(tmp, path)
        return {"labels": str(store_path), "summary": str(path)}


def monotone_decode(scores: np.ndarray) -> np.ndarray:
    """The non-decreasing id path maximising the summed scores (T, K) (left-to-right Viterbi)."""
    length, k = scores.shape
    best, back = scores[0].copy(), np.zeros((length, k), dtype=np.int64)
    for t in range(1, length):
        run = np.maximum.accumulate(best)  # best score of any path ending at an id <= k
        back[t] = np.maximum.accumulate(np.where(best == run, np.arange(k), 0))  # ... and which id
        best = run + scores[t]
    path = np.zeros(length, dtype=np.int64)
    path[-1] = int(best.argmax())
    for t in range(length - 1, 0, -1):
        path[t - 1] = back[t, path[t]]
    return path


# --- benchmark helpers ---------------------------------------------------------------------------
def fixed_length_segments(lengths, k: int) -> np.ndarray:
    """Baseline: every episode cut into k equal-length segments; ids (sum(lengths),) int64."""
    return np.concatenate([np.arange(t) * k // t for t in lengths]).astype(np.int64)


def adjusted_rand_index(a: np.ndarray, b: np.ndarray) -> float:
    """ARI of two labelings of the same items (Hubert & Arabie), as sklearn.metrics.adjusted_rand_score."""
    _, ia = np.unique(a, return_inverse=True)
    _, ib = np.unique(b, return_inverse=True)
    table = np.zeros((ia.max() + 1, ib.max() + 1), dtype=np.int64)
    np.add.at(table, (ia, ib), 1)

    def pairs(x):
        return float((x * (x - 1) // 2).sum())

    index, rows, cols, total = pairs(table), pairs(table.sum(1)), pairs(table.sum(0)), pairs(np.array([len(a)]))
    expected = rows * cols / total if total else 0.0
    denom = 0.5 * (rows + cols) - expected
    return 1.0 if denom == 0 else (index - expected) / denom


def segmentation_scores(pred_ids: np.ndarray, true_phase: np.ndarray, lengths=None) -> dict[str, float]:
    """Agreement of a per-step segmentation with the true phases. `lengths`: episode lengths (one
    episode if None). ari: mean per-episode ARI; ari_pooled: over all steps (concept identity across
    demos counts too); key_state_error_steps: mean distance from each true phase end (inside an
    episode) to the nearest predicted segment end."""
    pred_ids, true_phase = np.asarray(pred_ids), np.asarray(true_phase)
    lengths = [len(pred_ids)] if lengths is None else [int(t) for t in lengths]
    if sum(lengths) != len(pred_ids) or len(pred_ids) != len(true_phase):
        raise ValueError("pred_ids, true_phase and lengths must cover the same steps")
    aris, errors, start = [], [], 0
    for t in lengths:
        p, q = pred_ids[start : start + t], true_phase[start : start + t]
        start += t
        aris.append(adjusted_rand_index(p, q))
        pred_ends = np.r_[np.flatnonzero(p[1:] != p[:-1]), t - 1]
        for e in np.flatnonzero(q[1:] != q[:-1]):
            errors.append(float(np.abs(pred_ends - e).min()))
    return {"ari": float(np.mean(aris)), "ari_pooled": adjusted_rand_index(pred_ids, true_phase),
            "key_state_error_steps": float(np.mean(errors)) if errors else 0.0}

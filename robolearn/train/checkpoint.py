"""Training checkpoints, written atomically, safetensors + JSON only (no pickle).

checkpoints/step_N/
    model.safetensors, config.json, stats.json   the policy (EMA weights when EMA is on)
    trainer_state.safetensors                    raw weights, optimizer tensors, torch RNG states
    trainer_state.json                           step, optimizer hyper-params, scheduler, EMA count,
                                                 numpy/python RNG states
checkpoints/last -> step_N                       a relative symlink, swapped in one rename
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from robolearn.errors import UserError
from robolearn.files import atomic_dir
from robolearn.policies.base import Policy

STATE_T = "trainer_state.safetensors"
STATE_J = "trainer_state.json"


def rng_state() -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    tensors = {"rng.torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{i}"] = s
    np_state = np.random.get_state()
    tensors["rng.numpy.keys"] = torch.from_numpy(np_state[1].astype(np.int64))
    py = random.getstate()
    meta = {"numpy": [np_state[0], int(np_state[2]), int(np_state[3]), float(np_state[4])], "python": [py[0], list(py[1]), py[2]]}
    return tensors, meta


def set_rng_state(tensors: dict[str, torch.Tensor], meta: dict[str, Any], rank: int = 0) -> None:
    if rank > 0:
        prefix = f"rank{rank}."
        if prefix + "rng.torch" not in tensors:  # saved under a smaller world size: derive a per-rank stream
            set_rng_state(tensors, meta, 0)
            torch.manual_seed(int(tensors["rng.torch"].sum()) + rank)
            return
        tensors = {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
        meta = {"numpy": meta["rng_other_ranks"][rank - 1]["numpy"], "python": meta["rng_other_ranks"][rank - 1]["python"]}
        set_rng_state(tensors, {"rng": meta})
        return
    meta = meta["rng"]
    torch.set_rng_state(tensors["rng.torch"])
    cuda = [tensors[k] for k in sorted(k for k in tensors if k.startswith("rng.cuda."))]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda[: torch.cuda.device_count()])
    name, pos, has_gauss, gauss = meta["numpy"]
    np.random.set_state((name, tensors["rng.numpy.keys"].numpy().astype(np.uint32), pos, has_gauss, gauss))
    version, internal, gauss_next = meta["python"]
    random.setstate((version, tuple(internal), gauss_next))


def optimizer_to_flat(opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    sd = opt.state_dict()
    tensors, scalars = {}, {}
    for idx, st in sd["state"].items():
        for name, v in st.items():
            if isinstance(v, torch.Tensor):
                tensors[f"optim.{idx}.{name}"] = v.detach().cpu().contiguous()
            else:
                scalars[f"{idx}.{name}"] = v
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def optimizer_from_flat(opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    state: dict[int, dict[str, Any]] = {}
    for key, v in tensors.items():
        if key.startswith("optim."):
            _, idx, name = key.split(".", 2)
            state.setdefault(int(idx), {})[name] = v
    for key, v in meta["scalars"].items():
        idx, name = key.split(".", 1)
        state.setdefault(int(idx), {})[name] = v
    groups = [dict(g, betas=tuple(g["betas"])) if "betas" in g else g for g in meta["param_groups"]]
    opt.load_state_dict({"state": state, "param_groups": groups})


def write_checkpoint(
    ckpt_root: Path,
    step: int,
    policy_to_save: Policy,
    raw_model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    ema_updates: int,
    extra: dict[str, Any],
    keep: int = 0,
    other_ranks_rng: list[tuple[dict[str, torch.Tensor], dict[str, Any]]] = (),
) -> Path:
    """Write checkpoints/step_N atomically, then point checkpoints/last at it."""
    target = ckpt_root / f"step_{step}"
    with atomic_dir(target) as tmp:
        policy_to_save.write_files(tmp)
        tensors = {f"model.{k}": v.detach().cpu().contiguous().clone() for k, v in raw_model.state_dict().items()}
        opt_t, opt_meta = optimizer_to_flat(optimizer)
        rng_t, rng_meta = rng_state()
        for r, (t_r, _) in enumerate(other_ranks_rng, start=1):  # DDP: every rank's noise stream
            rng_t.update({f"rank{r}.{k}": v for k, v in t_r.items()})
        save_file({**tensors, **opt_t, **rng_t}, str(tmp / STATE_T))
        meta = {
            "step": step,
            "optimizer": opt_meta,
            "scheduler": scheduler.state_dict(),
            "ema_updates": ema_updates,
            "rng": rng_meta,
            "rng_other_ranks": [m for _, m in other_ranks_rng],
            **extra,
        }
        (tmp / STATE_J).write_text(json.dumps(meta, indent=1))
    link_tmp = ckpt_root / f".last.tmp-{os.getpid()}"
    if link_tmp.is_symlink() or link_tmp.exists():
        link_tmp.unlink()
    os.symlink(target.name, link_tmp)
    os.replace(link_tmp, ckpt_root / "last")
    if keep > 0:
        _prune(ckpt_root, keep, protect=target.name)
    return target


def _prune(root: Path, keep: int, protect: str) -> None:
    steps = sorted((int(m.group(1)), p) for p in root.iterdir() if (m := re.fullmatch(r"step_(\d+)", p.name)))
    for _, p in steps[:-keep]:
        if p.name != protect:
            shutil.rmtree(p, ignore_errors=True)


def read_trainer_state(ckpt: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    for name in (STATE_T, STATE_J, "model.safetensors"):
        if not (ckpt / name).is_file():
            raise UserError(f"{ckpt}: missing {name}, cannot resume")
    try:
        meta = json.loads((ckpt / STATE_J).read_text())
    except json.JSONDecodeError as exc:
        raise UserError(f"{ckpt / STATE_J}: invalid JSON ({exc})") from None
    return load_file(str(ckpt / STATE_T)), meta


def read_ema_weights(ckpt: Path) -> dict[str, torch.Tensor]:
    return load_file(str(ckpt / "model.safetensors"))

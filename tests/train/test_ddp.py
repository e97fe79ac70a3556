"""Two processes on CPU with gloo under torchrun: DDP trains and rank 0 checkpoints once, then resumes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch
from train_helpers import make_toy_store, to_toml, toy_recipe

from robolearn.policies import load_policy

REPO = Path(__file__).resolve().parents[2]


def test_two_process_gloo_ddp_trains_and_checkpoints_once(tmp_path):
    store = make_toy_store(tmp_path / "toy.zarr", n_episodes=4, bimodal=False)
    recipe = toy_recipe(store, "bc", tmp_path / "run", steps=6, checkpoint_every=6, batch_size=8)
    (tmp_path / "ddp.toml").write_text(to_toml(recipe))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "robolearn.cli", "train", "--recipe", str(tmp_path / "ddp.toml")]
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    assert res.stdout.count("trained bc to step 6") == 1  # only rank 0 reports
    ckpts = tmp_path / "run" / "checkpoints"
    assert sorted(p.name for p in ckpts.iterdir()) == ["last", "step_6"]  # written once, no temp leftovers
    state = json.loads((ckpts / "last" / "trainer_state.json").read_text())
    assert state["world_size"] == 2 and state["step"] == 6
    log = [json.loads(x) for x in (tmp_path / "run" / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == list(range(1, 7))  # one log, from rank 0
    assert all(torch.isfinite(torch.tensor(r["loss"])) for r in log)
    # resume the 2-process run to step 8 (every rank restores its own RNG stream)
    res = subprocess.run(cmd[:-2] + ["--resume", str(tmp_path / "run"), "train.steps=8"], env=env,
                         capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    log = [json.loads(x) for x in (tmp_path / "run" / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == list(range(1, 9))
    assert (ckpts / "last").resolve().name == "step_8"
    policy = load_policy(ckpts / "last")
    assert policy.predict_action_chunk({"state": torch.zeros(1, 2, 2)}).shape == (1, 8, 2)

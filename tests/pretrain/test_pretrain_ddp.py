"""`robolearn pretrain` under torchrun: two CPU processes with gloo train one DDP pretrainer, exactly
as `robolearn train` does (tests/train/test_ddp.py). Rank 0 alone writes the checkpoints, the log
and the outputs (the exported encoder, InfoCon's store labels); the ranks hold the same weights, and
two ranks of batch B match one process of batch 2B."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file

from robolearn.datasets.store import EpisodeStore
from robolearn.pretrain.base import load_pretrainer, pretrainer_class
from robolearn.train.pretrain_run import load_pretrain_recipe, open_pretrain_data, pretrain, resume_pretrain_config
from robolearn.train.trainer import seed_everything

REPO = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]

# Runs pretrain() on argv[1] (a recipe) and, after training, writes every rank's trained weights to
# argv[2]/rank<R>.safetensors, which the CLI does not (only rank 0 writes anything).
DUMP_WEIGHTS = """
import sys
from pathlib import Path
from safetensors.torch import save_file
from robolearn.train.pretrain_run import load_pretrain_recipe, pretrain
from robolearn.train.trainer import Trainer

fit = Trainer.fit

def fit_and_dump(self, stop_at=None):
    result = fit(self, stop_at)
    weights = {k: v.detach().cpu().contiguous() for k, v in self.policy.state_dict().items()}
    save_file(weights, str(Path(sys.argv[2]) / f"rank{self.dist.rank}.safetensors"))
    return result

Trainer.fit = fit_and_dump
pretrain(load_pretrain_recipe(sys.argv[1]))
"""


def _torchrun(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    res = subprocess.run(TORCHRUN + args, env=ENV, capture_output=True, text=True, timeout=300, cwd=cwd)
    assert res.returncode == 0, res.stderr[-3000:]
    return res


def _log_steps(run_dir: Path) -> list[int]:
    return [json.loads(x)["step"] for x in (run_dir / "train_log.jsonl").read_text().splitlines()]


def test_two_process_dynamo_pretrains_checkpoints_and_exports_once(square_store, tiny_recipe, to_toml, tmp_path):
    run_dir = tmp_path / "run"
    recipe = tiny_recipe(square_store, "dynamo", run_dir, pretrain={"window_size": 3},
                         train={"steps": 4, "batch_size": 8, "checkpoint_every": 2})
    (tmp_path / "dynamo.toml").write_text(to_toml(recipe))
    res = _torchrun(["-m", "robolearn.cli", "pretrain", "--recipe", str(tmp_path / "dynamo.toml")], tmp_path)
    assert res.stdout.count("pretrained dynamo to step 4") == 1  # only rank 0 reports
    assert res.stdout.count(f"encoder: {run_dir / 'encoder'}") == 1
    assert sorted(p.name for p in run_dir.iterdir()) == [  # no temp leftovers of two writers
        "checkpoints", "config.json", "encoder", "train_log.jsonl", "train_loss.png"]
    assert sorted(p.name for p in (run_dir / "encoder").iterdir()) == ["encoder.json", "encoder.safetensors"]
    ckpts = run_dir / "checkpoints"
    assert sorted(p.name for p in ckpts.iterdir()) == ["last", "step_2", "step_4"]
    state = json.loads((ckpts / "last" / "trainer_state.json").read_text())
    assert (state["world_size"], state["step"], state["kind"]) == (2, 4, "pretrain")
    assert _log_steps(run_dir) == [1, 2, 3, 4]  # one log, from rank 0
    # the exported encoder is the final checkpoint's (EMA) encoder
    exported = load_file(str(run_dir / "encoder" / "encoder.safetensors"))
    final = load_pretrainer(run_dir).encoder.state_dict()
    assert exported.keys() == final.keys() and all(torch.equal(exported[k], final[k]) for k in exported)

    # the two-process run resumes in one process (rank 0's random streams) and exports again
    resumed = pretrain(resume_pretrain_config(run_dir, ["train.steps=6"]), resume=run_dir)
    assert resumed.step == 6 and resumed.outputs == {"encoder": str(run_dir / "encoder")}
    assert _log_steps(run_dir) == list(range(1, 7)) and (ckpts / "last").resolve().name == "step_6"


def test_two_ranks_hold_the_same_weights_as_one_process_with_the_doubled_batch(square_store, tiny_recipe, to_toml, tmp_path):
    def recipe(out: Path, batch_size: int) -> dict:  # deterministic steps: center crops, no dropout, no EMA
        return tiny_recipe(square_store, "inverse_dynamics", out, pretrain={"crop": "center", "dropout": 0.0},
                           train={"steps": 3, "batch_size": batch_size, "ema": False, "warmup_steps": 1})

    (tmp_path / "ddp.toml").write_text(to_toml(recipe(tmp_path / "ddp", 8)))
    (tmp_path / "dump.py").write_text(DUMP_WEIGHTS)
    _torchrun([str(tmp_path / "dump.py"), str(tmp_path / "ddp.toml"), str(tmp_path)], tmp_path)
    rank0, rank1 = (load_file(str(tmp_path / f"rank{r}.safetensors")) for r in (0, 1))
    assert rank0.keys() == rank1.keys() and all(torch.equal(rank0[k], rank1[k]) for k in rank0)
    saved = load_file(str(tmp_path / "ddp" / "checkpoints" / "last" / "model.safetensors"))
    assert all(torch.equal(saved[k], rank0[k]) for k in saved)  # rank 0's weights are the checkpoint's

    # one process, batch 16: the same 16 windows per step (rank r takes every other one), the same
    # mean gradient up to how each side weights the few windows without a real o_{t+1}
    pretrain(load_pretrain_recipe(None, [], base=recipe(tmp_path / "single", 16)))
    one = load_file(str(tmp_path / "single" / "checkpoints" / "last" / "model.safetensors"))
    run = load_pretrain_recipe(None, [], base=recipe(tmp_path / "unused", 16))
    _, stats = open_pretrain_data(run)
    seed_everything(run.train.seed)  # as both runs build it
    init = pretrainer_class(run.method)(run.pretrain, stats).state_dict()

    def distance(a: dict, b: dict) -> float:
        return float(torch.cat([(a[k].float() - b[k].float()).flatten() for k in one]).norm())

    # measured: 0.005 apart after moving 0.65 (one process on batch 8 ends 0.57 away)
    assert distance(rank0, one) < 0.05 * distance(one, init)


def test_two_process_infocon_labels_the_store_once_from_rank_0(square_store, tiny_recipe, to_toml, tmp_path):
    run_dir = tmp_path / "run"
    small = {"obs_keys": ["state"], "window_len": 4, "n_concepts": 3, "d_model": 16, "n_heads": 2, "n_layers": 1,
             "hidden": 16, "vq_warmup": 2}  # the codebook is fitted (k-means on a batch) under DDP too
    recipe = tiny_recipe(square_store, "infocon", run_dir, pretrain=small, train={"steps": 4, "batch_size": 8})
    (tmp_path / "infocon.toml").write_text(to_toml(recipe))
    res = _torchrun(["-m", "robolearn.cli", "pretrain", "--recipe", str(tmp_path / "infocon.toml")], tmp_path)
    assert res.stdout.count(f"labels: {square_store}") == 1 and res.stdout.count("summary: ") == 1
    store = EpisodeStore.open(square_store)
    assert {"concept", "key_state"} <= set(store.keys)
    assert not (Path(square_store) / ".labels_tmp").exists()  # moved into data/ whole
    concept, key_state = store.get("concept"), store.get("key_state")
    assert len(concept) == len(key_state) == store.n_steps
    for i in range(store.n_episodes):
        c, k = concept[store.episode_slice(i)], key_state[store.episode_slice(i)]
        assert (c[1:] >= c[:-1]).all() and k[-1]  # monotone within a demo, a segment ends with it
    summary = json.loads((run_dir / "infocon_labels.json").read_text())
    assert summary["store"] == square_store and not list(run_dir.glob("*.tmp"))

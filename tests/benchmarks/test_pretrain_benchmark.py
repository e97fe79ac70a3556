"""benchmarks/pretrain.py: the probe's maths and the results bookkeeping that several sessions and
machines (the CPU budget, the GPU variant) write into one table."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))
import pretrain as bench  # noqa: E402


def test_ridge_probe_scores_a_linear_readout_high_and_noise_near_zero():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(600, 32))
    w = rng.normal(size=(32, 3))
    y = x @ w + 0.01 * rng.normal(size=(600, 3))
    assert bench.ridge_r2(x[:400], y[:400], x[400:], y[400:]) > 0.99
    noise = rng.normal(size=(600, 3))  # features that carry nothing about the target
    assert bench.ridge_r2(x[:400], noise[:400], x[400:], noise[400:]) < 0.05


def _row(task, profile, encoder, demos, rate, **extra):
    return {"task": task, "profile": profile, "encoder": encoder, "source": "-" if encoder == "scratch" else "multitask",
            "demos": demos, "policy_steps": 1000, "episodes": 50, "success_rate": rate, "wilson95": [0.0, 1.0],
            "wall_s": 1.0, **extra}


def test_rows_are_keyed_by_task_and_profile_and_old_rows_read_as_lift_on_the_cpu(tmp_path):
    old = {k: v for k, v in _row("lift", "cpu", "scratch", 10, 0.22).items() if k not in ("task", "profile")}
    (tmp_path / "pretrain.json").write_text(json.dumps({"downstream": [old]}))
    bench.merge("downstream", [_row("stack", "cpu", "scratch", 10, 0.04)], tmp_path)  # same encoder/demos, other task
    bench.merge("downstream", [_row("lift", "gpu", "scratch", 10, 0.5)], tmp_path)
    bench.merge("downstream", [_row("stack", "cpu", "scratch", 10, 0.06)], tmp_path)  # a re-run replaces its row
    rows = bench.load_results(tmp_path / "pretrain.json")["downstream"]
    assert sorted((r["task"], r["profile"], r["success_rate"]) for r in rows) == [
        ("lift", "cpu", 0.22), ("lift", "gpu", 0.5), ("stack", "cpu", 0.06)]
    assert not list(tmp_path.glob("*.tmp"))


def test_import_merges_another_machines_rows_and_the_table_groups_them(tmp_path):
    ours, theirs = tmp_path / "ours", tmp_path / "theirs"
    ours.mkdir(), theirs.mkdir()
    bench.merge("downstream", [_row("lift", "cpu", "scratch", 10, 0.22)], ours)
    bench.merge("downstream", [_row("lift", "gpu", "scratch", 10, 0.5), _row("lift", "gpu", "dynamo", 50, 0.7)], theirs)
    bench.merge("probe", [{"task": "lift", "profile": "gpu", "encoder": "random", "eef_pos_r2": 0.8,
                           "object_pos_r2": 0.3, "wall_s": 2.0}], theirs)
    bench.import_rows(theirs / "pretrain.json", ours)
    data = bench.load_results(ours / "pretrain.json")
    assert len(data["downstream"]) == 3 and len(data["probe"]) == 1
    table = bench.render(data, ours)
    assert table.index("## lift, cpu profile") < table.index("## lift, gpu profile")
    gpu = table[table.index("## lift, gpu profile"):]
    assert "| dynamo | multitask | 50 | 1000 | 50 (horizon) | 0.70 (0.00-1.00) |" in gpu
    assert "| random | 0.800 | 0.300 |" in gpu
    assert (ours / "pretrain.md").read_text() == table


@pytest.mark.parametrize("task", sorted(bench.TASK_DEMOS))
def test_probe_scores_on_held_out_episodes_only(task):
    held = bench.probe_episodes(task)
    assert len(held) == 50 and max(held) == bench.TASK_DEMOS[task] - 1
    assert not set(held) & set(bench.PRETRAIN_EPISODES)


def test_subgoal_rows_render_in_label_order(tmp_path):
    rows = [{"task": "pick_place_can", "subgoal": v, "demos": 50, "seed": 0, "policy_steps": 3000, "episodes": 50,
             "success_rate": rate, "wilson95": [0.1, 0.9], "wall_s": 1.0}
            for v, rate in (("oracle", 0.7), ("none", 0.5), ("infocon", 0.6))]
    bench.merge("subgoal", rows, tmp_path)
    table = bench.render(bench.load_results(tmp_path / "pretrain.json"), tmp_path)
    lines = [line for line in table.splitlines() if line.startswith("| pick_place_can |")]
    assert [line.split(" | ")[1] for line in lines] == ["none", "infocon", "oracle"]
    assert "Pooled" not in table  # one seed each: nothing to pool
    bench.merge("subgoal", [{**rows[1], "seed": 1, "success_rate": 0.7}], tmp_path)
    table = bench.render(bench.load_results(tmp_path / "pretrain.json"), tmp_path)
    assert "| pick_place_can | none | 50 | 2 | 60 / 100 | 0.60 (" in table

"""benchmarks/eval_modes.py runs every mode through `robolearn eval` and writes its JSON and table."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from test_runner import lift_checkpoint

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_eval_modes_benchmark_quick(tmp_path):
    ckpt = lift_checkpoint(tmp_path / "policy")
    out, table = tmp_path / "eval_modes.json", tmp_path / "eval_modes.md"
    subprocess.run([sys.executable, str(ROOT / "benchmarks" / "eval_modes.py"), "--checkpoint", ckpt, "--quick",
                    "--workers", "0", "--latencies", "0,2", "--out", str(out), "--table", str(table)],
                   check=True, cwd=tmp_path, timeout=900)
    result = json.loads(out.read_text())
    assert [(r["mode"], r["latency_steps"]) for r in result["results"]] == \
        [("receding", 0), ("ensemble", 0), ("rtc", 0), ("receding", 2), ("ensemble", 2), ("rtc", 2)]
    assert all(r["episodes"] == 2 and r["errors"] == 0 and r["n_boundaries"] > 0 for r in result["results"])
    assert result["results"][1]["chunks_predicted"] == 2 * 20  # ensemble predicts every step (latency 0)
    assert "| ensemble |" in table.read_text()

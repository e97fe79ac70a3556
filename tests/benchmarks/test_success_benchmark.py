"""The headline success benchmark runs a row end to end and merges it (slow: collect + train + eval)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_success_benchmark_runs_a_row_and_merges_it(tmp_path):
    results = tmp_path / "results"
    results.mkdir()
    base = [sys.executable, str(ROOT / "benchmarks" / "success.py"), "--task", "lift", "--demos", "3", "--steps", "20",
            "--evals", "1", "--episodes", "2", "--workers", "1", "--results", str(results), "--scratch", str(tmp_path),
            "--override", "eval_max_steps=5"]
    for method in ("bc", "act"):
        subprocess.run([*base, "--method", method], check=True, cwd=ROOT, capture_output=True)
    data = json.loads((results / "success.json").read_text())
    assert sorted(r["method"] for r in data["rows"]) == ["act", "bc"]
    row = data["rows"][0]
    assert row["max"]["step"] == 20 and 0.0 <= row["max"]["success_rate"] <= 1.0 and "command" in row
    table = (results / "success.md").read_text()
    assert table.count("| lift | state |") == 2

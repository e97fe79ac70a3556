"""The package's layers stay one-way (.importlinter at the repo root, checked with import-linter):
datasets/nn -> sim -> policies/pretrain -> train -> eval/real_robot -> quickstart -> cli."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _lint(cwd: Path) -> subprocess.CompletedProcess:
    exe = shutil.which("lint-imports")
    if exe is None:
        pytest.fail("lint-imports not installed (pip install -e '.[dev]' brings import-linter)")
    return subprocess.run([exe, "--no-cache"], cwd=cwd, capture_output=True, text=True, timeout=300,
                          env={"PATH": str(Path(sys.executable).parent) + ":/usr/bin:/bin", "PYTHONPATH": str(cwd)})


def test_import_linter_contracts_pass():
    res = _lint(ROOT)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-2000:]
    assert "0 broken" in res.stdout


def test_the_contracts_catch_an_upward_import(tmp_path):
    """A copy of the package where the datasets layer imports the CLI must fail the lint."""
    shutil.copytree(ROOT / "robolearn", tmp_path / "robolearn", ignore=shutil.ignore_patterns("__pycache__", "data"))
    shutil.copy(ROOT / ".importlinter", tmp_path / ".importlinter")
    bad = tmp_path / "robolearn" / "datasets" / "upward.py"
    bad.write_text("from robolearn import cli  # noqa: F401\n")
    res = _lint(tmp_path)
    assert res.returncode != 0
    assert "robolearn.datasets is not allowed to import robolearn.cli" in res.stdout

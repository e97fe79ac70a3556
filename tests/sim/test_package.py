"""robolearn installs like a library: the task suite and MJCF assets ship inside the package (a wheel
works from any directory), and a user's own suite file is read on top of the packaged one."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

from robolearn.errors import UserError
from robolearn.sim.suite import ASSETS_DIR, SUITE_PATH, load_suite, use_user_suite

ROOT = Path(__file__).resolve().parents[2]
PACKAGE_DATA = [
    "robolearn/sim/data/tasks.toml",
    *(f"robolearn/sim/data/assets/multi_cube/cube_{c}.xml" for c in ("red", "green", "blue", "yellow")),
]


def _has_build_backend() -> bool:
    """setuptools >= 68 with bdist_wheel (built in from 70.1, else the wheel package) is installed."""
    try:
        import setuptools
    except ImportError:
        return False
    major, minor = (int(x) for x in setuptools.__version__.split(".")[:2])
    return (major, minor) >= (70, 1) or (major >= 68 and importlib.util.find_spec("wheel") is not None)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """A wheel built from a copy of the sources (no build/ or egg-info written into the working tree)."""
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    shutil.copytree(ROOT / "robolearn", src / "robolearn", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    dist = tmp / "dist"
    # offline with the installed setuptools when it is new enough, else pip fetches pyproject's build requirements
    isolation = ["--no-build-isolation"] if _has_build_backend() else []
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", *isolation, "-w", str(dist), str(src)],
                   check=True, cwd=tmp, timeout=300)  # fmt: skip
    (whl,) = dist.glob("robolearn-*.whl")
    return whl


def test_packaged_suite_lives_inside_the_package():
    package = Path(__import__("robolearn").__file__).parent
    assert SUITE_PATH.is_relative_to(package) and ASSETS_DIR.is_relative_to(package)
    assert {"lift", "stack", "pick_place_can", "nut_assembly_square", "door", "multi_cube"} <= set(load_suite())
    assert sorted(p.name for p in (ASSETS_DIR / "multi_cube").glob("*.xml")) == [
        "cube_blue.xml", "cube_green.xml", "cube_red.xml", "cube_yellow.xml"]  # fmt: skip


def test_wheel_ships_the_task_suite_and_assets(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    assert set(PACKAGE_DATA) <= names
    assert "robolearn/quickstart.py" in names and "robolearn/sim/suite.py" in names
    assert not any(n.startswith(("sim/", "tests/")) for n in names)


def test_wheel_installed_in_a_fresh_venv_collects_from_an_empty_directory(wheel, tmp_path):
    """The wheel's robolearn (not the editable checkout) collects a Lift and a multi_cube episode: its suite
    and MJCF assets come from the installed package. torch/robosuite come from the system site-packages."""
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(system_site_packages=True, with_pip=False).create(env_dir)
    py, cli = env_dir / "bin" / "python", env_dir / "bin" / "robolearn"
    # the system pip, run by the venv's interpreter, installs into the venv only
    subprocess.run([str(py), "-m", "pip", "install", "-q", "--no-deps", "--force-reinstall", str(wheel)],
                   check=True, timeout=300)  # fmt: skip
    empty = tmp_path / "empty"
    empty.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "ROBOLEARN_TASKS")}
    where = subprocess.run([str(py), "-c", "import robolearn, robolearn.sim.suite as s; print(robolearn.__file__); "
                            "print(s.SUITE_PATH)"], cwd=empty, env=env, capture_output=True, text=True, check=True)  # fmt: skip
    module, suite = where.stdout.split()
    assert Path(module).is_relative_to(env_dir) and Path(suite).is_file() and Path(suite).is_relative_to(env_dir)

    from robolearn.datasets.store import EpisodeStore

    # the command as a new user types it (Lift with its default camera), then a scene of our own MJCF
    for argv, store in ((["lift", "--episodes", "1"], "datasets/stores/lift.zarr"),
                        (["multi_cube", "--episodes", "1", "--out", "X.zarr", "--cameras", ""], "X.zarr")):
        r = subprocess.run([str(cli), "collect", *argv, "--no-progress"], cwd=empty, env=env, capture_output=True,
                           text=True, timeout=600)  # fmt: skip
        assert r.returncode == 0, r.stderr[-2000:]
        assert EpisodeStore.open(str(empty / store)).n_episodes == 1


# ---------------------------------------------------------------------- user suite files
def test_user_suite_adds_tasks_and_overrides_only_the_keys_it_gives(tmp_path):
    user = tmp_path / "tasks.toml"
    user.write_text('[defaults]\nimage_size = 96\n\n[tasks.lift]\ncameras = ["agentview"]\n\n'
                    '[tasks.can_long]\nenv = "PickPlaceCan"\nhorizon = 600\n')  # fmt: skip
    suite, packaged = load_suite(str(user)), load_suite()
    assert suite["lift"].cameras == ("agentview",) and suite["lift"].image_size == 96
    assert suite["lift"].horizon == packaged["lift"].horizon and suite["lift"].instruction == packaged["lift"].instruction
    assert suite["can_long"].horizon == 600 and suite["can_long"].image_size == 96
    assert suite["stack"] == packaged["stack"]  # user [defaults] touch only the user's tasks
    assert "can_long" not in packaged


def test_the_example_user_suite_in_sim_loads():
    suite = load_suite(str(ROOT / "sim" / "tasks.toml"))
    assert suite["lift"].cameras == ("agentview",)


def test_tasks_option_reaches_worker_processes_through_the_environment(tmp_path, monkeypatch):
    user = tmp_path / "tasks.toml"
    user.write_text('[tasks.lift_short]\nenv = "Lift"\nhorizon = 50\n')
    monkeypatch.setenv("ROBOLEARN_TASKS", "")  # restored (unset) after the test
    use_user_suite(str(user))
    assert os.environ["ROBOLEARN_TASKS"] == str(user.resolve())
    assert load_suite()["lift_short"].horizon == 50


@pytest.mark.parametrize(
    "body, names",
    [
        ('[tasks.lift]\nhorizn = 10\n', "tasks.lift: unknown keys ['horizn']"),
        ('[tasks.new]\nenv = "Lift"\n', "tasks.new.horizon: missing"),
        ('[tasks.lift]\nhorizon = "long"\n', "tasks.lift.horizon: expected a positive integer"),
        ('[tasks.lift]\ncameras = "agentview"\n', "tasks.lift.cameras: expected a list"),
        ('[task.lift]\nhorizon = 10\n', "unknown top-level keys ['task']"),
        ("[tasks.lift\n", "cannot read task suite"),
    ],
)
def test_mistakes_in_a_user_suite_are_one_line_naming_file_and_key(tmp_path, body, names):
    user = tmp_path / "mine.toml"
    user.write_text(body)
    with pytest.raises(UserError) as err:
        load_suite(str(user))
    msg = str(err.value)
    assert msg.startswith(str(user)) and names in msg and "\n" not in msg


def test_collect_tasks_option_with_a_missing_file_is_one_line(tmp_path, capsys):
    from robolearn.cli import main

    assert main(["collect", "lift", "--tasks", str(tmp_path / "nope.toml"), "--episodes", "1",
                 "--out", str(tmp_path / "x.zarr")]) == 1  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert "nope.toml" in err and "\n" not in err and not (tmp_path / "x.zarr").exists()

"""Without an offscreen GL backend (no EGL, no OSMesa) robolearn says so in one line, never a traceback:
the state-based quickstart and `eval --videos` run without videos, commands that need camera images
stop before any worker starts. And scripts/install.sh names the packages it cannot install."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
INSTALL_SH = ROOT / "scripts" / "install.sh"
GL_PACKAGES = "libegl1 libegl-mesa0 libgl1 libgles2 libosmesa6"


@pytest.fixture(scope="module")
def no_gl_env(tmp_path_factory) -> dict[str, str]:
    """An environment whose dynamic loader finds empty files first for libEGL and libOSMesa, so neither
    loads (the same failure as a machine without them: PyOpenGL's `'NoneType' object has no attribute
    'eglQueryString'`), even where the real libraries are installed."""
    libs = tmp_path_factory.mktemp("nogl")
    for name in ("libEGL.so.1", "libEGL.so", "libOSMesa.so.8", "libOSMesa.so.6", "libOSMesa.so"):
        (libs / name).write_bytes(b"")
    env = {k: v for k, v in os.environ.items() if k not in ("PYOPENGL_PLATFORM", "ROBOLEARN_GL_UNUSABLE")}
    env["LD_LIBRARY_PATH"] = os.pathsep.join(p for p in (str(libs), env.get("LD_LIBRARY_PATH")) if p)
    env["MUJOCO_GL"] = "egl"
    return env


def robolearn(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "robolearn.cli", *args], env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=600)  # fmt: skip


def test_image_collect_without_gl_stops_with_one_line(no_gl_env, tmp_path):
    r = robolearn(["collect", "lift", "--episodes", "1", "--cameras", "agentview", "--out", str(tmp_path / "x.zarr"),
                   "--no-progress"], no_gl_env, tmp_path)  # fmt: skip
    assert r.returncode == 1, r.stderr[-2000:]
    assert "Traceback" not in r.stderr
    (line,) = [ln for ln in r.stderr.splitlines() if "error:" in ln]
    assert line.startswith("robolearn collect: error: collecting camera images (agentview)")
    assert "libEGL.so.1" in line and "libegl1 libegl-mesa0" in line and "libosmesa6" in line
    assert not (tmp_path / "x.zarr").exists()


def test_quickstart_and_state_eval_without_gl_run_without_videos(no_gl_env, tmp_path):
    out = tmp_path / "qs"
    r = robolearn(["quickstart", "--fast", "--no-progress", "--workers", "1", "--out", str(out)], no_gl_env, tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "Traceback" not in r.stderr
    assert "Lift success rate:" in r.stdout
    skipped = [ln for ln in (r.stdout + r.stderr).splitlines() if "skipped" in ln]
    assert len(skipped) == 1 and "videos" in skipped[0] and "libEGL.so.1" in skipped[0] and "libegl1" in skipped[0]
    assert not list(out.rglob("*.mp4"))

    # `eval --videos` of the state policy: runs, one line says the videos were skipped
    checkpoint = json.loads((out / "quickstart.json").read_text())["checkpoint"]
    r = robolearn(["eval", checkpoint, "--episodes", "1", "--videos", "1",
                   "--max-steps", "10", "--workers", "1", "--out", str(tmp_path / "ev")], no_gl_env, tmp_path)  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    assert "Traceback" not in r.stderr and "success" in r.stdout
    assert len([ln for ln in r.stderr.splitlines() if "videos skipped" in ln]) == 1
    assert not list((tmp_path / "ev").glob("*.mp4"))


# ---------------------------------------------------------------------- scripts/install.sh
def _shims(tmp_path: Path, uid: int, sudo: bool) -> dict[str, str]:
    """A PATH with fake apt-get/dpkg/id/sudo/python (every GL package missing), logging their calls."""
    bin_dir, log = tmp_path / "bin", tmp_path / "calls.log"
    bin_dir.mkdir()
    fakes = {
        "dpkg": "exit 1",  # nothing installed
        "apt-get": f'echo "apt-get $*" >> {log}',
        "id": f"echo {uid}",
        "uname": "echo Linux",
        "python": f'echo "python $*" >> {log}; cat > /dev/null',
    }
    if sudo:
        fakes["sudo"] = f'echo "sudo $1" >> {log}; "$@"'
    for name, body in fakes.items():
        (bin_dir / name).write_text(f"#!/bin/sh\n{body}\n")
        (bin_dir / name).chmod(0o755)
    for tool in ("dirname", "mktemp", "rm", "env", "cat"):  # the real ones the script needs
        real = next(Path(d) / tool for d in ("/usr/bin", "/bin") if (Path(d) / tool).exists())
        (bin_dir / tool).symlink_to(real)
    return {"PATH": str(bin_dir), "PYTHON": "python", "HOME": str(tmp_path), "TMPDIR": str(tmp_path)}


def _install(tmp_path: Path, env: dict[str, str], *args: str) -> tuple[subprocess.CompletedProcess, list[str]]:
    bash = next(p for p in ("/bin/bash", "/usr/bin/bash") if Path(p).exists())
    r = subprocess.run([bash, str(INSTALL_SH), *args], env=env, capture_output=True, text=True, timeout=60)
    log = tmp_path / "calls.log"
    return r, (log.read_text().splitlines() if log.exists() else [])


def test_install_without_root_or_sudo_names_the_packages_and_carries_on(tmp_path):
    r, calls = _install(tmp_path, _shims(tmp_path, uid=1000, sudo=False))
    assert r.returncode == 0, r.stderr
    (line,) = r.stderr.strip().splitlines()
    assert line.startswith("install.sh: cannot install") and GL_PACKAGES in line
    # torch first and pinned, then the package with its dev extra
    pips = [c for c in calls if " pip install" in c]
    assert pips == ["python -m pip install -q torch==2.13.0", "python -m pip install -q -e .[dev]"]
    assert not any(c.startswith("apt-get") for c in calls)


def test_install_for_ci_stops_when_it_cannot_install_the_libraries(tmp_path):
    r, calls = _install(tmp_path, _shims(tmp_path, uid=1000, sudo=False), "--require-gl")
    assert r.returncode == 1 and GL_PACKAGES in r.stderr
    assert not any("pip" in c for c in calls)


@pytest.mark.parametrize("uid, sudo", [(0, False), (1000, True)])
def test_install_uses_apt_get_and_sudo_only_when_not_root(tmp_path, uid, sudo):
    r, calls = _install(tmp_path, _shims(tmp_path, uid=uid, sudo=sudo))
    assert r.returncode == 0 and r.stderr == ""
    apt = [c for c in calls if c.startswith("apt-get")]
    assert apt == ["apt-get update -qq", f"apt-get install -y -qq --no-install-recommends {GL_PACKAGES}"]
    assert any(c.startswith("sudo") for c in calls) == (uid != 0)

"""LeRobot v3.0 import/export (robolearn/datasets/lerobot.py), checked against LeRobot's own code.

The two round trips through LeRobot run its `lerobot-dataset` package in .venv-lerobot (numpy 2, built by
`bash benchmarks/lerobot_env.sh`; CI builds it) through benchmarks/lerobot_roundtrip.py, in one subprocess:
LeRobotDataset reads our export, and LeRobotDataset.create/add_frame/save_episode writes a dataset we import.
Without the venv those two tests are skipped; the store -> LeRobot -> store round trip and the bad inputs
need only robolearn.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from robolearn.cli import main
from robolearn.datasets.lerobot import export_lerobot, import_lerobot
from robolearn.datasets.store import EpisodeStore
from robolearn.errors import UserError

REPO = Path(__file__).resolve().parents[2]
VENV_PYTHON = REPO / ".venv-lerobot" / "bin" / "python"
VENV_BUILT = REPO / ".venv-lerobot" / ".built"  # written last by benchmarks/lerobot_env.sh
SKIP_REASON = ".venv-lerobot/ is absent or half-built (LeRobot's own dataset code, numpy 2): build it with `bash benchmarks/lerobot_env.sh`; CI does"
IN_CI = bool(os.environ.get("CI") or os.environ.get("ROBOLEARN_CI"))  # .ci/run sets ROBOLEARN_CI: never skip there
needs_lerobot = pytest.mark.skipif(not VENV_BUILT.exists() and not IN_CI, reason=SKIP_REASON)
FPS = 10
SIZE = 32  # LeRobot 0.4.4's own writer (PyAV 15.1's SVT-AV1) dies of SIGFPE on frames under 32 px
INSTRUCTIONS = ["pick up the cube", "", "stack the blocks"]  # the empty one exports as the store's task name
# Video frames go through LeRobot's default lossy encoding (AV1, yuv420p, CRF 30): on these smooth 32x32
# frames the decoded values stay within a few levels of the originals (more at the moving block's edges).
VIDEO_MEAN_TOL, VIDEO_P99_TOL = 4.0, 24


def _frames(n: int, episode: int) -> np.ndarray:
    """Smooth, moving RGB frames (what a video codec keeps well): gradients and a block that moves per step."""
    y, x = np.mgrid[0:SIZE, 0:SIZE]
    out = np.empty((n, SIZE, SIZE, 3), np.uint8)
    for t in range(n):
        out[t, ..., 0] = x * 4 + t * 3
        out[t, ..., 1] = y * 4 + episode * 20
        out[t, ..., 2] = 60
        out[t, 8:20, (t % 16) : (t % 16) + 12] += 50  # a brighter block (luma: kept at full resolution)
    return out


def _episodes(lengths=(8, 10, 12), seed=0) -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    eps = []
    for e, n in enumerate(lengths):
        cam = _frames(n, e)
        eps.append({
            "action": rng.normal(size=(n, 2)).astype(np.float32),
            "state": rng.normal(size=(n, 4)).astype(np.float32),
            "cam": cam,
            "depth8": cam[..., :1].copy(),  # 1 channel: exported as lossless PNG, not video
            "reward": np.linspace(0, 1, n, dtype=np.float32),
            "done": np.arange(n) == n - 1,
            "points": rng.normal(size=(n, 3, 2)).astype(np.float32),  # 2-d per step: flattened for LeRobot
        })  # fmt: skip
    return eps


def _store(path: Path, episodes, fps: int | None = FPS) -> Path:
    attrs = {"task": "lift", **({"fps": fps} if fps else {})}
    with EpisodeStore.create(path, attrs=attrs) as store:
        for e, ep in enumerate(episodes):
            store.append_episode(ep, {"instruction": INSTRUCTIONS[e % 3], "seed": 100 + e, "success": e != 1})
    return path


def _assert_video_close(got: np.ndarray, want: np.ndarray, what: str) -> None:
    """Within the codec's tolerance, and each decoded frame is closest to its own step, not a neighbour's."""
    assert got.shape == want.shape and got.dtype == np.uint8, what
    diff = np.abs(got.astype(np.int16) - want.astype(np.int16))
    p99 = np.percentile(diff, 99)
    assert diff.mean() <= VIDEO_MEAN_TOL and p99 <= VIDEO_P99_TOL, f"{what}: mean {diff.mean():.2f}, 99th percentile {p99}"
    err = np.abs(got[:, None].astype(np.int16) - want[None].astype(np.int16)).mean(axis=(2, 3, 4))  # (got, want)
    np.testing.assert_array_equal(err.argmin(1), np.arange(len(got)), err_msg=f"{what}: frames matched to the wrong step")


def _leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.startswith("."))


# ---------------------------------------------------------------------- through LeRobot's own code
LEROBOT_FEATURES = {
    "observation.state": {"dtype": "float32", "shape": [4], "names": ["x", "y", "z", "gripper"]},
    "action": {"dtype": "float32", "shape": [2], "names": ["vx", "vy"]},
    "observation.images.front": {"dtype": "video", "shape": [SIZE, SIZE, 3], "names": ["height", "width", "channels"]},
    "observation.images.wrist": {"dtype": "image", "shape": [SIZE, SIZE, 3], "names": ["height", "width", "channels"]},
}
LEROBOT_TASKS = ["open the drawer", "close the drawer"]


@pytest.fixture(scope="module")
def lerobot_run(tmp_path_factory):
    """Our export read by LeRobotDataset, and a dataset LeRobot wrote, in one venv subprocess."""
    if not VENV_BUILT.exists():
        if IN_CI:
            pytest.fail(".venv-lerobot is missing in CI: .ci/run must run benchmarks/lerobot_env.sh")
        pytest.skip(SKIP_REASON)
    tmp = tmp_path_factory.mktemp("lerobot")
    episodes = _episodes()
    export_lerobot(_store(tmp / "store.zarr", episodes), tmp / "exported")

    rng = np.random.default_rng(1)
    written = []
    arrays = {}
    for e, n in enumerate((10, 9)):
        ep = {"observation.state": rng.normal(size=(n, 4)).astype(np.float32),
              "action": rng.normal(size=(n, 2)).astype(np.float32),
              "observation.images.front": _frames(n, e), "observation.images.wrist": _frames(n, e + 3)[:, ::-1].copy()}  # fmt: skip
        written.append(ep)
        arrays.update({f"ep{e}/{k}": v for k, v in ep.items()})
    spec = {"fps": FPS, "features": LEROBOT_FEATURES, "vcodec": "libsvtav1",
            "episodes": [{"task": LEROBOT_TASKS[e], "length": len(ep["action"])} for e, ep in enumerate(written)]}  # fmt: skip
    np.savez(tmp / "spec.npz", __spec__=np.array(json.dumps(spec)), **arrays)

    env = {**os.environ, "HF_HOME": str(tmp / "hf"), "HF_HUB_OFFLINE": "1"}
    cmd = [str(VENV_PYTHON), str(REPO / "benchmarks" / "lerobot_roundtrip.py"),
           "read", str(tmp / "exported"), str(tmp / "read.npz"), "write", str(tmp / "spec.npz"), str(tmp / "by_lerobot")]  # fmt: skip
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return {"tmp": tmp, "episodes": episodes, "written": written, "read": np.load(tmp / "read.npz")}


@needs_lerobot
def test_lerobot_reads_our_export(lerobot_run):
    """LeRobotDataset (its own reader, PyAV decode) sees the store's values, tasks and fps in our export."""
    read, episodes = lerobot_run["read"], lerobot_run["episodes"]
    meta = json.loads(str(read["__meta__"]))
    print("LeRobot side:", json.dumps(meta["lerobot"]))
    assert meta["fps"] == FPS and meta["num_episodes"] == len(episodes)
    cat = {k: np.concatenate([ep[k] for ep in episodes]) for k in episodes[0]}
    n = len(cat["action"])
    np.testing.assert_array_equal(read["action"], cat["action"])
    np.testing.assert_array_equal(read["observation.state"], cat["state"])
    np.testing.assert_array_equal(read["observation.reward"], cat["reward"])
    np.testing.assert_array_equal(read["observation.done"], cat["done"])
    np.testing.assert_array_equal(read["observation.points"], cat["points"].reshape(n, -1))
    np.testing.assert_array_equal(read["observation.images.depth8"], cat["depth8"])  # PNG: lossless
    _assert_video_close(read["observation.images.cam"], cat["cam"], "cam via LeRobot's video decode")
    assert meta["features"]["observation.images.cam"]["info"]["video.codec"] == "av1"  # LeRobot's default encoding
    want_tasks = [INSTRUCTIONS[e] or "lift" for e, ep in enumerate(episodes) for _ in range(len(ep["action"]))]
    assert meta["tasks"] == want_tasks
    assert meta["episode_index"] == [e for e, ep in enumerate(episodes) for _ in range(len(ep["action"]))]


@needs_lerobot
def test_import_of_a_dataset_lerobot_wrote(lerobot_run, capsys):
    """LeRobotDataset.create/add_frame/save_episode output imports with the same values, tasks and fps."""
    tmp, written = lerobot_run["tmp"], lerobot_run["written"]
    dst = tmp / "imported.zarr"
    # format guessed from meta/info.json; lossless frames here, so the PNG camera compares exactly
    assert main(["data", "import", str(tmp / "by_lerobot"), str(dst), "--image-codec", "blosc"]) == 0
    assert "(lerobot)" in capsys.readouterr().out
    store = EpisodeStore.open(dst)
    assert store.keys == ["action", "front", "state", "wrist"]
    np.testing.assert_array_equal(store.episode_lengths, [len(ep["action"]) for ep in written])
    for e, ep in enumerate(written):
        got = store.get_episode(e)
        np.testing.assert_array_equal(got["action"], ep["action"])
        np.testing.assert_array_equal(got["state"], ep["observation.state"])
        np.testing.assert_array_equal(got["wrist"], ep["observation.images.wrist"])  # PNG in the parquet rows
        _assert_video_close(got["front"], ep["observation.images.front"], f"episode {e} front (AV1 by LeRobot)")
        assert store.episode_meta(e)["instruction"] == LEROBOT_TASKS[e]
    assert store.attrs["fps"] == FPS
    assert store.attrs["feature_names"]["state"] == ["x", "y", "z", "gripper"]
    assert store.attrs["source"]["format"] == "lerobot" and store.attrs["source"]["codebase_version"] == "v3.0"
    all_state = np.concatenate([ep["observation.state"] for ep in written])
    assert store.stats["state"]["mean"] == pytest.approx(all_state.mean(0), abs=1e-5)  # recomputed from the data


# ---------------------------------------------------------------------- robolearn only
def test_store_to_lerobot_to_store_round_trip(tmp_path, capsys):
    episodes = _episodes(lengths=(6, 9))
    src = _store(tmp_path / "src.zarr", episodes)
    assert main(["data", "export", str(src), str(tmp_path / "lr"), "--format", "lerobot"]) == 0
    assert "observation.images.cam (av1 mp4)" in capsys.readouterr().out
    info = json.loads((tmp_path / "lr" / "meta" / "info.json").read_text())
    assert info["codebase_version"] == "v3.0" and info["fps"] == FPS and info["total_frames"] == 15
    assert info["features"]["observation.images.depth8"]["dtype"] == "image"
    import_lerobot(tmp_path / "lr", tmp_path / "back.zarr")
    back = EpisodeStore.open(tmp_path / "back.zarr")
    assert back.keys == sorted(episodes[0])
    for e, ep in enumerate(episodes):
        got = back.get_episode(e)
        for key, value in ep.items():
            if key == "cam":
                _assert_video_close(got[key], value, f"episode {e} cam")
            else:
                assert got[key].dtype == value.dtype and got[key].shape == value.shape, key
                np.testing.assert_array_equal(got[key], value, err_msg=f"episode {e} {key}")
        meta = back.episode_meta(e)
        assert (meta["instruction"], meta["seed"], meta["success"]) == (INSTRUCTIONS[e], 100 + e, e != 1)
    assert back.attrs["task"] == "lift" and back.attrs["fps"] == FPS
    assert _leftovers(tmp_path) == []


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> Path:
    """A small LeRobot dataset written by our exporter, copied and damaged by the bad-input tests."""
    tmp = tmp_path_factory.mktemp("exported")
    return Path(export_lerobot(_store(tmp / "s.zarr", _episodes(lengths=(8, 10))), tmp / "lr"))


def _copy(src: Path, tmp_path: Path) -> Path:
    import shutil

    return Path(shutil.copytree(src, tmp_path / "in" / "lr"))


def _truncate_rows(root: Path) -> str:
    import pyarrow.parquet as pq

    path = root / "data" / "chunk-000" / "file-000.parquet"
    table = pq.read_table(path)
    pq.write_table(table.slice(0, table.num_rows - 3), path)
    return "data/chunk-000/file-000.parquet: 15 rows; meta/episodes says 18"


def _shorten_video(root: Path) -> str:
    """Re-encode the camera's mp4 without its last 4 frames (episode 1 then runs past the video's end)."""
    import av

    path = root / "videos" / "observation.images.cam" / "chunk-000" / "file-000.mp4"
    with av.open(str(path)) as c:
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    with av.open(str(path), "w") as out:
        s = out.add_stream("libsvtav1", rate=FPS)
        s.width = s.height = SIZE
        s.pix_fmt = "yuv420p"
        for frame in frames[:-4]:
            out.mux(s.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        out.mux(s.encode())
    return "videos/observation.images.cam/chunk-000/file-000.mp4: episode 1: 4 of its 10 frames missing"


def _edit_info(root: Path, **changes) -> None:
    path = root / "meta" / "info.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))


DAMAGES = {  # name -> (damage(root) -> the text the one error line must contain)
    "missing_info": lambda root: ((root / "meta" / "info.json").unlink(), "meta/info.json: missing")[1],
    "rows_disagree": _truncate_rows,
    "short_video": _shorten_video,
    "v2.1": lambda root: (_edit_info(root, codebase_version="v2.1"), "meta/info.json: codebase_version v2.1: unsupported")[1],
}


@pytest.mark.parametrize("damage", sorted(DAMAGES))
def test_bad_lerobot_input_one_line_nothing_written(tmp_path, exported, damage, capsys):
    src = _copy(exported, tmp_path)
    expected = DAMAGES[damage](src)
    dst = tmp_path / "out" / "new.zarr"
    dst.parent.mkdir()
    assert main(["data", "import", str(src), str(dst), "--format", "lerobot"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and expected in err, err
    assert not dst.exists() and _leftovers(dst.parent) == []


def test_export_needs_fps(tmp_path, capsys):
    src = _store(tmp_path / "nofps.zarr", _episodes(lengths=(5,)), fps=None)
    out = tmp_path / "out"
    out.mkdir()
    assert main(["data", "export", str(src), str(out / "lr"), "--format", "lerobot"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"{src}: no fps" in err and "--fps" in err, err
    assert list(out.iterdir()) == []
    assert main(["data", "export", str(src), str(out / "lr"), "--format", "lerobot", "--fps", "15"]) == 0
    assert json.loads((out / "lr" / "meta" / "info.json").read_text())["fps"] == 15


def test_export_refuses_an_existing_destination(tmp_path, exported):
    before = sorted(p.name for p in exported.rglob("*"))
    with pytest.raises(UserError, match="already exists"):
        export_lerobot(exported.parent / "s.zarr", exported)
    assert sorted(p.name for p in exported.rglob("*")) == before


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))

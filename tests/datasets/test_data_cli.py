"""`robolearn data ...`: info / validate / import / stats / view, and one clean line on every bad input."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from robolearn.cli import main
from robolearn.datasets.store import EpisodeStore

BAD_INPUTS = {  # kind -> what the one error line must say
    "missing": "no such file",
    "plain_dir": "not a zarr store",
    "text_file": "not a zarr store",
    "truncated": "data/action: 14 steps, expected 16",
    "mismatched": "data/obs: 19 steps, expected 16",
    "decreasing": "meta/episode_ends: not strictly increasing",
    "nan": "data/action: NaN at step 6",
}


def _tree(path: Path) -> dict[str, str]:
    """Every file under `path` with a hash of its bytes (to prove a command wrote nothing)."""
    if not path.exists():
        return {}
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    return {str(f): hashlib.sha1(f.read_bytes()).hexdigest() for f in files}


def _bad_input(tmp_path: Path, kind: str, datagen, peer: bool) -> Path:
    """A bad store path; `peer` stores are diffusion_policy zarr v2 (import sources), else robolearn stores."""
    path = tmp_path / "in" / "bad.zarr"
    path.parent.mkdir()
    if kind == "missing":
        return path
    if kind == "plain_dir":
        path.mkdir()
        (path / "readme.md").write_text("not a store")
        return path
    if kind == "text_file":
        path = path.with_suffix(".txt")
        path.write_text("hello")
        return path
    episodes = datagen.episodes_data()
    if peer:
        datagen.write_dp_zarr(path, episodes)
    else:
        store = EpisodeStore.create(path)
        for ep in episodes:
            store.append_episode(ep)
    datagen.corrupt(path, kind)
    return path


def _argv(command: str, src: Path, out: Path) -> list[str]:
    return {
        "info": ["data", "info", str(src)],
        "info_json": ["data", "info", str(src), "--json"],
        "validate": ["data", "validate", str(src)],
        "stats": ["data", "stats", str(src)],
        "view": ["data", "view", str(src), "--episode", "0", "--out", str(out / "ep.mp4")],
        "import": ["data", "import", str(src), str(out / "dst.zarr"), "--format", "diffusion_policy"],
    }[command]


def _one_line(capsys) -> str:
    captured = capsys.readouterr()
    lines = [line for line in (captured.out + captured.err).splitlines() if line.strip()]
    assert len(lines) == 1, lines
    return lines[0]


@pytest.mark.parametrize("kind", sorted(BAD_INPUTS))
@pytest.mark.parametrize("command", ["info", "info_json", "validate", "stats", "view", "import"])
def test_bad_input_one_line_nothing_written(tmp_path, capsys, datagen, command, kind):
    src = _bad_input(tmp_path, kind, datagen, peer=command == "import")
    out = tmp_path / "out"
    out.mkdir()
    before = _tree(src)

    assert main(_argv(command, src, out)) != 0
    line = _one_line(capsys)
    assert str(src) in line and BAD_INPUTS[kind] in line and "expected" in line, line
    assert list(out.iterdir()) == []  # no store, video, plot or temp file at the destination
    assert _tree(src) == before  # the damaged store was not "repaired" (trimmed) either


def test_import_robomimic_missing_actions(tmp_path, capsys, datagen):
    src = tmp_path / "lift.hdf5"
    datagen.write_robomimic(src, drop_actions="demo_2")
    assert main(["data", "import", str(src), str(tmp_path / "out.zarr")]) == 1
    line = _one_line(capsys)
    assert f"{src}: data/demo_2/actions: missing; expected a (T, action_dim) dataset" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lift.hdf5"]


def test_import_cli_round_trip_then_validate(tmp_path, capsys, datagen):
    src = tmp_path / "lift.hdf5"
    demos = datagen.write_robomimic(src)
    dst = tmp_path / "lift.zarr"
    assert main(["data", "import", str(src), str(dst)]) == 0  # format guessed from .hdf5
    assert "imported 4 episodes" in capsys.readouterr().out
    assert main(["data", "validate", str(dst)]) == 0
    assert capsys.readouterr().out.strip() == f"{dst}: ok (4 episodes, {sum(len(d['actions']) for d in demos.values())} steps, 6 keys; every chunk decoded)"
    assert main(["data", "import", str(src), str(dst)]) == 1  # refuses to overwrite
    assert "already exists" in _one_line(capsys)


def test_info_text_and_json(small_store, capsys):
    assert main(["data", "info", str(small_store)]) == 0
    text = capsys.readouterr().out
    for needle in ("episodes: 3", "steps: 16", "cam_image", "(16, 8, 10, 3)", "uint8", "chunks (1, 8, 10, 3)",
                   "blosc/zstd", "size on disk", "meta fields: instruction", "seed", "task", "stats:"):
        assert needle in text, needle

    assert main(["data", "info", str(small_store), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert (info["n_episodes"], info["n_steps"]) == (3, 16)
    assert info["keys"]["action"]["shape"] == [16, 2] and info["keys"]["action"]["dtype"] == "float32"
    assert info["keys"]["cam_image"]["image"] is True
    assert info["bytes_stored"] > 0 and info["attrs"] == {"task": "lift"}
    assert info["stats"]["obs"]["mean"] == pytest.approx(EpisodeStore.open(small_store).get("obs").mean(0))
    assert set(info["meta_fields"]) == {"seed", "instruction"} and info["stats_problems"] == []


def test_stale_stats_are_reported_then_recomputed(small_store, capsys):
    import zarr

    zarr.open_group(str(small_store), mode="r+").attrs["stats"] = {}
    assert main(["data", "validate", str(small_store)]) == 1
    out = capsys.readouterr().out.splitlines()
    assert f"{small_store}: attrs/stats/action: missing (run `robolearn data stats STORE`)" in out

    assert main(["data", "info", str(small_store)]) == 0  # info still works, and warns
    assert "warning: attrs/stats/action: missing" in capsys.readouterr().out

    assert main(["data", "stats", str(small_store), "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    action = EpisodeStore.open(small_store).get("action")
    assert stats["action"]["max"] == pytest.approx(action.max(0))
    assert main(["data", "validate", str(small_store)]) == 0
    assert "ok" in capsys.readouterr().out


def test_view_writes_playable_mp4_and_plot(small_store, tmp_path, capsys):
    import imageio.v2 as imageio

    out = tmp_path / "ep.mp4"
    assert main(["data", "view", str(small_store), "--episode", "1", "--out", str(out)]) == 0
    frames = imageio.mimread(out)
    assert len(frames) == 7 and frames[0].shape == (8, 10, 3)  # episode 1 has 7 steps
    plot = imageio.imread(tmp_path / "ep.png")
    assert plot.ndim == 3 and plot.shape[0] > 100
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ep.mp4", "ep.png", "small.zarr"]
    assert "7 frames" in capsys.readouterr().out

    assert main(["data", "view", str(small_store), "--episode", "3", "--out", str(out)]) == 1
    assert "--episode 3: out of range; expected 0..2" in _one_line(capsys)


def test_view_without_images_writes_plot_only(tmp_path, capsys):
    path = tmp_path / "lowdim.zarr"
    store = EpisodeStore.create(path)
    store.append_episode({"action": np.linspace(-1, 1, 20, dtype=np.float32).reshape(10, 2)})
    plot = tmp_path / "plots" / "a.png"
    plot.parent.mkdir()
    assert main(["data", "view", str(path), "--out", str(tmp_path / "ep.mp4"), "--plot", str(plot)]) == 0
    assert "no video" in capsys.readouterr().out
    assert plot.is_file() and not (tmp_path / "ep.mp4").exists()

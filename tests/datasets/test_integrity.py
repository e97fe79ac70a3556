"""Store integrity (issue 21): every damage in the matrix is found by `robolearn data validate`
(one line naming the place, never a traceback), refused by `train`/`pretrain` when it is in a key
they read (or named as skipped when it is not), never leaves anything at a destination, and
`robolearn data repair` keeps every intact episode.

One tiny format-2 store is built per module (3 episodes of 10/9/11 steps, 8x8 camera frames in
shards of 4 frames, so one shard spoils one or two episodes) and copied for each case.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import zarr

from robolearn.cli import main
from robolearn.datasets.store import EpisodeStore

# zarr warns (several lines) about a file inside data/; validate reports it as one line, and silences zarr's copy
pytestmark = pytest.mark.filterwarnings("ignore:Object at .* is not recognized")

LENGTHS = (10, 9, 11)  # episodes [0, 10), [10, 19), [19, 30)
N_STEPS = sum(LENGTHS)
SHARD = "data/cam_image/c/3/0/0/0"  # frames 12-15: episode 1 only
TRAIN_KEYS = {"state", "action"}  # what the tiny BC recipe reads
PRETRAIN_KEYS = {"cam_image", "action"}  # inverse dynamics on the camera


def _episodes() -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(0)
    return [{"action": rng.uniform(-1, 1, (t, 2)).astype(np.float32),
             "state": rng.normal(size=(t, 3)).astype(np.float32),
             "obs": rng.normal(size=(t, 2)).astype(np.float32),  # read by nothing below
             "cam_image": rng.integers(0, 256, (t, 8, 8, 3), dtype=np.uint8)} for t in LENGTHS]


@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("integrity") / "demo.zarr"
    store = EpisodeStore.create(path, attrs={"task": "toy"}, frames_per_shard=4)
    for i, ep in enumerate(_episodes()):
        store.append_episode(ep, {"seed": i})
    return path


# ---------------------------------------------------------------------- damages
def _chunk(path: Path, key: str) -> Path:
    return path / (SHARD if key == "cam_image" else f"data/{key}/c/0/0")


def _edit_json(path: Path, key: str, fn) -> None:
    meta = path / "data" / key / "zarr.json"
    doc = json.loads(meta.read_text())
    fn(doc)
    meta.write_text(json.dumps(doc))


def _set_values(path: Path, key: str, step: int, value: float) -> None:
    arr = zarr.open_array(str(path / "data" / key), mode="r+")
    values = arr[:]
    values[step, 0] = value
    arr[:] = values


def _set_ends(path: Path, ends: list[int]) -> None:
    arr = zarr.open_array(str(path / "meta" / "episode_ends"), mode="r+")
    arr[:] = np.asarray(ends, dtype=np.int64)


def _float_images(path: Path, key: str) -> None:
    group = zarr.open_group(str(path), mode="r+")
    frames = group[f"data/{key}"][:]
    del group[f"data/{key}"]
    arr = group.create_array(f"data/{key}", shape=frames.shape, chunks=(4,) + frames.shape[1:], dtype=np.float32)
    arr[:] = frames.astype(np.float32) / 255


def _file_for_array(path: Path, key: str) -> None:
    shutil.rmtree(path / "data" / key)
    (path / "data" / key).write_text("not an array")


DAMAGES = {  # name -> (damage(path, key), key the commands read, key they do not; None: the store as a whole)
    "deleted chunk": (lambda p, k: _chunk(p, k).unlink(), "action", "cam_image"),
    "truncated chunk": (lambda p, k: os.truncate(_chunk(p, k), _chunk(p, k).stat().st_size // 2), "action", "cam_image"),
    "garbage chunk": (lambda p, k: _chunk(p, k).write_bytes(os.urandom(_chunk(p, k).stat().st_size)), "action", "cam_image"),
    "empty chunk file": (lambda p, k: _chunk(p, k).write_bytes(b""), "action", "cam_image"),
    "unreadable chunk": (lambda p, k: _chunk(p, k).chmod(0), "action", "cam_image"),
    "invalid metadata JSON": (lambda p, k: (p / "data" / k / "zarr.json").write_text("{not json"), "state", "obs"),
    "changed shape": (lambda p, k: _edit_json(p, k, lambda d: d["shape"].__setitem__(0, N_STEPS - 3)), "action", "obs"),
    "changed dtype": (lambda p, k: _edit_json(p, k, lambda d: d.__setitem__("data_type", "float64")), "action", "obs"),
    "deleted array": (lambda p, k: shutil.rmtree(p / "data" / k), "action", "obs"),
    "deleted meta/episode_ends": (lambda p, k: shutil.rmtree(p / "meta" / "episode_ends"), None, None),
    "missing root metadata": (lambda p, k: (p / "zarr.json").unlink(), None, None),
    "decreasing episode_ends": (lambda p, k: _set_ends(p, [10, 9, 30]), None, None),
    "episode_ends past the data": (lambda p, k: _set_ends(p, [10, 19, 40]), None, None),
    "NaN in actions": (lambda p, k: _set_values(p, k, 12, np.nan), "action", None),
    "inf in observations": (lambda p, k: _set_values(p, k, 25, np.inf), "state", "obs"),
    "images of the wrong dtype": (_float_images, "cam_image", None),  # pretrain reads the camera, train does not
    "a file where an array directory should be": (_file_for_array, "state", "obs"),
}
# what validate's line names, beyond the key
PLACE = {"deleted chunk": "c/", "truncated chunk": "c/", "garbage chunk": "c/", "empty chunk file": "c/",
         "unreadable chunk": "c/", "deleted meta/episode_ends": "meta/episode_ends", "missing root metadata": "zarr.json",
         "decreasing episode_ends": "meta/episode_ends", "episode_ends past the data": "meta/episode_ends"}
BLOCKING = {"invalid metadata JSON", "changed shape", "deleted meta/episode_ends", "missing root metadata",
            "decreasing episode_ends", "episode_ends past the data"}  # no reader can open the store around these
# episodes repair keeps: (damage, key) -> kept; missing: all three; () the repair refuses (nothing intact)
KEPT = {
    ("deleted chunk", "action"): (), ("truncated chunk", "action"): (), ("garbage chunk", "action"): (),
    ("empty chunk file", "action"): (), ("unreadable chunk", "action"): (), ("changed dtype", "action"): (),
    ("changed dtype", "obs"): (),
    ("deleted chunk", "cam_image"): (0, 2), ("truncated chunk", "cam_image"): (0, 2), ("garbage chunk", "cam_image"): (0, 2),
    ("empty chunk file", "cam_image"): (0, 2), ("unreadable chunk", "cam_image"): (0, 2),
    ("changed shape", "action"): (0, 1), ("changed shape", "obs"): (0, 1),
    ("deleted meta/episode_ends", None): (), ("decreasing episode_ends", None): (0,),
    ("episode_ends past the data", None): (0, 1), ("NaN in actions", "action"): (0, 2),
    ("inf in observations", "state"): (0, 1), ("inf in observations", "obs"): (0, 1),
}
CASES = sorted({(name, key, used) for name, (_, k_used, k_unused) in DAMAGES.items()
                for key, used in ((k_used, True), (k_unused, False)) if key is not None or used})


def _tree(path: Path) -> dict[str, str]:
    if not path.exists():
        return {}
    return {str(f): hashlib.sha1(f.read_bytes()).hexdigest() for f in sorted(path.rglob("*")) if f.is_file()}


def _lines(capsys) -> list[str]:
    captured = capsys.readouterr()
    return [line for line in (captured.out + captured.err).splitlines() if line.strip()]


def _recipe(store: Path, out: Path, tmp_path: Path) -> Path:
    recipe = tmp_path / "bc.toml"
    recipe.write_text(f'dataset = "{store}"\nmethod = "bc"\nout = "{out}"\ndevice = "cpu"\n'
                      '[policy]\nobs_keys = ["state"]\nhorizon = 4\nn_action_steps = 2\nobs_horizon = 1\nhidden = [16]\n'
                      '[train]\nsteps = 1\nbatch_size = 4\nwarmup_steps = 1\ncheckpoint_every = 1\nprogress = false\n'
                      'tensorboard = false\nnum_threads = 1\n')
    return recipe


@pytest.mark.parametrize("name,key,used", CASES, ids=[f"{n}-{k or 'store'}" for n, k, _ in CASES])
def test_damage_matrix(pristine, tmp_path, capsys, caplog, monkeypatch, name, key, used):
    caplog.set_level(logging.INFO)
    damage, *_ = DAMAGES[name]
    store = tmp_path / "damaged.zarr"
    shutil.copytree(pristine, store)
    damage(store, key)
    if name == "unreadable chunk" and os.access(_chunk(store, key), os.R_OK):
        # as root chmod 000 does not stop reads: make the store's reads of that file fail as they would for a user
        import zarr.storage._local as local

        real_get, denied = local._get, _chunk(store, key).resolve()

        def get(path, *args, **kwargs):
            if Path(path).resolve() == denied:
                raise PermissionError(13, "Permission denied", str(path))
            return real_get(path, *args, **kwargs)

        monkeypatch.setattr(local, "_get", get)
    capsys.readouterr()
    try:
        before = _tree(store)

        # validate: non-zero, one line per problem, naming the place; never a traceback
        assert main(["data", "validate", str(store)]) == 1
        lines = _lines(capsys)
        assert lines and all(line.startswith(f"{store}: ") and "Traceback" not in line for line in lines), lines
        place = f"data/{key}" if key else PLACE[name]
        assert any(place in line and PLACE.get(name, "") in line for line in lines), lines
        if key == "cam_image" and name in PLACE:  # a shard: the line names its steps and episode
            assert any("steps 12-15, episode 1" in line for line in lines), lines

        # train: refuses damage in what it reads (one line, nothing written), else says what it skipped
        out = tmp_path / "run"
        code = main(["train", "--recipe", str(_recipe(store, out, tmp_path))])
        lines = _lines(capsys)
        if name in BLOCKING or key in TRAIN_KEYS:
            assert code == 1 and len(lines) == 1, lines
            assert place in lines[0] and "robolearn data validate" in lines[0], lines
            assert not out.exists()
        else:
            assert code == 0, lines
            assert "did not check the chunks of" in caplog.text and key in caplog.text

        # pretrain (inverse dynamics reads the camera and the actions): the same check on open
        from robolearn.errors import UserError
        from robolearn.train.pretrain_run import load_pretrain_recipe, open_pretrain_data

        run = load_pretrain_recipe(None, [f"dataset={store}"], base={
            "method": "inverse_dynamics", "device": "cpu", "pretrain": {"obs_keys": ["cam_image"]}})
        if name in BLOCKING or key in PRETRAIN_KEYS:
            with pytest.raises(UserError, match="robolearn data validate") as err:
                open_pretrain_data(run)
            assert "\n" not in str(err.value) and place.split(":")[0] in str(err.value)
        else:
            open_pretrain_data(run)

        # repair: every intact episode, into a new store; the damaged one untouched
        fixed = tmp_path / "fixed.zarr"
        kept = KEPT.get((name, key), (0, 1, 2))
        code = main(["data", "repair", str(store), "--out", str(fixed)])
        lines = _lines(capsys)
        if not kept:
            assert code == 1 and len(lines) == 1 and not fixed.exists(), lines
            if key:  # the damage is confined to one key: recover every episode without it
                assert main(["data", "repair", str(store), "--out", str(fixed), "--drop-key", key]) == 0
                assert EpisodeStore.open(fixed).n_episodes == 3 and key not in EpisodeStore.open(fixed).keys
        else:
            assert code == 0, lines
            assert lines[0].startswith(f"{fixed}: kept {len(kept)} of 3 episodes"), lines
            assert sum("dropped episode" in line for line in lines) == 3 - len(kept), lines
            repaired = EpisodeStore.open(fixed)
            assert repaired.n_episodes == len(kept)
            originals = _episodes()
            other = "state" if key == "action" else "action"
            for j, i in enumerate(kept):
                np.testing.assert_array_equal(repaired.get_episode(j, [other])[other], originals[i][other])
        assert _tree(store) == before  # nothing ever writes into the damaged store
        assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []  # no temp left behind
    finally:
        if name == "unreadable chunk":
            _chunk(store, key).chmod(0o644)


def test_intact_store_validates_and_trains(pristine, tmp_path, capsys, caplog):
    caplog.set_level(logging.INFO)
    assert main(["data", "validate", str(pristine)]) == 0
    assert _lines(capsys) == [f"{pristine}: ok (3 episodes, 30 steps, 4 keys; every chunk decoded)"]
    assert main(["data", "validate", str(pristine), "--quick"]) == 0
    assert "structure checked" in _lines(capsys)[0]
    out = tmp_path / "run"
    assert main(["train", "--recipe", str(_recipe(pristine, out, tmp_path))]) == 0
    assert "did not check the chunks of cam_image, obs (not read)" in caplog.text
    assert (out / "checkpoints" / "last").exists()


def _spoil_frames(store: Path, keep: set[int]) -> None:
    """Flip a byte inside every camera frame except `keep` (the shard indexes stay intact)."""
    for shard in sorted((store / "data" / "cam_image" / "c").iterdir(), key=lambda p: int(p.name)):
        f = shard / "0" / "0" / "0"
        raw = bytearray(f.read_bytes())
        index = np.frombuffer(bytes(raw[-(16 * 4 + 4):-4]), dtype="<u8").reshape(4, 2)
        for j, (offset, nbytes) in enumerate(index):
            if offset != 2**64 - 1 and int(shard.name) * 4 + j not in keep:
                raw[int(offset + nbytes // 2)] ^= 0xFF
        f.write_bytes(bytes(raw))


def test_chunk_failing_mid_training_stops_with_one_line_keeping_the_checkpoint(pristine, tmp_path, capsys):
    store = tmp_path / "demo.zarr"
    shutil.copytree(pristine, store)
    out = tmp_path / "run"
    recipe = _recipe(store, out, tmp_path)
    text = recipe.read_text().replace('obs_keys = ["state"]', 'obs_keys = ["state", "cam_image"]')
    recipe.write_text(text + '[policy.encoder]\nimage_width = 4\nimage_feature_dim = 4\nnum_keypoints = 2\ncrop_size = 8\n')
    assert main(["train", "--recipe", str(recipe)]) == 0
    last = (out / "checkpoints" / "last").resolve()
    capsys.readouterr()

    _spoil_frames(store, keep={0, N_STEPS - 1})  # the open-time check decodes these two only
    assert main(["train", "--resume", str(out), "train.steps=3"]) == 1
    lines = _lines(capsys)
    assert len(lines) == 1 and "Traceback" not in lines[0], lines
    assert str(store) in lines[0] and "checksum" in lines[0] and "training stopped at step 2" in lines[0], lines
    assert f"last good checkpoint {last} kept" in lines[0]
    assert (out / "checkpoints" / "last").resolve() == last and last.exists()

    assert main(["data", "validate", str(store)]) == 1
    lines = _lines(capsys)
    assert len(lines) == N_STEPS - 2 and all("inner chunk" in line and "checksum mismatch" in line for line in lines)


def test_format_1_store_gets_one_note(tmp_path, capsys):
    from zarr.codecs import BloscCodec

    path = tmp_path / "old.zarr"
    group = zarr.open_group(str(path), mode="w")
    group.create_group("data")
    ends = group.create_array("meta/episode_ends", shape=(2,), chunks=(4096,), dtype=np.int64)
    ends[:] = [3, 5]
    action = group.create_array("data/action", shape=(5, 2), chunks=(4096, 2), dtype=np.float32,
                                compressors=BloscCodec(cname="zstd"))
    action[:] = np.ones((5, 2), np.float32)
    group.attrs.update({"format": "robolearn.episodes", "format_version": 1, "stats": {}})
    EpisodeStore.open(path, mode="a").compute_stats()
    assert main(["data", "validate", str(path)]) == 0
    lines = _lines(capsys)
    assert len(lines) == 2 and "note: format_version 1" in lines[0] and "robolearn data rechunk" in lines[0], lines
    assert lines[1].startswith(f"{path}: ok (2 episodes, 5 steps, 1 keys")


def _rewrite_index(shard: Path, frames: int, fn) -> None:
    """Apply fn to a shard's (offset, nbytes) index and store it back with a fresh crc32c."""
    import google_crc32c

    raw = bytearray(shard.read_bytes())
    size = 16 * frames + 4
    index = np.frombuffer(bytes(raw[-size:-4]), dtype="<u8").reshape(frames, 2).copy()
    fn(index)
    body = index.astype("<u8").tobytes()
    raw[-size:] = body + np.uint32(google_crc32c.value(body)).tobytes()
    shard.write_bytes(bytes(raw))


def test_frame_missing_from_a_shard_and_a_damaged_meta_column(pristine, tmp_path, capsys):
    store = tmp_path / "demo.zarr"
    shutil.copytree(pristine, store)
    _rewrite_index(store / SHARD, 4, lambda index: index.__setitem__(1, 2**64 - 1))  # frame 13 "never written"
    seed = store / "meta" / "episodes" / "seed" / "c" / "0"
    seed.write_bytes(os.urandom(seed.stat().st_size))
    assert main(["data", "validate", str(store)]) == 1
    lines = _lines(capsys)
    assert any("data/cam_image: shard c/3/0/0/0 inner chunk 1 (step 13, episode 1): missing from the shard" in line
               for line in lines), lines
    assert any("meta/episodes/seed: chunk c/0 (episodes 0-2): checksum mismatch" in line for line in lines), lines

    fixed = tmp_path / "fixed.zarr"
    assert main(["data", "repair", str(store), "--out", str(fixed), "--drop-key", "meta/episodes/seed"]) == 0
    lines = _lines(capsys)
    assert lines[0].startswith(f"{fixed}: kept 2 of 3 episodes") and "dropped episode 1 (steps 10-18)" in lines[1], lines
    assert EpisodeStore.open(fixed).meta_fields == [] and main(["data", "validate", str(fixed)]) == 0


def test_import_of_a_damaged_source_is_one_line_and_writes_nothing(tmp_path, capsys, datagen):
    src = tmp_path / "replay.zarr"
    datagen.write_dp_zarr(src, datagen.episodes_data())
    frame = src / "data" / "cam_image" / "7.0.0.0"  # a middle frame: the open-time check decodes only first and last
    frame.write_bytes(os.urandom(frame.stat().st_size))
    out = tmp_path / "out"
    out.mkdir()
    assert main(["data", "import", str(src), str(out / "dst.zarr"), "--format", "diffusion_policy"]) == 1
    lines = _lines(capsys)
    assert len(lines) == 1 and f"{src}: data/cam_image:" in lines[0] and "episode 1" in lines[0], lines
    assert list(out.iterdir()) == []


def test_only_store_read_failures_become_one_line():
    from robolearn.datasets.store import StoreDamaged
    from robolearn.datasets.validate import store_read_failure

    assert store_read_failure(KeyError("a bug in the sampler"), "s.zarr", 3, "no checkpoint written yet") is None
    damaged = StoreDamaged("s.zarr: data/cam chunk c/0/0/0/0 (frame 4, episode 0): frame fails its crc32c checksum; "
                           "run `robolearn data validate s.zarr`")
    line = str(store_read_failure(damaged, "s.zarr", 3, "no checkpoint written yet"))
    assert line.count("robolearn data validate") == 1 and "training stopped at step 3" in line
    assert line.startswith("s.zarr: data/cam chunk c/0/0/0/0 (frame 4, episode 0): frame fails its crc32c checksum;")

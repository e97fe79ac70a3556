"""`robolearn collect`: store round trip with labels, resume, demo conditions, bad input."""

import json
from pathlib import Path

import numpy as np
import pytest

from robolearn.cli import main
from robolearn.datasets.store import EpisodeStore
from robolearn.errors import UserError
from robolearn.sim.collect import CollectConfig, collect
from robolearn.sim.experts import PHASES

DEMOS = {"default": {}, "heavy_object": {"object_mass_scale": 4.0}}


def test_collect_round_trip_with_conditions_and_resume(tmp_path):
    out = str(tmp_path / "lift.zarr")
    cfg = CollectConfig(task="lift", episodes=2, out=out, cameras=["agentview"], image_size=32, extraneous=1.0,
                        demonstrators=DEMOS, language_fraction=0.5, progress=False,
                        image_codec="blosc")  # fmt: skip  (lossless: the replayed first frame matches exactly)
    collect(cfg)
    s = EpisodeStore.open(out)
    assert s.n_episodes == 2 and s.attrs["task"] == "lift"
    assert s.attrs["env"]["image_size"] == 32 and s.attrs["phase_names"] == PHASES
    assert s.attrs["fps"] == 20  # the control rate: exporters (LeRobot) need it
    ep = s.get_episode(0)
    assert ep["agentview_image"].shape[1:] == (32, 32, 3) and ep["agentview_image"].dtype == np.uint8
    assert ep["phase"].dtype == np.int16 and ep["action"].shape[1] == 7
    assert set(np.unique(s.get("extraneous"))) <= {0, 1} and s.get("extraneous").sum() > 0  # labelled segments
    ext_phases = s.get("phase")[s.get("extraneous") == 1]
    assert set(PHASES[p] for p in ext_phases) <= {"wander", "pause"}
    meta = [s.episode_meta(i) for i in range(2)]
    assert all(m["success"] and m["task"] == "lift" for m in meta)
    assert {m["demonstrator"] for m in meta} == {"default", "heavy_object"}  # seeds 0, 1 round-robin
    heavy = next(m for m in meta if m["demonstrator"] == "heavy_object")
    assert json.loads(heavy["dynamics"])["object_mass_scale"] == 4.0
    assert all(m["mode"] in (0, 1) and m["instruction"] in ("", "lift the cube") for m in meta)
    # the store's attrs rebuild the env it was recorded with, and replaying seed 0 gives its first frame
    from robolearn.sim import make

    env = make(s.attrs["task"], **s.attrs["env"])
    first = env.reset(seed=int(meta[0]["seed"]))[0]
    env.close()
    if meta[0]["demonstrator"] == "default":
        assert np.array_equal(first["agentview_image"], ep["agentview_image"][0])
    # resume: a larger N appends new seeds, keeps the old episodes
    cfg.episodes = 3
    collect(cfg)
    s = EpisodeStore.open(out)
    assert s.n_episodes == 3 and len(set(s.meta_column("seed").tolist())) == 3


def test_cli_recipe_and_bad_input(tmp_path, capsys):
    out = tmp_path / "s.zarr"
    recipe = tmp_path / "r.toml"
    recipe.write_text(f'[collect]\ntask = "lift"\nepisodes = 1\nout = "{out}"\ncameras = []\n')
    assert main(["collect", "--recipe", str(recipe), "--no-progress"]) == 0
    assert EpisodeStore.open(str(out)).n_episodes == 1
    # a store recorded for another task
    assert main(["collect", "stack", "--episodes", "2", "--out", str(out), "--cameras", "", "--no-progress"]) == 1
    assert "recorded for task 'lift'" in capsys.readouterr().err
    assert EpisodeStore.open(str(out)).n_episodes == 1
    # an existing output that is not a store: untouched
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "file.txt").write_text("x")
    assert main(["collect", "lift", "--episodes", "1", "--out", str(junk), "--no-progress"]) == 1
    assert sorted(p.name for p in junk.iterdir()) == ["file.txt"]


@pytest.mark.parametrize(
    "kw, match",
    [
        ({"task": "nope", "episodes": 1}, "unknown task"),
        ({"task": "lift", "episodes": 0}, "--episodes"),
        ({"task": "lift", "episodes": 1, "cameras": ["nope"]}, "unknown camera"),
        ({"task": "lift", "episodes": 1, "image_size": -3}, "image-size"),
    ],
)
def test_bad_config_writes_nothing(tmp_path, kw, match):
    out = tmp_path / "x.zarr"
    with pytest.raises(UserError, match=match):
        collect(CollectConfig(out=str(out), progress=False, **kw))
    assert not Path(out).exists()

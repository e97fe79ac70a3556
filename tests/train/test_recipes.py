"""The recipes in policies/ and datasets/: they load, they include their method's values through
`base`, and they chain (what a dataset recipe writes is what the policy recipes read)."""

from __future__ import annotations

import json
import re
import shutil
import tomllib
from pathlib import Path

import pytest

from robolearn.cli import main
from robolearn.errors import UserError
from robolearn.sim.suite import load_suite
from robolearn.config_io import RENAMED_RECIPES
from robolearn.train.config import load_recipe

try:  # the pretraining run module is moving into robolearn/train
    from robolearn.train.pretrain_run import load_pretrain_recipe
except ImportError:  # pragma: no cover
    from robolearn.pretrain.run import load_pretrain_recipe

REPO = Path(__file__).resolve().parents[2]
POLICY_RECIPES = sorted((REPO / "policies").glob("*.toml"))
DATASET_RECIPES = sorted((REPO / "datasets").glob("*.toml"))
METHODS = ("diffusion", "act", "bc")  # single-task heads: a recipe for every task of TASKS
GOAL_METHODS = ("mdt",)  # multitask goal-conditioned heads: recipes for their multitask scenes only
TASKS = {"lift": "lift", "can": "pick_place_can", "square": "nut_assembly_square"}  # recipe prefix -> suite task


def _is_pretrain(p: Path) -> bool:
    return p.stem.endswith("_pretrain")


def _is_method_recipe(p: Path) -> bool:
    """policies/<method>[_image].toml: a method's values, included by the task recipes."""
    return p.stem.removesuffix("_image") in METHODS + GOAL_METHODS


def _load(p: Path, overrides: list[str] = ()):
    return (load_pretrain_recipe if _is_pretrain(p) else load_recipe)(p, list(overrides))


def _raw(p: Path) -> dict:
    return tomllib.loads(p.read_text())


def _collect(p: Path) -> dict:
    return _raw(p)["collect"]


def _one_line_error(exc: pytest.ExceptionInfo) -> str:
    msg = str(exc.value)
    assert "\n" not in msg
    return msg


# --------------------------------------------------------------------------- every recipe loads
@pytest.mark.parametrize("recipe", POLICY_RECIPES, ids=lambda p: p.stem)
def test_every_policy_recipe_loads_and_validates(recipe):
    run = _load(recipe)  # both loaders validate the method's config and [train]
    section = run.pretrain if _is_pretrain(recipe) else run.policy
    assert run.method == section.method
    if _is_method_recipe(recipe):
        assert run.method == recipe.stem.removesuffix("_image") and not run.dataset and not run.task
        return
    assert run.dataset and run.task in load_suite()
    if not _is_pretrain(recipe):
        # gravmad always reads a camera (its point cloud and colours): no separate _image recipe
        assert ("image" in recipe.stem or run.method == "gravmad") == any(k.endswith("_image") for k in run.policy.obs_keys)


def test_every_task_and_method_has_a_few_line_recipe_on_its_method_recipe():
    for method in METHODS:
        for sfx in ("", "_image"):
            base = REPO / "policies" / f"{method}{sfx}.toml"
            assert base.is_file()
            for prefix, task in TASKS.items():
                recipe = REPO / "policies" / f"{prefix}_{method}{sfx}.toml"
                raw = _raw(recipe)
                # only what differs between tasks; the method's values live in one file
                assert raw == {"base": base.name, "task": task, "dataset": raw["dataset"]}, recipe.name
                assert (_load(recipe).policy, _load(recipe).train) == (_load(base).policy, _load(base).train)


# --------------------------------------------------------------------------- `base` includes
def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_base_chains_deep_merge_and_the_including_file_then_overrides_win(tmp_path, monkeypatch):
    _write(tmp_path / "bc.toml", 'method = "bc"\ndataset = "base.zarr"\n[policy]\nobs_keys = ["state", "proprio"]\n'
           "horizon = 16\nn_action_steps = 8\nhidden = [64, 64]\n[train]\nsteps = 100\nlr = 1e-4\nbatch_size = 32\n")
    _write(tmp_path / "mid.toml",
           'base = "bc.toml"\n[policy]\nhorizon = 32\nobs_keys = ["state"]\n[train]\nsteps = 50\n')
    top = _write(tmp_path / "tasks" / "top.toml", 'base = "../mid.toml"\ntask = "lift"\n[train]\nsteps = 7\n')
    monkeypatch.chdir(tmp_path / "tasks")  # bases resolve against the including file, not the cwd
    run = load_recipe(str(top), ["train.lr=3e-4"])
    assert (run.method, run.dataset, run.task) == ("bc", "base.zarr", "lift")
    assert (run.policy.horizon, run.policy.n_action_steps, run.policy.hidden) == (32, 8, [64, 64])
    assert run.policy.obs_keys == ["state"]  # lists are replaced, not concatenated
    assert (run.train.steps, run.train.batch_size, run.train.lr) == (7, 32, 3e-4)
    # an override beats every file in the chain, also for keys only the base sets
    assert load_recipe(top, ["policy.n_action_steps=4", "train.steps=9"]).policy.n_action_steps == 4
    # unknown keys in a base are still errors naming the key
    _write(tmp_path / "bc.toml", 'method = "bc"\n[policy]\nhorizn = 16\n')
    with pytest.raises(UserError, match="unknown key 'policy.horizn'"):
        load_recipe(top)


def test_pretrain_recipes_include_too(tmp_path):
    recipe = _write(tmp_path / "my_dynamo_pretrain.toml",
                    f'base = "{REPO / "policies" / "lift_dynamo_pretrain.toml"}"\n[pretrain]\nwindow_size = 4\n')
    run = load_pretrain_recipe(recipe, ["train.steps=3"])
    shipped = load_pretrain_recipe(REPO / "policies" / "lift_dynamo_pretrain.toml")
    assert (run.method, run.pretrain.window_size, run.train.steps) == ("dynamo", 4, 3)
    assert (run.pretrain.latent_dim, run.pretrain.encoder, run.dataset) == (
        shipped.pretrain.latent_dim, shipped.pretrain.encoder, shipped.dataset)


def test_a_cycle_or_a_missing_base_is_one_line_naming_the_file(tmp_path):
    a = _write(tmp_path / "a.toml", 'base = "b.toml"\nmethod = "bc"\n')
    _write(tmp_path / "b.toml", 'base = "a.toml"\n')
    with pytest.raises(UserError) as exc:
        load_recipe(a)
    assert re.search(r"b\.toml: base 'a\.toml' makes a cycle \(a\.toml -> b\.toml -> a\.toml\)", _one_line_error(exc))
    me = _write(tmp_path / "me.toml", 'base = "me.toml"\n')
    with pytest.raises(UserError, match="me.toml: base 'me.toml' makes a cycle"):
        load_recipe(me)
    lost = _write(tmp_path / "lost.toml", 'base = "nowhere.toml"\nmethod = "bc"\n')
    with pytest.raises(UserError) as exc:
        load_recipe(lost)
    assert f"{lost}: base 'nowhere.toml' not found" in _one_line_error(exc)
    bad = _write(tmp_path / "bad.toml", "base = 3\n")
    with pytest.raises(UserError, match="bad.toml: 'base' expected the path of another recipe"):
        load_recipe(bad)
    broken = _write(tmp_path / "broken.toml", "[policy\n")
    via = _write(tmp_path / "via.toml", 'base = "broken.toml"\n')
    with pytest.raises(UserError, match="broken.toml: invalid TOML"):
        load_recipe(via)


def test_renamed_recipes_name_their_new_name(monkeypatch, capsys):
    assert RENAMED_RECIPES
    for old, new in RENAMED_RECIPES.items():
        assert not (REPO / old).exists() and (REPO / old).with_name(new).is_file()
    monkeypatch.chdir(REPO)
    assert main(["collect", "--recipe", "datasets/lift_ph.toml", "--no-progress"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.endswith("datasets/lift_ph.toml: renamed to datasets/lift_image.toml") and "\n" not in err
    with pytest.raises(UserError, match="nope.toml: recipe not found"):
        load_recipe(REPO / "policies" / "nope.toml")


# --------------------------------------------------------------------------- the chain
def _dataset_outs() -> dict[str, Path]:
    return {_collect(p)["out"]: p for p in DATASET_RECIPES}


def test_every_suite_task_has_a_dataset_recipe_and_stores_live_in_one_place():
    by_task: dict[str, list[str]] = {}
    for p in DATASET_RECIPES:
        c = _collect(p)
        assert c["task"] in load_suite(), p.name
        assert c["out"] == f"datasets/stores/{p.stem}.zarr", p.name  # <name>.toml -> stores/<name>.zarr
        by_task.setdefault(c["task"], []).append(p.stem)
    assert set(by_task) == set(load_suite())


@pytest.mark.parametrize("recipe", [p for p in POLICY_RECIPES if not _is_method_recipe(p)], ids=lambda p: p.stem)
def test_every_policy_recipe_reads_what_a_dataset_recipe_writes(recipe):
    run = _load(recipe)
    outs = _dataset_outs()
    dataset = run.dataset
    if dataset.endswith("_labelled.zarr"):  # a labelled copy: the recipe's header says how it is made
        source = dataset.removesuffix("_labelled.zarr") + ".zarr"
        assert f"cp -r {source} {dataset}" in recipe.read_text() and f"dataset={dataset}" in recipe.read_text()
        dataset = source
    assert dataset in outs, f"{recipe.name}: {run.dataset} is written by no datasets/*.toml"
    collect = _collect(outs[dataset])
    assert collect["task"] == run.task
    # the store has the cameras the recipe reads (and a state-only store has none to read)
    obs_keys = run.pretrain.obs_keys if _is_pretrain(recipe) else run.policy.obs_keys
    cameras = collect.get("cameras", list(load_suite()[run.task].cameras))
    assert {k.removesuffix("_image") for k in obs_keys if k.endswith("_image")} <= set(cameras)


# --------------------------------------------------------------------------- end to end, through the CLI
def _checkout(tmp_path: Path) -> Path:
    """The recipes as a fresh clone has them (no stores, no runs), as the cwd."""
    for folder in ("datasets", "policies"):
        (tmp_path / folder).mkdir()
        for p in (REPO / folder).glob("*.toml"):
            shutil.copy(p, tmp_path / folder / p.name)
    return tmp_path


def _chain(tmp_path, monkeypatch, name: str, collect_args: list[str], train_args: list[str]) -> Path:
    monkeypatch.chdir(_checkout(tmp_path))
    dataset_recipe = f"datasets/{name.split('_', 1)[0]}{'_image' if name.endswith('_image') else ''}.toml"
    assert main(["collect", "--recipe", dataset_recipe, "--no-progress", *collect_args]) == 0
    assert main(["train", "--recipe", f"policies/{name}.toml", "--device", "cpu", "--out", "runs/chain",
                 "--no-progress", "train.steps=3", "train.batch_size=8", "data.num_workers=0", *train_args]) == 0
    run = tmp_path / "runs" / "chain"
    assert (run / "checkpoints" / "last").exists()
    return run


def test_collect_then_train_with_the_recipes_as_shipped(tmp_path, monkeypatch):
    run = _chain(tmp_path, monkeypatch, "lift_bc", ["--episodes", "2", "--workers", "1"], ["policy.hidden=[32,32]"])
    assert json.loads((run / "config.json").read_text())["dataset"] == "datasets/stores/lift.zarr"


@pytest.mark.slow
def test_collect_then_train_an_image_recipe(tmp_path, monkeypatch):
    run = _chain(tmp_path, monkeypatch, "lift_diffusion_image", ["--episodes", "2", "--workers", "1"],
                 ["policy.encoder.image_width=16", "policy.down_dims=[16,32]", "train.batch_size=4"])
    assert json.loads((run / "config.json").read_text())["dataset"] == "datasets/stores/lift_image.zarr"

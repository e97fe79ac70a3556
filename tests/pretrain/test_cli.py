"""`robolearn pretrain` end to end, and bad input: one line on stderr, exit 1, nothing written."""

from __future__ import annotations

import pytest

from robolearn.cli import main


def _recipe(tmp_path, to_toml, recipe: dict):
    path = tmp_path / "recipe.toml"
    path.write_text(to_toml(recipe))
    return str(path)


def test_cli_pretrains_exports_and_resumes(square_store, tiny_recipe, to_toml, tmp_path, capsys):
    recipe = _recipe(tmp_path, to_toml, tiny_recipe(square_store, "dynamo", tmp_path / "unused", pretrain={"window_size": 3}))
    out = tmp_path / "run"
    # options may follow the key=value overrides, like `robolearn train`
    assert main(["pretrain", "--recipe", recipe, "train.checkpoint_every=3", "--max-steps", "3", "--out", str(out), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "pretrained dynamo to step 3" in printed and f"encoder: {out / 'encoder'}" in printed
    assert (out / "encoder" / "encoder.safetensors").is_file() and not (tmp_path / "unused").exists()

    assert main(["pretrain", "--resume", str(out), "--max-steps", "5", "--no-progress"]) == 0
    assert "to step 5" in capsys.readouterr().out
    assert (out / "checkpoints" / "last").resolve().name == "step_5"


def _bad_inputs(square_store, make_square_store, tiny_recipe, tmp_path):
    no_images = make_square_store(tmp_path / "no_images.zarr", n_episodes=2, length=6, images=False)
    no_actions = make_square_store(tmp_path / "no_actions.zarr", n_episodes=2, length=6, actions=False)
    out = tmp_path / "out"
    return {
        "unknown method": (tiny_recipe(square_store, "dinov9", out), "unknown pretraining method 'dinov9'"),
        "no images": (tiny_recipe(no_images, "dynamo", out, pretrain={"obs_keys": ["state"]}), "dynamo needs camera images"),
        "no actions": (tiny_recipe(no_actions, "inverse_dynamics", out), "inverse_dynamics needs actions"),
        "missing key": (tiny_recipe(no_images, "dynamo", out), "no data key 'agentview_image'"),
        "unknown key": (tiny_recipe(square_store, "dynamo", out, pretrain={"hidden": [8]}), "unknown key 'pretrain.hidden'"),
        "batch too big": (tiny_recipe(square_store, "dynamo", out, train={"batch_size": 1000}),
                          "train.batch_size: 1000 is larger than the 120 windows"),
    }


@pytest.mark.parametrize("case", ["unknown method", "no images", "no actions", "missing key", "unknown key", "batch too big"])
def test_cli_bad_input_is_one_line_exit_1_nothing_written(case, square_store, make_square_store, tiny_recipe, to_toml,
                                                         tmp_path, capsys):
    recipe, message = _bad_inputs(square_store, make_square_store, tiny_recipe, tmp_path)[case]
    path = _recipe(tmp_path, to_toml, recipe)
    assert main(["pretrain", "--recipe", path, "--no-progress"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("robolearn pretrain: error: ") and "\n" not in err and message in err, err
    assert not (tmp_path / "out").exists()


def test_cli_dynamo_runs_on_a_store_without_actions(make_square_store, tiny_recipe, to_toml, tmp_path, capsys):
    store = make_square_store(tmp_path / "no_actions.zarr", n_episodes=2, length=10, actions=False)
    path = _recipe(tmp_path, to_toml, tiny_recipe(store, "dynamo", tmp_path / "run", pretrain={"window_size": 3},
                                                  train={"steps": 2, "batch_size": 8}))
    assert main(["pretrain", "--recipe", path, "--no-progress"]) == 0
    assert "encoder:" in capsys.readouterr().out


def test_cli_train_with_a_mismatched_pretrained_encoder_fails_cleanly(square_store, make_square_store, tiny_recipe,
                                                                     tiny_encoder, to_toml, tmp_path, capsys):
    from robolearn.pretrain.base import pretrainer_class
    from robolearn.train.pretrain_run import load_pretrain_recipe, open_pretrain_data

    small = make_square_store(tmp_path / "small.zarr", n_episodes=2, length=6, image_size=24)
    run = load_pretrain_recipe(None, [], base=tiny_recipe(small, "dynamo", tmp_path / "pt"))
    _, stats = open_pretrain_data(run)
    encoder = pretrainer_class("dynamo")(run.pretrain, stats).export_encoder(tmp_path / "enc24")  # 24x24 cameras

    out = tmp_path / "policy_run"
    policy_recipe = {
        "dataset": square_store, "method": "bc", "out": str(out), "device": "cpu",
        "policy": {"obs_keys": ["agentview_image", "proprio"], "horizon": 4, "n_action_steps": 2, "hidden": [16],
                   "encoder": {**tiny_encoder, "pretrained": str(encoder), "freeze_pretrained": True}},
        "train": {"steps": 2, "batch_size": 8, "progress": False, "tensorboard": False},
    }
    path = _recipe(tmp_path, to_toml, policy_recipe)
    assert main(["train", "--recipe", path]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("robolearn train: error: policy.encoder.pretrained: ") and "\n" not in err, err
    assert "24x24x3" in err and "32x32x3" in err
    assert not out.exists()

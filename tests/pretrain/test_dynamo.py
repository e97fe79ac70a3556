"""DynaMo: the objective decreases on the tiny square store without collapsing, and padded steps
past the episode end do not count."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file
from torch.utils.data import default_collate

from robolearn.datasets.store import EpisodeStore
from robolearn.nn.vision import ResNetImageEncoder
from robolearn.pretrain.base import pretrainer_class
from robolearn.train.pretrain_run import load_pretrain_recipe, open_pretrain_data, pretrain, window_dataset


def frame_features(encoder_dir: Path | None, store: str, tiny_encoder: dict, seed: int = 0) -> torch.Tensor:
    """Eval-mode features (N, d) of every frame of the store, by the exported (or a fresh) encoder."""
    torch.manual_seed(seed)
    e = tiny_encoder
    enc = ResNetImageEncoder(3, e["image_width"], e["image_feature_dim"], e["image_pooling"], e.get("num_keypoints", 32), e["crop_size"]).eval()
    if encoder_dir is not None:
        enc.load_state_dict(load_file(str(encoder_dir / "encoder.safetensors")))
    with torch.no_grad():
        return enc(torch.from_numpy(EpisodeStore.open(store).get("agentview_image")))


def test_dynamo_loss_decreases_and_features_do_not_collapse(square_store, tiny_recipe, tiny_encoder, tmp_path):
    recipe = tiny_recipe(square_store, "dynamo", tmp_path / "run", pretrain={"window_size": 3}, train={"steps": 150})
    res = pretrain(load_pretrain_recipe(None, [], base=recipe))
    first, last = np.mean(res.losses[:10]), np.mean(res.losses[-10:])
    assert last < 0.3 * first, (first, last)

    log = [json.loads(line) for line in (tmp_path / "run" / "train_log.jsonl").read_text().splitlines()]
    assert all(rec["feature_std"] > 0.3 for rec in log[-20:])  # the logged metric, during training
    trained = frame_features(Path(res.outputs["encoder"]), square_store, tiny_encoder)
    std = trained.std(dim=0).mean().item()  # across all frames, per feature
    assert std > 0.3, std  # collapse would send it to ~0 (the paper's loss alone reached 0.006 here)
    assert torch.linalg.matrix_rank(trained - trained.mean(0), atol=1e-3) >= 4  # more than one direction used


def test_dynamo_ignores_steps_padded_past_the_episode_end(square_store, tiny_encoder):
    run = load_pretrain_recipe(None, [], base={"dataset": square_store, "method": "dynamo",
                                               "pretrain": {"encoder": tiny_encoder, "window_size": 4}})
    store, stats = open_pretrain_data(run)
    pt = pretrainer_class("dynamo")(run.pretrain, stats).eval()
    ds = window_dataset(run, store, pt.window)
    ends = EpisodeStore.open(square_store).episode_ends
    idx = [int(e) - 2 for e in ends] + [0, 5, 30]  # windows running past their episode's end, and ordinary ones
    batch = default_collate([ds[i] for i in idx])
    pad = batch["obs_is_pad"]
    assert pad[:6].any() and not pad[6:].any()
    with torch.no_grad():
        before = pt.compute_loss(batch)
        frames = batch["obs"]["agentview_image"].clone()
        frames[pad] = torch.randint(0, 256, frames[pad].shape, dtype=torch.uint8)  # scramble the padded frames
        after = pt.compute_loss({**batch, "obs": {"agentview_image": frames}})
    for key in ("loss", "dynamics_loss", "covariance_loss", "variance_loss"):
        assert torch.allclose(before[key], after[key], atol=1e-6), key


def test_dynamo_with_two_cameras_separate_or_concatenated(make_square_store, tiny_encoder, tmp_path):
    store = make_square_store(tmp_path / "two.zarr", n_episodes=2, length=8, second_camera=True)
    for separate in (True, False):
        run = load_pretrain_recipe(None, [], base={
            "dataset": store, "method": "dynamo",
            "pretrain": {"obs_keys": ["agentview_image", "wrist_image"], "encoder": tiny_encoder,
                         "window_size": 3, "separate_views": separate, "crop": "window"}})
        s, stats = open_pretrain_data(run)
        pt = pretrainer_class("dynamo")(run.pretrain, stats)
        batch = default_collate([window_dataset(run, s, pt.window)[i] for i in range(6)])
        out = pt.compute_loss(batch)
        assert torch.isfinite(out["loss"])
        out["loss"].backward()
        assert all(p.grad is not None for p in pt.encoder.parameters())
        info = json.loads((pt.export_encoder(tmp_path / f"enc{separate}") / "encoder.json").read_text())
        assert info["cameras"] == ["agentview_image", "wrist_image"]

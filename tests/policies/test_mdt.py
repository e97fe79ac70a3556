"""MDT (robolearn/policies/mdt.py): its loss falls on a tiny multitask store, CLA pulls paired
language / image latent goals together, MGF reconstructs a future frame from the latent tokens, and
goals it cannot follow are refused in one line."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from robolearn.datasets.store import EpisodeStore
from robolearn.errors import UserError
from robolearn.goal import Goal, GoalConfig
from robolearn.nn.obs_encoder import EncoderConfig
from robolearn.policies import make_policy
from robolearn.policies.mdt import MDTConfig

IMG = 64  # the ResNet layout downsamples 32x: smaller frames collapse to one cell and all look alike
STATS = {
    "state": {"min": [-1.0, -1.0], "max": [1.0, 1.0], "mean": [0.0, 0.0], "std": [0.5, 0.5]},
    "action": {"min": [-1.0, -1.0], "max": [1.0, 1.0], "mean": [0.0, 0.0], "std": [0.5, 0.5]},
}
INSTRUCTIONS = ["go to the red corner", "go to the blue corner", "go to the green corner", "go to the yellow corner"]
CORNERS = torch.tensor([[-1.0, -1.0], [1.0, 1.0], [-1.0, 1.0], [1.0, -1.0]])


def mdt(**kw) -> torch.nn.Module:
    kw = {"goal": GoalConfig(modalities=["language", "image"], image_keys=["cam_image"],
                             image_shapes={"cam_image": [IMG, IMG, 3]}), **kw}
    cfg = MDTConfig(obs_keys=["state"], obs_shapes={"state": [2], "cam_image": [IMG, IMG, 3]}, action_dim=2,
                    horizon=4, n_action_steps=4, d_model=32, n_heads=4, encoder_layers=1, decoder_layers=1,
                    num_inference_steps=4, mgf_patch=16, cla_dim=16, dropout=0.0,
                    encoder=EncoderConfig(image_width=8, image_feature_dim=8, num_keypoints=4, crop_size=0), **kw)
    torch.manual_seed(0)
    return make_policy(cfg, STATS)


def square_frame(xy: torch.Tensor) -> torch.Tensor:
    """(B, 2) in [-1, 1] -> uint8 (B, IMG, IMG, 3): black with the quadrant the signs of xy name white."""
    b, h = xy.shape[0], IMG // 2
    frames = torch.zeros(b, IMG, IMG, 3, dtype=torch.uint8)
    for i in range(b):
        r, c = int(xy[i, 0] > 0) * h, int(xy[i, 1] > 0) * h
        frames[i, r:r + h, c:c + h] = 255
    return frames


def toy_batch(b: int, gen: torch.Generator, labelled: float = 1.0) -> dict:
    """Goal k of 4: an instruction (on a `labelled` share) and a goal image (the goal's quadrant lit:
    a solid colour would not do, the encoders' GroupNorm removes it); the action points at the goal's
    corner; the future frame lights the quadrant the state is in."""
    k = torch.randint(0, 4, (b,), generator=gen)
    corners = CORNERS
    state = torch.rand(b, 1, 2, generator=gen) * 2 - 1
    has_text = torch.rand(b, generator=gen) < labelled
    return {
        "obs": {"state": state},
        "action": corners[k][:, None].repeat(1, 4, 1) * 0.9,
        "action_is_pad": torch.zeros(b, 4, dtype=torch.bool),
        "weight": torch.ones(b),
        "goal": {"instruction": [INSTRUCTIONS[i] if t else "" for i, t in zip(k.tolist(), has_text.tolist())],
                 "image": {"cam_image": square_frame(corners[k])},
                 "present": {"language": has_text, "image": torch.ones(b, dtype=torch.bool)}},
        "future": {"cam_image": square_frame(state[:, 0])},
    }


def train(policy, steps: int, b: int = 32, lr: float = 3e-3, **batch_kw) -> list[dict]:
    opt = torch.optim.Adam(policy.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(1)
    logs = []
    policy.train()
    for _ in range(steps):
        out = policy.compute_loss(toy_batch(b, gen, **batch_kw))
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
        logs.append({k: float(v.detach()) for k, v in out.items()})
    return logs


def test_cla_pulls_the_language_and_image_latent_goals_of_a_sample_together():
    policy = mdt(mgf_coef=0.0)
    gen = torch.Generator().manual_seed(7)

    def similarity() -> tuple[float, float, float]:
        """Mean cosine of paired (same goal) and unpaired latent goals, and how often an instruction's
        latent goal is nearest to a goal image of its own goal (retrieval accuracy)."""
        policy.eval()
        with torch.no_grad():
            batch = toy_batch(64, gen)
            tokens, present = policy.goal_tokens(batch["goal"], 64)
            obs_tok = policy.obs_tokens(policy.prepare_obs(batch["obs"]))
            z_l = torch.nn.functional.normalize(policy.cla_proj(policy.latents(obs_tok, tokens["language"])[:, 0]), dim=-1)
            z_i = torch.nn.functional.normalize(policy.cla_proj(policy.latents(obs_tok, tokens["image"])[:, 0]), dim=-1)
            sim = z_l @ z_i.T
            same = torch.tensor([[a == b for b in batch["goal"]["instruction"]] for a in batch["goal"]["instruction"]])
            hit = same[torch.arange(64), sim.argmax(1)].float().mean()
        return float(sim[same].mean()), float(sim[~same].mean()), float(hit)

    before = similarity()
    logs = train(policy, 200)
    pos, neg, hit = similarity()
    assert np.mean([r["cla_loss"] for r in logs[-10:]]) < 0.5 * np.mean([r["cla_loss"] for r in logs[:10]])
    assert pos > neg + 0.1 and hit > 0.9 > before[2], (before, (pos, neg, hit))  # paired goals align, others do not


def test_mgf_reconstructs_a_future_frame_from_the_latent_tokens():
    policy = mdt(cla_coef=0.0, future_keys=["cam_image"], future_steps=1, mgf_mask_ratio=0.5)
    train(policy, 250)
    policy.eval()
    gen = torch.Generator().manual_seed(3)
    batch = toy_batch(128, gen)
    with torch.no_grad():
        tokens, _ = policy.goal_tokens(batch["goal"], 128)
        lat = policy.latents(policy.obs_tokens(policy.prepare_obs(batch["obs"])), tokens["image"])
        torch.manual_seed(0)
        right = policy.foresight.loss(lat, batch["future"], 0.5).mean()
        torch.manual_seed(0)  # the same masks, the latents of other samples
        shuffled = policy.foresight.loss(lat[torch.randperm(128, generator=gen)], batch["future"], 0.5).mean()
        target = policy.foresight.patches(batch["future"])
        mean_image = (target - target.mean(0, keepdim=True)).square().mean()  # chance: the average frame
    assert right < 0.6 * shuffled and right < 0.6 * mean_image, (float(right), float(shuffled), float(mean_image))


def test_loss_falls_on_a_tiny_multitask_store_with_sparse_instructions(tmp_path):
    """Through the trainer's data path: final-frame goal images, 25% instructions, future frames."""
    from torch.utils.data import DataLoader

    from robolearn.train.config import RunConfig
    from robolearn.train.data import open_training_data

    rng = np.random.default_rng(0)
    store = EpisodeStore.create(str(tmp_path / "toy.zarr"), attrs={"task": "toy"})
    for e in range(12):
        k, n = e % 4, 12
        state = np.linspace(rng.uniform(-1, 1, 2), [[-1, -1], [1, 1], [-1, 1], [1, -1]][k], n).astype(np.float32)
        frames = square_frame(torch.from_numpy(state)).numpy()
        frames[-1] = square_frame(CORNERS[k:k + 1])[0].numpy()  # the goal image: the final frame
        store.append_episode({"state": state, "cam_image": frames, "action": np.diff(state, axis=0, append=state[-1:])},
                             meta={"instruction": INSTRUCTIONS[k] if e % 4 == 0 else ""})
    store.compute_stats()
    run = RunConfig(dataset=str(tmp_path / "toy.zarr"), policy=MDTConfig(
        obs_keys=["state"], horizon=4, n_action_steps=4, d_model=32, n_heads=4, encoder_layers=1, decoder_layers=1,
        mgf_patch=16, future_keys=["cam_image"], future_steps=2, goal=GoalConfig(modalities=["language", "image"],
                                                                                image_keys=["cam_image"]),
        encoder=EncoderConfig(image_width=8, image_feature_dim=8, num_keypoints=4, crop_size=0)))
    dataset, stats = open_training_data(run)
    torch.manual_seed(0)
    policy = make_policy(run.policy, stats)
    opt = torch.optim.Adam(policy.parameters(), lr=2e-3)
    logs = []
    for _ in range(5):
        for batch in DataLoader(dataset, batch_size=32, shuffle=True, generator=torch.Generator().manual_seed(0)):
            out = policy.compute_loss(batch)
            opt.zero_grad()
            out["loss"].backward()
            opt.step()
            logs.append({k: float(v.detach()) for k, v in out.items()})
    assert {"loss", "diffusion_loss", "mgf_loss", "cla_loss"} <= set(logs[0])
    first, last = np.mean([r["loss"] for r in logs[:3]]), np.mean([r["loss"] for r in logs[-3:]])
    assert last < 0.8 * first, (first, last)


def test_acting_uses_the_instruction_or_the_goal_image_and_refuses_what_it_cannot_follow():
    policy = mdt()
    train(policy, 300, labelled=0.5)
    policy.eval()
    obs = {"state": torch.zeros(1, 1, 2)}
    for k, corner in enumerate(CORNERS):
        by_text = policy.predict_action_chunk(obs, Goal(instruction=INSTRUCTIONS[k]))[0].mean(0)
        by_image = policy.predict_action_chunk(obs, Goal(images={"cam_image": square_frame(corner[None])[0].numpy()}))[0].mean(0)
        assert torch.dot(by_text, corner) > 0.5 and torch.dot(by_image, corner) > 0.5, (k, by_text, by_image)
    with pytest.raises(UserError, match="goal image 'cam_image' is uint8 \\[8, 8, 3\\].*expects uint8 \\[64, 64, 3\\]"):
        policy.predict_action_chunk(obs, Goal(images={"cam_image": np.zeros((8, 8, 3), np.uint8)}))
    with pytest.raises(UserError, match="goal state was given but this policy was trained without state goals"):
        policy.predict_action_chunk(obs, Goal(state={"state": np.zeros(2, np.float32)}))
    language_only = mdt(goal=GoalConfig(modalities=["language"]))
    with pytest.raises(UserError, match="a goal image was given but this policy was trained without image goals"):
        language_only.predict_action_chunk(obs, Goal(images={"cam_image": np.zeros((IMG, IMG, 3), np.uint8)}))
    with pytest.raises(UserError, match="'mdt' head takes no state goals"):
        mdt(goal=GoalConfig(modalities=["state"], state_keys=["state"], state_dims={"state": 2}))


def test_training_refuses_language_goals_when_no_demo_has_an_instruction(tmp_path):
    from robolearn.train.config import RunConfig
    from robolearn.train.data import open_training_data

    store = EpisodeStore.create(str(tmp_path / "mute.zarr"), attrs={"task": "toy"})
    for _ in range(2):
        store.append_episode({"state": np.zeros((5, 2), np.float32), "action": np.zeros((5, 2), np.float32)},
                             meta={"instruction": ""})
    store.compute_stats()
    run = RunConfig(dataset=str(tmp_path / "mute.zarr"), policy=MDTConfig(obs_keys=["state"], goal=GoalConfig(modalities=["language"])))
    with pytest.raises(UserError, match="mute.zarr: policy.goal has language goals but no episode has an instruction"):
        open_training_data(run)


def test_real_time_chunking_keeps_the_committed_prefix_exactly():
    policy = mdt().eval()
    obs = {"state": torch.zeros(1, 1, 2)}
    prefix = torch.tensor([[[0.3, -0.2], [0.25, -0.1]]])
    chunk = policy.predict_action_chunk(obs, Goal(instruction=INSTRUCTIONS[0]), prefix=prefix, prefix_len=2)
    assert torch.allclose(chunk[:, :2], prefix, atol=1e-5) and chunk.shape == (1, 4, 2)


def test_sampler_gives_the_frame_future_steps_ahead_clipped_to_the_episode(tmp_path):
    """MGF's target: the frame k steps ahead (the episode's last past its end), the same through the
    batched reads the DataLoader uses and one window at a time."""
    from robolearn.datasets.sampler import WindowDataset

    store = EpisodeStore.create(str(tmp_path / "f.zarr"), attrs={"task": "toy"}, image_codecs="blosc")  # exact tags
    for length in (5, 7):
        frames = np.zeros((length, 8, 8, 3), np.uint8)
        frames[:, 0, 0, 0] = np.arange(length) + 10 * length  # each frame tagged with its step
        store.append_episode({"state": np.zeros((length, 2), np.float32), "cam_image": frames,
                              "action": np.zeros((length, 2), np.float32)})
    ds = WindowDataset(str(tmp_path / "f.zarr"), obs_keys=["state"], obs_horizon=1, action_horizon=2,
                       future_keys=["cam_image"], future_steps=3)
    batched = ds.__getitems__(list(range(len(ds))))
    for i, item in enumerate(batched):
        length = 5 if i < 5 else 7
        t = i if i < 5 else i - 5
        assert item["future"]["cam_image"][0, 0, 0] == min(t + 3, length - 1) + 10 * length
        assert np.array_equal(ds[i]["future"]["cam_image"], item["future"]["cam_image"])
    with pytest.raises(UserError, match="future_steps: expected >= 1"):
        WindowDataset(str(tmp_path / "f.zarr"), obs_keys=["state"], future_keys=["cam_image"], future_steps=0)

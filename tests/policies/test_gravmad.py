"""GravMAD (robolearn/policies/gravmad.py, gravmap.py): keypose discovery, GravMaps, the keypose head's
contract (its own: the generic contract tests' toy store has no point clouds or keypose labels),
reaching a toy sub-goal, the grounders and bad inputs."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from robolearn.errors import UserError
from robolearn.goal import Goal
from robolearn.policies import load_policy, make_policy
from robolearn.policies.gravmad import POS_SCALE, GravMADConfig, quat_to_mat
from robolearn.policies.gravmap import (OracleGrounder, OutsideWorkspace, SubGoal, discover_keyposes, gravmap, grid_points,
                                        keypose_labels, label_store, parse_colors, phase_ends, phase_match)

IMG = 12
DOWN = [1.0, 0.0, 0.0, 0.0]  # quat xyzw: gripper pointing down (x-axis rotation by pi)


def _stats(d):
    return {"min": [-1.0] * d, "max": [1.0] * d, "mean": [0.0] * d, "std": [1.0] * d}


STATS = {"proprio": _stats(9), "object": _stats(28), "action": _stats(7), "agentview_pointcloud": _stats(3)}


def tiny_gravmad(**kw):
    cfg = GravMADConfig(**{"hidden": 64, "token_dim": 32, "num_train_timesteps": 20, "num_inference_steps": 5,
                           "n_points": 64, "grid_shape": [6, 6, 4], **kw})
    cfg.obs_shapes = {"proprio": [9], "object": [28], "agentview_image": [IMG, IMG, 3], "agentview_pointcloud": [IMG, IMG, 3]}
    cfg.action_dim = 7
    cfg.env = {"task": "toy", "env": {}}
    return make_policy(cfg, STATS)


def toy_obs(b=4, seed=0, eef=None):
    g = torch.Generator().manual_seed(seed)
    pc = torch.stack([torch.rand(b, 1, IMG, IMG, generator=g) * 0.4 - 0.2, torch.rand(b, 1, IMG, IMG, generator=g) * 0.5 - 0.25,
                      0.81 + torch.rand(b, 1, IMG, IMG, generator=g) * 0.2], -1)
    eef = torch.tensor([-0.1, 0.0, 1.0]) if eef is None else torch.as_tensor(eef, dtype=torch.float32)
    proprio = torch.cat([eef.reshape(-1, 3).expand(b, 3), torch.tensor(DOWN).expand(b, 4), torch.tensor([0.04, -0.04]).expand(b, 2)], -1)
    return {"proprio": proprio[:, None], "object": torch.rand(b, 1, 28, generator=g),
            "agentview_image": torch.randint(0, 256, (b, 1, IMG, IMG, 3), generator=g, dtype=torch.uint8),
            "agentview_pointcloud": pc}


def toy_batch(b=4, seed=0, kp=None):
    g = torch.Generator().manual_seed(seed + 1)
    kp = torch.rand(b, 3, generator=g) * torch.tensor([0.2, 0.2, 0.15]) + torch.tensor([-0.1, -0.1, 0.85]) if kp is None else kp
    eef = torch.rand(b, 3, generator=g) * torch.tensor([0.2, 0.2, 0.15]) + torch.tensor([-0.1, -0.1, 0.85])
    return {"obs": toy_obs(b, seed, eef), "action": torch.zeros(b, 8, 7), "action_is_pad": torch.zeros(b, 8, dtype=torch.bool),
            "weight": torch.ones(b),
            "masks": {"keypose_pos": kp[:, None].expand(-1, 8, -1), "keypose_quat": torch.tensor(DOWN).expand(b, 8, 4),
                      "keypose_open": torch.zeros(b, 8, 1)},
            "goal": {"instruction": ["lift the red cube"] * b, "present": {"language": np.ones(b, bool)}}}


# ------------------------------------------------------------------------ keypose discovery
def synthetic_demo():
    """40 steps: moves 1 cm/step, rests at steps 10..15 (leaves after 15), moves, rests at 23..29 with
    the gripper command closing at 24 (leaves after 29), lifts, ends at 39: keyposes 15, 24, 29, 39."""
    v = np.array([0.01, 0.0, 0.0])
    seg = [np.tile(v, (10, 1)), np.zeros((5, 3)), np.tile(v, (8, 1)), np.zeros((6, 3)), np.tile([0, 0, 0.01], (10, 1))]
    pos = np.cumsum(np.concatenate([np.zeros((1, 3)), *seg]), axis=0)  # pos[t+1] - pos[t] = velocity t
    closed = np.zeros(len(pos), bool)
    closed[24:] = True
    return pos, closed


def test_discovery_finds_the_known_keyposes_of_a_synthetic_demo_exactly():
    pos, closed = synthetic_demo()
    assert discover_keyposes(pos, closed) == [15, 24, 29, 39]
    lab = keypose_labels(pos, np.tile(DOWN, (len(pos), 1)), closed)
    assert lab["keypose"].nonzero()[0].tolist() == [15, 24, 29, 39]
    # each step's label is the next keypose strictly after it; the last step labels itself
    assert np.allclose(lab["keypose_pos"][0], pos[15]) and np.allclose(lab["keypose_pos"][15], pos[24])
    assert np.allclose(lab["keypose_pos"][39], pos[39])
    assert lab["keypose_open"][23, 0] == 0.0 and lab["keypose_open"][10, 0] == 1.0  # key 15 open, key 24 closed


def test_phase_match_counts_timing_errors_missed_and_extra():
    ends = phase_ends(np.array([0] * 10 + [1] * 10 + [2] * 5))
    assert ends == [10, 20, 24]
    m = phase_match([11, 30, 24], ends, tol=3)
    assert sorted(m["errors"]) == [0, 1] and m["missed"] == 1 and m["extra"] == 1


def test_label_store_writes_per_step_labels(tmp_path):
    from robolearn.datasets.store import EpisodeStore

    pos, closed = synthetic_demo()
    store = EpisodeStore.create(tmp_path / "s.zarr", attrs={"task": "toy"})
    proprio = np.concatenate([pos, np.tile(DOWN, (len(pos), 1)), np.zeros((len(pos), 2))], -1).astype(np.float32)
    action = np.zeros((len(pos), 7), np.float32)
    action[:, -1] = np.where(closed, 1.0, -1.0)
    for _ in range(2):
        store.append_episode({"proprio": proprio, "action": action}, {"seed": 0})
    out = label_store(str(tmp_path / "s.zarr"))
    assert out["mean_keyposes"] == 4
    s = EpisodeStore.open(tmp_path / "s.zarr")
    assert s.get("keypose").nonzero()[0].tolist() == [15, 24, 29, 39, 55, 64, 69, 79]
    assert s.get("keypose_pos").shape == (80, 3) and s.get("keypose_open").shape == (80, 1)
    bad = EpisodeStore.create(tmp_path / "b.zarr", attrs={"task": "toy"})
    bad.append_episode({"action": action}, {"seed": 0})
    with pytest.raises(UserError, match="proprio"):
        label_store(str(tmp_path / "b.zarr"))


# ------------------------------------------------------------------------------- GravMap
def test_gravmap_cost_minimum_sits_at_the_sub_goal():
    low, high = (-0.25, -0.3, 0.8), (0.2, 0.3, 1.15)
    grid = torch.from_numpy(grid_points(low, high, (10, 10, 6)))
    goals = torch.tensor([[0.05, -0.1, 0.85], [-0.2, 0.25, 1.1]])
    gm = gravmap(goals, torch.tensor([1.0, 0.0]), grid, low, high, radius=0.06)
    assert gm.shape == (2, 600, 5)
    for i in range(2):
        nearest = torch.linalg.norm(grid - goals[i], dim=-1).argmin()
        assert gm[i, :, 3].argmin() == nearest
        assert gm[i, :, 3].min() < 0.1 and gm[i, :, 3].max() <= 1.0
    near = torch.linalg.norm(grid - goals[0], dim=-1) < 0.06
    assert (gm[0, near, 4] == 1).all() and (gm[1, torch.linalg.norm(grid - goals[1], dim=-1) < 0.06, 4] == -1).all()
    assert (gm[0, ~near, 4] == 0).all()
    with pytest.raises(OutsideWorkspace, match="outside the workspace"):
        gravmap(torch.tensor([[0.0, 0.0, 0.5]]), torch.tensor([1.0]), grid, low, high)


# --------------------------------------------------------------------- the head's contract
def test_loss_is_finite_and_chunk_has_the_right_shape_and_limits():
    policy = tiny_gravmad()
    out = policy.compute_loss(toy_batch())
    assert torch.isfinite(out["loss"]) and {"keypose_loss", "grounder_loss"} <= set(out)
    out["loss"].backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in policy.parameters())
    policy.eval()
    sg = policy.ground(toy_obs(2), ["lift the red cube", "stack the red cube on the blue cube"])  # the learned grounder
    assert sg.pos.shape == (2, 3) and ((sg.confidence >= 0) & (sg.confidence <= 1)).all()
    policy.grounder = FixedGrounder([0.0, 0.0, 0.85])
    chunk = policy.predict_action_chunk(toy_obs(1), Goal("lift the red cube"))
    assert chunk.shape == (1, policy.config.horizon, 7) and torch.isfinite(chunk).all() and chunk.abs().max() <= 1.0
    two = {k: torch.cat([v, v], 1) for k, v in toy_obs(1).items()}  # a longer history: the last frame is used
    assert policy.predict_action_chunk(two, Goal("lift the red cube")).shape == chunk.shape
    policy.reset()


def test_save_load_round_trip_is_bitwise(tmp_path):
    policy = tiny_gravmad().eval()
    policy.save(tmp_path / "ckpt")
    loaded = load_policy(tmp_path / "ckpt")
    sd, sd2 = policy.state_dict(), loaded.state_dict()
    assert sd.keys() == sd2.keys() and all(torch.equal(sd[k], sd2[k]) for k in sd)
    obs, goal = toy_obs(1), Goal("lift the red cube")
    torch.manual_seed(3)
    a = policy.predict_action_chunk(obs, goal)
    torch.manual_seed(3)
    assert torch.equal(a, loaded.predict_action_chunk(obs, goal))


def test_bad_configs_and_batches_are_one_line_errors():
    with pytest.raises(UserError, match="point cloud.*--pointcloud"):
        tiny_gravmad(obs_keys=["proprio", "object", "agentview_image"])
    with pytest.raises(UserError, match="grounder"):
        tiny_gravmad(grounder="gpt")
    policy = tiny_gravmad()
    batch = toy_batch()
    del batch["masks"]["keypose_open"]
    with pytest.raises(UserError, match="keypose labels"):
        policy.compute_loss(batch)
    with pytest.raises(UserError, match="goal image"):
        policy.eval().predict_action_chunk(toy_obs(1), Goal(images={"agentview_image": np.zeros((IMG, IMG, 3), np.uint8)}))


class FixedGrounder:
    """A Grounder (the VLM hook's shape) that always proposes one sub-goal."""

    def __init__(self, pos, open_=0.0, confidence=1.0):
        self.pos, self.open, self.conf = torch.tensor(pos), open_, confidence

    def ground(self, obs, instructions):
        b = len(instructions)
        return SubGoal(self.pos.expand(b, 3).clone(), torch.full((b,), self.open), torch.full((b,), self.conf))


def test_low_confidence_and_outside_sub_goals_hold_and_are_logged(caplog):
    policy = tiny_gravmad().eval()
    for grounder in (FixedGrounder([0.0, 0.0, 0.85], confidence=0.1), FixedGrounder([0.0, 0.0, 0.3])):
        policy.grounder = grounder
        with caplog.at_level(logging.WARNING, logger="robolearn.policies.gravmad"):
            chunk = policy.predict_action_chunk(toy_obs(1), Goal("lift the purple cube"))
        assert (chunk[..., :6] == 0).all() and (chunk[..., 6] == -1).all()  # hold: no motion, gripper unchanged
    assert "confidence 0.10" in caplog.text and "outside the workspace box" in caplog.text
    assert policy.refusals == 2


def test_the_keypose_head_reaches_a_toy_sub_goal():
    """Trained on 'the next keypose is the GravMap's sub-goal', the head aims at a new sub-goal and its
    chunks, executed by a kinematic arm that tracks `track` of each commanded step, get there."""
    torch.manual_seed(0)
    policy = tiny_gravmad(horizon=16, n_action_steps=8, reach_tol=0.02, grounder_coef=0.0, n_points=16)
    opt = torch.optim.Adam(policy.parameters(), lr=3e-3)
    for step in range(150):
        loss = policy.compute_loss(toy_batch(b=32, seed=step))["keypose_loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
    policy.eval()
    target = [0.05, -0.08, 0.88]
    policy.grounder = FixedGrounder(target)
    eef = torch.tensor([-0.05, 0.05, 0.97])
    for _ in range(6):
        chunk = policy.predict_action_chunk(toy_obs(1, eef=eef), Goal("lift the red cube"), torch.Generator().manual_seed(0))
        for a in chunk[0, :8]:
            eef = eef + policy.config.track * a[:3] * POS_SCALE
    assert float(torch.linalg.norm(eef - torch.tensor(target))) < 0.03
    assert chunk[0, 0, 6] == 1.0  # there: the gripper takes the keypose's openness (closed)


# ------------------------------------------------------------------------------- grounders
def test_oracle_grounder_reads_cube_poses_and_refuses_unnamed_objects():
    assert parse_colors("stack the green cube on the red cube") == ["green", "red"]
    objs = torch.zeros(2, 28)
    for j in range(4):
        objs[:, 7 * j:7 * j + 3] = torch.tensor([0.02 * j, 0.05 * j, 0.83])
    proprio = torch.tensor([[-0.1, 0.0, 1.0, *DOWN, 0.04, -0.04]]).expand(2, 9)
    sg = OracleGrounder().ground({"object": objs, "proprio": proprio}, ["lift the blue cube", "lift the purple cube"])
    assert torch.allclose(sg.pos[0], torch.tensor([0.04, 0.1, 0.83])) and sg.open[0] == 0 and sg.confidence[0] == 1
    assert sg.confidence[1] == 0


@pytest.mark.slow
def test_oracle_sub_goals_lead_to_success_on_multi_cube_seeds():
    """The oracle's sub-goals, executed by the head's keypose-to-actions controller (a perfect keypose
    head: keypose = sub-goal, rotation kept), succeed in the multi_cube scene."""
    from robolearn.sim import make

    policy = tiny_gravmad()
    env = make("multi_cube", cameras=())
    oracle, wins = OracleGrounder(), 0
    for seed in (0, 1, 4, 5):
        obs, _ = env.reset(seed=seed)
        policy.reset()
        policy._grip = -torch.ones(1)
        success, t = False, 0
        while t < env.horizon and not success:
            o = {k: torch.as_tensor(obs[k])[None].float() for k in ("proprio", "object")}
            sg = oracle.ground(o, [env.instruction])
            rot = quat_to_mat(o["proprio"][:, 3:7])
            chunk = policy.keypose_to_actions(o["proprio"][:, :3], rot, sg.pos, rot, sg.open > 0.5, torch.zeros(1, dtype=torch.bool))
            policy._grip = chunk[:, 0, -1].clone()
            for a in chunk[0, :8]:
                obs, _, _, _, info = env.step(a.numpy())
                t += 1
                if info["success"]:
                    success = True
                    break
        wins += success
    env.close()
    assert wins >= 3

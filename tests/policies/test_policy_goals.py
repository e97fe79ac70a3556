"""Goals from the store to the head: the sampler gives each window its episode's goal, every head
conditions on it, a goal-conditioned policy learns to follow it, and a goal the policy was not
trained with is one clear line."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from robolearn.datasets.store import EpisodeStore
from robolearn.errors import UserError
from robolearn.goal import Goal, GoalConfig, check_goal
from robolearn.policies import POLICY_REGISTRY, load_policy
from policy_helpers import ACTION_DIM, IMG, METHODS, STATE_DIM, synthetic_batch, tiny_policy

GOAL_IMAGE = dict(modalities=["image", "state"], image_keys=["cam_image"], state_keys=["state"],
                  image_shapes={"cam_image": [IMG, IMG, 3]}, state_dims={"state": STATE_DIM})


def goal_batch(b: int, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    return {
        "instruction": ["lift the cube", ""] * (b // 2),
        "image": {"cam_image": torch.randint(0, 256, (b, IMG, IMG, 3), generator=g, dtype=torch.uint8)},
        "state": {"state": torch.rand(b, STATE_DIM, generator=g)},
        "present": {"language": torch.tensor([True, False] * (b // 2)), "image": torch.ones(b, dtype=torch.bool),
                    "state": torch.ones(b, dtype=torch.bool)},
    }


HEADS = [(m, {}) for m in METHODS] + [("diffusion", {"denoiser": "transformer"})]


@pytest.mark.parametrize("method,extra", HEADS)
def test_every_head_conditions_on_image_and_state_goals(method, extra, tmp_path):
    """Contract for every library head: one that declares image and state goals conditions on them
    (the goal reaches the loss and the actions, and survives a save/load round trip); one that does
    not refuses to be built with them, in one line."""
    if not {"image", "state"} <= set(POLICY_REGISTRY[method].goal_modalities):
        with pytest.raises(UserError, match=f"'{method}' head takes no"):
            tiny_policy(method, goal=GoalConfig(**GOAL_IMAGE), **extra)
        return
    policy = tiny_policy(method, goal=GoalConfig(**GOAL_IMAGE), **extra)
    batch = {**synthetic_batch(policy), "goal": goal_batch(4)}
    out = policy.compute_loss(batch)
    assert torch.isfinite(out["loss"])
    out["loss"].backward()
    grads = [p.grad for p in policy.goal_encoder.parameters() if p.grad is not None]
    assert grads and any(g.abs().sum() > 0 for g in grads)  # the goal reaches the loss

    policy.eval()
    obs = {"state": torch.zeros(1, policy.config.obs_horizon, STATE_DIM)}
    goal = Goal(images={"cam_image": np.full((IMG, IMG, 3), 200, np.uint8)}, state={"state": np.ones(STATE_DIM, np.float32)})
    torch.manual_seed(0)
    a = policy.predict_action_chunk(obs, goal=goal)
    assert a.shape == (1, policy.config.horizon, ACTION_DIM)
    policy.save(tmp_path / "ckpt")
    again = load_policy(tmp_path / "ckpt")
    assert again.config.goal.modalities == ["image", "state"]
    torch.manual_seed(0)
    assert torch.allclose(again.predict_action_chunk(obs, goal=goal), a)
    torch.manual_seed(0)
    other = Goal(images={"cam_image": np.zeros((IMG, IMG, 3), np.uint8)}, state={"state": -np.ones(STATE_DIM, np.float32)})
    assert not torch.allclose(again.predict_action_chunk(obs, goal=other), a)  # the goal changes the actions


def test_goals_the_policy_was_not_trained_with_are_refused_in_one_line():
    plain = tiny_policy("bc")
    obs = {"state": torch.zeros(1, 2, STATE_DIM)}
    with pytest.raises(UserError, match="instruction was given but this policy was trained without language goals.*no text encoder"):
        plain.predict_action_chunk(obs, goal=Goal(instruction="lift the cube"))
    plain.predict_action_chunk(obs, goal=None)  # no goal is always fine

    policy = tiny_policy("bc", goal=GoalConfig(**GOAL_IMAGE))
    with pytest.raises(UserError, match="goal image 'cam_image' is uint8 \\[12, 12, 3\\].*expects uint8 \\[24, 24, 3\\]"):
        policy.predict_action_chunk(obs, goal=Goal(images={"cam_image": np.zeros((12, 12, 3), np.uint8)}))
    with pytest.raises(UserError, match="goal image.*'wrist_image'"):
        policy.predict_action_chunk(obs, goal=Goal(images={"wrist_image": np.zeros((IMG, IMG, 3), np.uint8)}))
    with pytest.raises(UserError, match="goal state 'state' has 2 values, the policy expects 5"):
        check_goal(Goal(state={"state": np.zeros(2)}), policy.config.goal)
    # no goal at all: every modality flagged absent, still acts
    assert policy.predict_action_chunk(obs).shape == (1, 8, ACTION_DIM)


def test_a_head_refuses_goal_modalities_it_cannot_take():
    cls = POLICY_REGISTRY["bc"]
    saved = cls.goal_modalities
    try:
        cls.goal_modalities = ("state",)
        with pytest.raises(UserError, match="'bc' head takes no image goals"):
            tiny_policy("bc", goal=GoalConfig(**GOAL_IMAGE))
    finally:
        cls.goal_modalities = saved


def _goal_store(path, n_episodes: int = 12, length: int = 10):
    """Each episode's action is constant and points at its goal: the final `target` value. The
    observation alone says nothing about it, so only a policy that sees the goal can act well."""
    rng = np.random.default_rng(0)
    store = EpisodeStore.create(str(path), attrs={"task": "toy"})
    for e in range(n_episodes):
        goal = rng.uniform(-1, 1, size=2).astype(np.float32)
        left = e % 2 == 0
        action = np.repeat((goal if not left else -goal)[None], length, axis=0)
        target = np.repeat(goal[None], length, axis=0)
        store.append_episode(
            {"state": rng.normal(size=(length, 3)).astype(np.float32), "target": target, "action": action},
            meta={"instruction": "go left" if left else "go right"})
    store.compute_stats()
    return path


def _train(run, steps: int = 300):
    from torch.utils.data import DataLoader

    from robolearn.policies import make_policy
    from robolearn.train.data import open_training_data

    torch.manual_seed(0)
    dataset, stats = open_training_data(run)
    policy = make_policy(run.policy, stats)
    opt = torch.optim.Adam(policy.parameters(), lr=3e-3)
    loader = DataLoader(dataset, batch_size=32, shuffle=True)
    step = 0
    while step < steps:
        for batch in loader:
            loss = policy.compute_loss(batch)["loss"]
            opt.zero_grad()
            loss.backward()
            opt.step()
            step += 1
            if step >= steps:
                break
    return policy.eval(), dataset


def test_sampler_gives_each_window_its_episode_goal(tmp_path):
    from robolearn.datasets.sampler import WindowDataset

    path = _goal_store(tmp_path / "goals.zarr", n_episodes=3)
    store = EpisodeStore.open(str(path))
    store_meta = store.meta_column("instruction")
    cfg = GoalConfig(modalities=["language", "state"], state_keys=["target"])
    ds = WindowDataset(store, ["state"], obs_horizon=2, action_horizon=4, goal=cfg)
    for i in (0, 9, 10, 29):
        item = ds[i]
        ep = int(item["episode"])
        final = store.get_episode(ep)["target"][-1]
        assert np.array_equal(item["goal"]["state"]["target"], final)
        assert item["goal"]["instruction"] == store_meta[ep] and bool(item["goal"]["present"]["language"])
    with pytest.raises(UserError, match="no episode meta field 'task_text'"):
        WindowDataset(store, ["state"], goal=GoalConfig(modalities=["language"], instruction_field="task_text"))


def test_bc_follows_a_goal_state_and_an_instruction(tmp_path):
    """Trained on goals, BC acts on them on unseen goal values; the same net without goals cannot."""
    from robolearn.policies.bc import BCConfig
    from robolearn.train.config import RunConfig

    torch.set_num_threads(1)
    path = _goal_store(tmp_path / "goals.zarr")

    def run(goal: GoalConfig) -> RunConfig:
        return RunConfig(dataset=str(path), method="bc", policy=BCConfig(
            obs_keys=["state"], horizon=4, n_action_steps=2, hidden=[64, 64], goal=goal, goal_dim=32))

    with_goal, _ = _train(run(GoalConfig(modalities=["language", "state"], state_keys=["target"])))
    blind, _ = _train(run(GoalConfig()))
    obs = {"state": torch.zeros(1, 2, 3)}
    errs, blind_errs = [], []
    for goal in np.random.default_rng(1).uniform(-0.9, 0.9, size=(6, 2)).astype(np.float32):
        for text, sign in (("go right", 1.0), ("go left", -1.0)):
            want = sign * goal
            got = with_goal.predict_action_chunk(obs, goal=Goal(instruction=text, state={"target": goal}))[0, 0].numpy()
            errs.append(np.abs(got - want).mean())
            blind_errs.append(np.abs(blind.predict_action_chunk(obs)[0, 0].numpy() - want).mean())
    assert np.mean(errs) < 0.15, errs
    assert np.mean(blind_errs) > 3 * np.mean(errs)


def test_acting_encodes_a_goal_once_and_never_serves_a_stale_one():
    """While acting, an unchanged goal (also a fresh but equal object, as the policy server gets per
    request) is encoded once; an in-place change or another goal is encoded again."""
    policy = tiny_policy("bc", goal=GoalConfig(**GOAL_IMAGE)).eval()
    runs = []
    policy.goal_encoder.register_forward_hook(lambda *_: runs.append(1))
    obs = {"state": torch.zeros(1, 2, STATE_DIM)}

    def goal(v: float) -> Goal:
        return Goal(images={"cam_image": np.full((IMG, IMG, 3), 100, np.uint8)}, state={"state": np.full(STATE_DIM, v, np.float32)})

    g = goal(0.5)
    first = policy.predict_action_chunk(obs, goal=g)
    assert torch.equal(policy.predict_action_chunk(obs, goal=g), first)
    assert torch.equal(policy.predict_action_chunk(obs, goal=goal(0.5)), first)
    assert len(runs) == 1
    g.state["state"][:] = -0.5  # changed in place: encoded again, and the actions follow
    changed = policy.predict_action_chunk(obs, goal=g)
    assert len(runs) == 2 and not torch.equal(changed, first)
    assert torch.equal(policy.predict_action_chunk(obs, goal=goal(-0.5)), changed) and len(runs) == 2

"""EIL: action-conditioned TCC embeddings, voting alignment without a reference, `eil_keep` labels,
and imitation on the kept frames through the per-step weights."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from robolearn.datasets.sampler import WindowDataset
from robolearn.datasets.store import EpisodeStore
from robolearn.errors import UserError
from robolearn.nn.normalizer import select_stats
from robolearn.policies import make_policy
from robolearn.policies.bc import BCConfig
from robolearn.pretrain.base import pretrainer_class
from robolearn.pretrain.eil import EIL, EILConfig, detection_scores, random_flags, tcc_loss
from robolearn.train.config import DataConfig, RunConfig
from robolearn.train.data import open_training_data

ROOT = Path(__file__).resolve().parents[2]


def make_detour_store(path, n_episodes: int = 8, seed: int = 0, detour_share: float = 0.75) -> str:
    """Demos along one curve in the plane at different speeds, some with an inserted extraneous segment:
    a detour (out of the plane to a random point and back) or a pause (holding still, fidgeting the wrist action).
    state (3,) = x, y, z; action (4,) = velocity (3,) + wrist; `extraneous` 0/1 per step."""
    rng = np.random.default_rng(seed)
    store = EpisodeStore.create(str(path), attrs={"task": "toy"})
    for e in range(n_episodes):
        n = int(rng.integers(30, 40))
        p = np.linspace(0, 1, n)
        task = np.stack([p, np.sin(np.pi * p), np.zeros(n)], axis=1)
        states, actions, flags = [], [], []
        insert_at = int(rng.integers(8, n - 8)) if rng.random() < detour_share else -1
        kind = "detour" if e % 2 == 0 else "pause"
        for t in range(n):
            if t == insert_at:
                here = task[t]
                if kind == "detour":  # out to a random point 0.3 away and back, like sim/conditions.py's wander
                    d = rng.normal(size=3)
                    d[2] = abs(d[2])
                    d *= 0.3 / np.linalg.norm(d)
                    for s in np.r_[np.linspace(0, 1, 7)[1:], np.linspace(1, 0, 7)[1:-1]]:
                        states.append(here + s * d)
                        actions.append([*(d * (1 if len(flags) - flags.index(1) < 6 else -1)), 0]
                                       if 1 in flags else [*d, 0])
                        flags.append(1)
                else:
                    for _ in range(8):
                        states.append(here.copy())
                        actions.append([0, 0, 0, rng.normal(0, 0.8)])
                        flags.append(1)
            nxt = task[min(t + 1, n - 1)]
            states.append(task[t])
            actions.append([*((nxt - task[t]) * n / 2), 0])
            flags.append(0)
        state = np.asarray(states, np.float32) + rng.normal(0, 0.005, (len(states), 3)).astype(np.float32)
        store.append_episode({"state": state, "action": np.clip(np.asarray(actions, np.float32), -1, 1),
                              "extraneous": np.asarray(flags, np.uint8)})
    return str(path)


def _pretrainer(store: EpisodeStore, **overrides) -> EIL:
    cfg = EILConfig(obs_keys=["state"], max_episode_len=64, n_frames=16, hidden=64, embed_dim=16, **overrides)
    cfg.obs_shapes = {k: [int(s) for s in store.array(k).shape[1:]] for k in ("state", "action")}
    cfg.action_dim = int(store.array("action").shape[1])
    stats = select_stats(store.compute_stats(), {"state": "meanstd", "action": "minmax"})
    return pretrainer_class("eil")(cfg, stats)


def _batches(store: EpisodeStore, model: EIL, batch_size: int = 8, seed: int = 0):
    ds = WindowDataset(store, obs_keys=model.config.obs_keys, action_key="action", obs_horizon=model.window[0],
                       obs_future=model.window[1], action_horizon=model.window[2], in_ram=True)
    loader = torch.utils.data.DataLoader(ds, batch_size=batch_size, shuffle=True, generator=torch.Generator().manual_seed(seed))
    while True:
        yield from loader


def _train(model: EIL, store: EpisodeStore, steps: int) -> None:
    torch.manual_seed(0)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    batches = _batches(store, model)
    model.train()
    for _ in range(steps):
        loss = model.compute_loss(next(batches))["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()


def _evaluate(model: EIL, store: EpisodeStore) -> tuple[float, float]:
    model.eval()
    torch.manual_seed(1)
    batches = _batches(store, model, batch_size=16, seed=1)
    with torch.no_grad():
        outs = [model.compute_loss(next(batches)) for _ in range(4)]
    return float(np.mean([o["loss"] for o in outs])), float(np.mean([o["cycle_acc"] for o in outs]))


def test_tcc_loss_falls_and_cycle_consistency_rises(tmp_path):
    store = EpisodeStore.open(make_detour_store(tmp_path / "toy.zarr", detour_share=0.0))
    model = _pretrainer(store)
    loss0, acc0 = _evaluate(model, store)
    _train(model, store, 150)
    loss1, acc1 = _evaluate(model, store)
    assert loss1 < loss0 - 0.2
    assert acc1 > acc0 + 0.2 and acc1 > 0.5


def test_tcc_loss_of_identical_sequences_is_low_and_pairs_are_masked():
    emb = torch.linspace(0, 3, 10)[:, None].repeat(1, 2)  # well separated frames on a line
    seqs = torch.stack([emb, emb])
    pairs = torch.tensor([[False, True], [True, False]])
    loss, acc = tcc_loss(seqs, pairs, 0.1, 0.001)
    shuffled, acc_shuffled = tcc_loss(torch.stack([emb, emb[torch.randperm(10, generator=torch.Generator().manual_seed(0))]]),
                                      pairs, 0.1, 0.001)
    assert acc == 1.0 and loss < 0.2 < shuffled  # the same progress in both: cycles come back
    assert acc_shuffled == 1.0  # (a permutation cycles back too: the loss, not the accuracy, sees the order)
    loss_none, _ = tcc_loss(seqs, torch.zeros(2, 2, dtype=torch.bool), 0.1, 0.001)
    assert loss_none == 0.0  # no usable pair (e.g. all windows from one demo): nothing to learn from


def test_voting_flags_an_inserted_detour_and_keeps_the_task_frames(tmp_path):
    store = EpisodeStore.open(make_detour_store(tmp_path / "toy.zarr", n_episodes=10))
    model = _pretrainer(store)
    _train(model, store, 300)
    keep, score = model.label_episodes(store)
    true = store.get("extraneous").astype(bool)
    scores = detection_scores(keep == 0, true)
    assert scores["f1"] >= 0.7, scores  # the floor this test states
    assert keep[~true].mean() >= 0.9  # the task frames stay
    assert detection_scores(random_flags(len(true), true.mean()), true)["f1"] < 0.4  # the baseline is far below
    assert score.shape == keep.shape and np.all((score >= 0) & (score <= 1))


def test_finish_writes_labels_atomically_while_a_reader_runs(tmp_path):
    path = make_detour_store(tmp_path / "toy.zarr", n_episodes=6)
    store = EpisodeStore.open(path)
    model = _pretrainer(store)
    n_steps, seen, errors, done = store.n_steps, [], [], threading.Event()

    def reader():
        while not done.is_set():
            try:
                s = EpisodeStore.open(path)
                if "eil_keep" in s.keys:
                    v = s.get("eil_keep")
                    seen.append(len(v) == n_steps and set(np.unique(v)) <= {0, 1})
            except Exception as exc:  # noqa: BLE001 - any failure of a reader is what we check for
                errors.append(repr(exc))

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for _ in range(3):  # a new label, then rewrites of it
            out = model.finish(tmp_path / "run", path)
        for _ in range(1000):  # let the reader see the label at least once
            if seen:
                break
            threading.Event().wait(0.01)
    finally:
        done.set()
        thread.join()
    assert seen and all(seen) and not errors
    store = EpisodeStore.open(path)
    assert store.get("eil_keep").shape == (n_steps,) and store.get("eil_score").dtype == np.float32
    summary = json.loads((tmp_path / "run" / "eil_labels.json").read_text())
    assert out["summary"].endswith("eil_labels.json")
    assert {"precision", "recall", "f1"} <= set(summary["eil"]) and "random_at_true_rate" in summary


def test_bad_input_is_one_line_and_writes_nothing(tmp_path):
    from robolearn.train.pretrain_run import PretrainRunConfig, load_pretrain_recipe, pretrain

    one = make_detour_store(tmp_path / "one.zarr", n_episodes=1)
    run = PretrainRunConfig(dataset=one, method="eil", out=str(tmp_path / "run1"), pretrain=EILConfig())
    with pytest.raises(UserError, match="eil needs at least 2 episodes"):
        pretrain(run)
    assert not (tmp_path / "run1").exists()
    with pytest.raises(UserError, match="eil needs at least 2 episodes"):
        _pretrainer(EpisodeStore.open(one)).finish(tmp_path / "run1", one)
    assert "eil_keep" not in EpisodeStore.open(one).keys and not (tmp_path / "run1").exists()

    no_actions = EpisodeStore.create(str(tmp_path / "noact.zarr"), attrs={"task": "toy"})
    for _ in range(2):
        no_actions.append_episode({"state": np.zeros((5, 3), np.float32)})
    run = load_pretrain_recipe(ROOT / "policies" / "lift_eil_pretrain.toml", [f"dataset={tmp_path / 'noact.zarr'}",
                                                                              f"out={tmp_path / 'run2'}"])
    with pytest.raises(UserError, match="eil needs actions"):
        pretrain(run)
    assert not (tmp_path / "run2").exists()


def test_an_eil_keep_label_of_another_length_is_refused_and_not_written(tmp_path):
    path = make_detour_store(tmp_path / "toy.zarr", n_episodes=2)
    store = EpisodeStore.open(path, mode="a")
    with pytest.raises(UserError, match=f"label 'eil_keep' needs {store.n_steps} rows"):
        store.write_labels({"eil_keep": np.ones(store.n_steps - 3, np.uint8)})  # e.g. labels of another store
    assert "eil_keep" not in EpisodeStore.open(path).keys


# --- imitation on the kept frames ---------------------------------------------------------------
def _labelled_copy(src: str, dst, garbage: float | None) -> str:
    """The toy store with eil_keep = not extraneous; with `garbage`, every flagged step's state and
    action replaced by that value (what a head must never see)."""
    s = EpisodeStore.open(src)
    out = EpisodeStore.create(str(dst), attrs={"task": "toy"})
    for i in range(s.n_episodes):
        ep = s.get_episode(i, ["state", "action", "extraneous"])
        flag = ep["extraneous"].astype(bool)
        if garbage is not None:
            ep["state"][flag], ep["action"][flag] = garbage, garbage
        out.append_episode({**ep, "eil_keep": (~flag).astype(np.uint8)})
    # one normalisation for every copy, so only the flagged steps differ
    out.update_attrs(stats={k: s.compute_stats()[k] for k in ("state", "action")})
    return str(dst)


def _train_bc(path: str, step_weight_key: str, steps: int = 5) -> tuple[dict, list[float]]:
    run = RunConfig(dataset=path, method="bc", policy=BCConfig(obs_keys=["state"], horizon=8, n_action_steps=4, hidden=[32]),
                    data=DataConfig(step_weight_key=step_weight_key))
    dataset, stats = open_training_data(run)
    torch.manual_seed(0)
    policy = make_policy(run.policy, stats)
    opt = torch.optim.SGD(policy.parameters(), lr=0.1)
    batch = torch.utils.data.default_collate([dataset[i] for i in range(len(dataset))])
    losses = []
    for _ in range(steps):
        loss = policy.compute_loss(batch)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    return {k: v.detach().clone() for k, v in policy.state_dict().items()}, losses


def test_a_head_trained_with_eil_keep_ignores_flagged_frames_exactly(tmp_path):
    src = make_detour_store(tmp_path / "toy.zarr", n_episodes=4)
    clean = _labelled_copy(src, tmp_path / "clean.zarr", None)
    noisy = _labelled_copy(src, tmp_path / "noisy.zarr", 7.0)
    (w_clean, l_clean), (w_noisy, l_noisy) = _train_bc(clean, "eil_keep"), _train_bc(noisy, "eil_keep")
    assert l_clean == l_noisy and all(torch.equal(w_clean[k], w_noisy[k]) for k in w_clean)
    _, l_raw = _train_bc(noisy, "")
    assert l_raw != l_noisy  # without the weights the flagged frames do count


def test_windows_never_jump_across_a_dropped_segment(tmp_path):
    path = _labelled_copy(make_detour_store(tmp_path / "toy.zarr", n_episodes=2), tmp_path / "l.zarr", None)
    ds = WindowDataset(path, obs_keys=["state"], obs_horizon=2, action_horizon=8, step_weight_key="eil_keep")
    keep = EpisodeStore.open(path).get("eil_keep")
    ends = EpisodeStore.open(path).episode_ends
    for i in range(len(ds)):
        w, t = ds[i]["step_weight"], i
        start = 0 if t < ends[0] else ends[0]
        end = ends[0] if t < ends[0] else ends[1]
        steps = np.minimum(np.arange(t, t + 8), end - 1)
        history = keep[max(start, t - 1) : t + 1]
        if not history.all():  # a window that observes a dropped step teaches nothing
            assert not w.any()
            continue
        first_drop = np.flatnonzero(keep[steps] == 0)
        cut = first_drop[0] if len(first_drop) else 8
        assert w[:cut].all() and not w[cut:].any()  # kept up to the segment, nothing after it


def test_robolearn_pretrain_labels_a_camera_store(tmp_path, square_store, tiny_recipe, to_toml):
    """The whole `robolearn pretrain` path on camera frames (the shared ResNet encoder per frame)."""
    from robolearn.train.pretrain_run import load_pretrain_recipe, pretrain

    recipe = tiny_recipe(square_store, "eil", tmp_path / "run",
                         pretrain={"max_episode_len": 24, "n_frames": 8, "hidden": 32, "embed_dim": 8},
                         train={"steps": 4, "batch_size": 4})
    (tmp_path / "r.toml").write_text(to_toml(recipe))
    res = pretrain(load_pretrain_recipe(tmp_path / "r.toml"))
    s = EpisodeStore.open(square_store)
    assert res.outputs["labels"] == square_store and s.get("eil_keep").shape == (s.n_steps,)
    summary = json.loads((tmp_path / "run" / "eil_labels.json").read_text())
    assert summary["episodes"] == s.n_episodes and "eil" not in summary  # no true labels in this store

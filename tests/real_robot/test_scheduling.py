"""Chunk scheduling with a fake clock: late actions dropped, committed slots frozen, the three modes."""

import numpy as np
import pytest

from robolearn.policies.scheduling import Chunk, ChunkScheduler, boundary_jumps

DT = 0.1


def chunk(k0, values, seq, prefix_used=0):
    return Chunk(k0, np.asarray(values, dtype=float).reshape(-1, 1), seq, prefix_used=prefix_used)


def test_receding_drops_past_actions_and_replaces_future():
    s = ChunkScheduler("receding", DT)
    s.anchor(0.0)
    assert s.add(chunk(0, range(8), 1), now=0.0) == 0
    assert s.action_at(0.05)[0][0] == 0  # slot 0
    assert s.action_at(0.15)[0][0] == 1  # slot 1 committed
    # a chunk predicted from the observation at slot 0 arrives at t = 0.25: slots 0..2 are due -> dropped
    dropped = s.add(chunk(0, np.arange(8) + 100, 2), now=0.25)
    assert dropped == 3
    assert s.action_at(0.29)[0][0] == 2  # the running slot keeps its action
    assert s.action_at(0.31)[0][0] == 103  # then the new chunk takes over
    assert s.remaining(0.31) == 4


def test_exec_latency_drops_more():
    s = ChunkScheduler("receding", DT, exec_latency=0.1)
    s.anchor(0.0)
    assert s.add(chunk(0, range(8), 1), now=0.0) == 1  # slot 0 starts before now + latency


def test_nothing_scheduled_means_none():
    s = ChunkScheduler("receding", DT)
    assert s.action_at(0.0)[0] is None
    s.anchor(0.0)
    s.add(chunk(0, range(3), 1), now=0.0)
    assert s.action_at(0.25)[0] is not None
    assert s.action_at(0.35)[0] is None  # ran out -> the daemon holds


def test_interpolation_between_slots():
    s = ChunkScheduler("receding", DT)
    s.anchor(0.0)
    s.add(chunk(0, [0.0, 1.0, 2.0], 1), now=0.0)
    a, k = s.action_at(0.05, interpolate=True)
    assert k == 0 and a[0] == pytest.approx(0.5)
    assert s.action_at(0.25, interpolate=True)[0][0] == pytest.approx(2.0)  # constant at the end


def test_ensemble_weights_oldest_most():
    s = ChunkScheduler("ensemble", DT, ensemble_k=1.0)
    s.anchor(0.0)
    s.add(chunk(1, [0.0] * 4, 1), now=0.0)
    s.add(chunk(1, [1.0] * 4, 2), now=0.0)
    a = s.action_at(0.15)[0][0]
    w = np.exp(-np.arange(2))
    assert a == pytest.approx((w[1] * 1.0) / w.sum())


def test_committed_slot_never_changes():
    for mode in ("receding", "ensemble", "rtc"):
        s = ChunkScheduler(mode, DT)
        s.anchor(0.0)
        s.add(chunk(0, [5.0] * 8, 1), now=0.0)
        first = s.action_at(0.12)[0].copy()
        s.add(chunk(0, [9.0] * 8, 2), now=0.13)
        np.testing.assert_array_equal(s.action_at(0.18)[0], first)


def test_rtc_fallback_blends_without_hook_and_trusts_hooked_chunks():
    old = np.zeros(10)
    new = np.ones(10)
    s = ChunkScheduler("rtc", DT, blend_steps=4)
    s.anchor(0.0)
    s.add(chunk(0, old, 1), now=0.0)
    s.action_at(0.01)
    s.add(chunk(0, new, 2, prefix_used=0), now=0.01)  # no hook: blend 0 -> 1 over 4 slots
    vals = [s.action_at(0.01 + k * DT)[0][0] for k in range(1, 7)]
    assert vals[0] == pytest.approx(0.2) and vals[3] == pytest.approx(0.8) and vals[4] == 1.0
    assert np.all(np.diff(vals) >= 0)
    s2 = ChunkScheduler("rtc", DT, blend_steps=4)
    s2.anchor(0.0)
    s2.add(chunk(0, old, 1), now=0.0)
    s2.action_at(0.01)
    s2.add(chunk(0, new, 2, prefix_used=3), now=0.01)  # hooked: used as is
    assert s2.action_at(0.11)[0][0] == 1.0


def test_prefix_returns_committed_then_planned():
    s = ChunkScheduler("rtc", DT)
    s.anchor(0.0)
    s.add(chunk(0, range(10), 1), now=0.0)
    s.action_at(0.15)
    np.testing.assert_array_equal(s.prefix(1, 3)[:, 0], [1, 2, 3])
    assert s.prefix(20, 3) is None


def test_boundary_jump_metric():
    hist = [(0, np.array([0.0]), 1), (1, np.array([0.1]), 1), (2, np.array([1.0]), 2), (3, np.array([1.1]), 2)]
    m = boundary_jumps(hist)
    assert m["boundary_max"] == pytest.approx(0.9) and m["within_max"] == pytest.approx(0.1)
    assert m["n_boundaries"] == 1


# ---- one chunk executor: sim eval steps the daemon's scheduler by the sim clock -------------------
@pytest.mark.parametrize("mode, hook, latency", [("receding", True, 0), ("ensemble", True, 0), ("rtc", True, 0),
                                                 ("rtc", False, 0), ("receding", True, 2), ("ensemble", True, 2),
                                                 ("rtc", True, 2)])
def test_eval_executes_exactly_what_the_daemons_scheduler_yields(kin, mode, hook, latency):
    """Feed the chunks an eval rollout got, at the same slots and sim-clock times (arriving `latency`
    steps after their observation), to the scheduler `Daemon` builds from a robot config: it yields
    the actions the rollout executed, bit for bit."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "eval"))
    from eval_doubles import CountingEnv, ScriptedChunks
    from rr_helpers import fake_daemon

    from robolearn.eval.rollout import ExecutionConfig, run_policy_episode
    from robolearn.real_robot.config import SchedulingConfig

    policy, env = ScriptedChunks(horizon=6, n_action_steps=3, hook=hook), CountingEnv(horizon=20)
    out = run_policy_episode(env, policy, seed=0, execution=ExecutionConfig(mode=mode, latency_steps=latency))
    d, _, _ = fake_daemon(ScriptedChunks(), kin, **{"scheduling.mode": mode, "scheduling.action_dt": 0.05})
    assert type(d.sched) is ChunkScheduler  # robolearn.policies.scheduling.ChunkScheduler, as in eval
    defaults = SchedulingConfig()
    assert (ExecutionConfig().ensemble_k, ExecutionConfig().rtc_prefix_s, ExecutionConfig().rtc_blend_steps) == \
        (defaults.ensemble_k, defaults.rtc_prefix_s, defaults.rtc_blend_steps)  # the daemon's defaults

    steps = [c["step"] for c in policy.calls]  # when eval asked: the daemon's rule
    if latency == 0:
        assert steps == (list(range(20)) if mode == "ensemble" else list(range(0, 20, 3)))
    else:  # one request in flight at a time; the first chunk is there at once (warm-up)
        assert steps[:3] == ([0, 1, 3] if mode == "ensemble" else [0, 3, 6]) and out["held_steps"] == 0
    if mode == "rtc" and hook:  # the committed plan went into the policy: 0.2 s = 4 slots, as far as planned
        assert all(c["prefix_len"] == 3 for c in policy.calls[1:])
    arrivals = {(c["step"] + latency if seq > 1 else 0): (seq, c) for seq, c in enumerate(policy.calls, start=1)}
    replayed = []
    for k in range(20):
        now = k * d.sched.dt
        if k in arrivals:
            seq, c = arrivals[k]
            d.sched.add(Chunk(c["step"], c["chunk"], seq, c["step"] * d.sched.dt, c["prefix_len"]), now)
        a, slot = d.sched.action_at(now, interpolate=d.adapter.interpolate)
        assert slot == k
        replayed.append(a)
    np.testing.assert_array_equal(np.stack(env.actions), np.stack(replayed))
    assert out["chunks"] == len(steps) and out["boundary_jumps"] == boundary_jumps(d.sched.history)
    if mode == "receding" and latency == 0:  # n_action_steps of each chunk execute, as before the scheduler
        np.testing.assert_array_equal(np.stack(env.actions)[:3], policy.base(0)[:3].astype(np.float32))
    if latency and mode != "ensemble":  # a late chunk: the steps in between ran the old plan
        np.testing.assert_array_equal(env.actions[3 + latency], policy.calls[1]["chunk"][latency])
        np.testing.assert_array_equal(env.actions[3 + latency - 1], policy.calls[0]["chunk"][3 + latency - 1])
    if mode == "rtc" and not hook:  # no hook: the new chunk is blended in from the old plan (weight 4/5 first)
        old, new = policy.calls[0]["chunk"][3], policy.calls[1]["chunk"][0]
        np.testing.assert_allclose(env.actions[3], 0.8 * old + 0.2 * new)

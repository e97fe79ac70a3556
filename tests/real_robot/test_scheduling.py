"""Chunk scheduling with a fake clock: late actions dropped, committed slots frozen, the three modes."""

import numpy as np
import pytest

from robolearn.real_robot.scheduling import Chunk, ChunkScheduler, boundary_jumps

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

"""The daemon drives the sim arm through lift from a trained checkpoint (issue 8's "done when").

The chain is the one a user runs: a scripted demonstrator drives the sim arm through the daemon and
`record.EpisodeRecorder` stores what the daemon commanded; `robolearn train` (the lift_bc recipe,
shrunk) fits a BC policy on that store; `load_policy` reads the checkpoint back and the daemon runs
it on the real-time sim arm (its own process, wall-clock loop, asynchronous inference, safety filter
on). The demonstrator is Markov (its action depends on the current observation only), so a
state-based policy can imitate it. Demos are recorded on the stepped sim arm (the same physics and
daemon code, simulated clock) to stay fast; the trained policy is then run in real time.
"""

import numpy as np
import pytest
import torch
from rr_helpers import ROOT, SIM_PANDA

from robolearn.real_robot.config import load_robot_config
from robolearn.real_robot.lift import SUCCESS_Z, record_lift_demos, run_lift_episode, summarize
from doubles import MarkovLiftPolicy

RECIPE = ROOT / "policies" / "lift_bc.toml"


def serve_config():
    """real_robot/sim_panda.toml as `robolearn serve` reads it (100 Hz, real-time chunking), no socket/log."""
    return load_robot_config(SIM_PANDA, {"control_socket": "", "event_log": ""})


def train_bc(store, out, steps: int):
    from robolearn.train.config import load_recipe
    from robolearn.train.run import train

    run = load_recipe(RECIPE, [
        f"dataset={store}", f"out={out}", f"train.steps={steps}", "policy.hidden=[256, 256]", "train.lr=1e-3",
        "train.warmup_steps=100", "train.ema_decay=0.999", "train.batch_size=64", f"train.checkpoint_every={steps}",
        "train.progress=false", "train.tensorboard=false", "train.num_threads=1", "data.in_ram=true"])
    train(run)
    return out / "checkpoints" / "last"


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """(checkpoint dir, demonstrator outcomes): 12 daemon-recorded demos -> 1000 BC steps (~10-20 s on 2 loaded
    cores; the same recipe lifted 30/30 stepped episodes from three different demo seed sets)."""
    torch.set_num_threads(1)
    tmp = tmp_path_factory.mktemp("trained_lift")
    cfg = serve_config()
    demos = record_lift_demos(cfg, MarkovLiftPolicy(), tmp / "demos.zarr", seeds=range(12), realtime=False)
    return train_bc(tmp / "demos.zarr", tmp / "run", steps=1000), demos


def test_daemon_lifts_the_cube_with_a_policy_trained_on_daemon_demos(trained):
    from robolearn.datasets.store import EpisodeStore
    from robolearn.policies import load_policy

    ckpt, demos = trained
    assert sum(o.success for o in demos) >= 11  # the demonstrator itself lifts reliably through the daemon
    store = EpisodeStore.open(ckpt.parents[2] / "demos.zarr")
    assert store.n_episodes >= 11 and store.attrs["env"]["source"] == "robolearn serve"

    policy = load_policy(ckpt).eval()
    assert policy.config.method == "bc" and policy.config.obs_keys == ["state"]
    cfg = serve_config()
    for seed in (1000, 1001):  # cube placements never seen in training
        o = run_lift_episode(cfg, policy, seed, realtime=True, time_limit=10.0)
        assert o.success, f"seed {seed}: cube rose only {o.rise:.3f} m (needs its centre above {SUCCESS_Z:.3f} m)"
        assert o.violations == 0 and o.stops == 0 and o.policy_errors == 0
        assert o.commands > 50  # it moved under the daemon's control, one command per tick


@pytest.mark.slow
def test_trained_policy_succeeds_as_often_in_real_time_as_stepped(trained):
    """20 stepped (simulated-clock) vs 10 real-time episodes of the same checkpoint on the same seeds."""
    from robolearn.policies import load_policy

    ckpt, _ = trained
    policy = load_policy(ckpt).eval()
    cfg = serve_config()
    stepped = summarize([run_lift_episode(cfg, policy, s, realtime=False) for s in range(2000, 2020)])
    real = summarize([run_lift_episode(cfg, policy, s, realtime=True) for s in range(2000, 2010)])
    assert stepped["success_rate"] >= 0.8 and real["success_rate"] >= 0.8, (stepped, real)
    assert real["violations"] == 0 and np.isfinite(real["t_success_s_mean"])

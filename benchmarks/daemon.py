"""Benchmark the control daemon on the sim arm: loop timing, inference, latency, chunk-boundary jumps, lift success.

For each scheduling mode (receding, ensemble, rtc) the daemon runs `--cycles` control ticks at
`--hz` with the MuJoCo sim arm in its own process and a diffusion policy (`--checkpoint`, or a
default-size untrained UNet diffusion head on the state observation when none is given: same
compute, meaningless actions; `--size small` on a CPU, `default` = Diffusion Policy's UNet). Baseline in the same run: a synchronous loop that calls the policy
inline whenever its action queue runs dry (what a naive loop or a sim eval does), timed the same
way. A second pass with the toy reach policy (smooth plan + per-chunk sample noise, with the
real-time-chunking hook) measures boundary jumps where the actions mean something.

JSON on stdout (and `--out`):
  per mode: period p50/p99/max (ms), |period - nominal| p50/p99/max (jitter), deadline misses,
  inference latency p50/p99 (ms), observation->command latency p50/p99 (ms), boundary jumps,
  sim real-time factor; plus the synchronous baseline.

Lift success (`--part lift`, `lift_success` below; JSON to `--lift-out`): one state-BC recipe trained on
daemon-recorded demos and on robosuite demos; each checkpoint run through `robolearn eval` (robosuite
OSC), through the real-time daemon on the sim arm, and through the same daemon on a simulated clock.

  python benchmarks/daemon.py --cycles 10000            # lift success, then ~100 s per mode at 100 Hz
  python benchmarks/daemon.py --part lift               # lift success only (~6 min on 2 loaded CPU cores)
  python benchmarks/daemon.py --cycles 1000 --device cuda --checkpoint DIR
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from robolearn.real_robot.config import load_robot_config  # noqa: E402
from robolearn.real_robot.daemon import Daemon  # noqa: E402
from robolearn.real_robot.drivers.sim import SimDriver  # noqa: E402
from robolearn.policies.scheduling import boundary_jumps  # noqa: E402
from tests.real_robot.doubles import ToyReachPolicy  # noqa: E402  (test doubles live with the tests)

MODES = ("receding", "ensemble", "rtc")


def pct(x, q) -> float:
    return float(np.percentile(np.asarray(x), q)) if len(x) else float("nan")


def ms(x) -> dict:
    x = np.asarray(x) * 1e3
    return {"p50": round(pct(x, 50), 3), "p99": round(pct(x, 99), 3), "max": round(float(x.max()), 3) if len(x) else None}


SIZES = {"small": [64, 128, 256], "default": [256, 512, 1024]}  # UNet down_dims (default = Diffusion Policy's)


def diffusion_checkpoint(checkpoint: str | None, size: str, tmp: Path) -> str:
    """A checkpoint dir: the given one, or an untrained state-obs diffusion head of the given size."""
    if checkpoint:
        return checkpoint
    import torch

    from robolearn.policies import POLICY_REGISTRY, make_policy

    cfg = POLICY_REGISTRY["diffusion"].config_class(horizon=16, n_action_steps=8, num_inference_steps=10,
                                                    down_dims=SIZES[size])
    cfg.obs_keys, cfg.image_keys, cfg.obs_shapes, cfg.action_dim = ["state"], [], {"state": [19]}, 7
    stats = {"state": {"min": [-2.0] * 19, "max": [2.0] * 19, "mean": [0.0] * 19, "std": [1.0] * 19},
             "action": {"min": [-0.2] * 7, "max": [0.2] * 7, "mean": [0.0] * 7, "std": [0.1] * 7}}
    torch.manual_seed(0)
    path = tmp / f"diffusion_{size}"
    if not path.exists():
        make_policy(cfg, stats).save(path)
    return str(path)


def load(checkpoint: str, inference: str, device: str, threads: int, timeout_s: float):
    """(policy, process or None): in this process (worker thread) or behind a loopback server process."""
    if inference == "process":
        from robolearn.real_robot.remote import spawn_local_server

        proc, policy = spawn_local_server(checkpoint, device, threads, timeout_s=timeout_s)
        return policy, proc
    from robolearn.policies import load_policy

    return load_policy(checkpoint, device=device), None


def timing(stats, period: float, t_end: float | None = None) -> dict:
    periods = np.diff(stats.tick_start)
    return {
        "ticks": len(stats.tick_start),
        "period_ms": ms(periods),
        "jitter_ms": ms(np.abs(periods - period)),
        "lateness_ms": ms(np.maximum(stats.lateness, 0)),
        "deadline_misses": stats.deadline_misses,
        "skipped_periods": stats.skipped,
        "tick_busy_ms": ms(stats.busy),
    }


def run_daemon(cfg, policy, cycles: int, device: str) -> dict:
    drv = SimDriver(cfg)
    d = Daemon(cfg, drv, policy, device=device)
    rtf = {}
    stop = drv.stop

    def stop_and_measure():
        rtf.update(drv.realtime_factor())
        stop()

    drv.stop = stop_and_measure
    st = d.run(max_ticks=cycles)
    out = timing(st, cfg.period)
    out.update({
        "inference_ms": ms(st.inference_latency),
        "obs_to_command_ms": ms(st.obs_to_command),
        "chunks": d.sched.n_chunks,
        "late_actions_dropped": d.sched.n_dropped,
        "boundary_jumps": {k: round(v, 4) if isinstance(v, float) else v for k, v in boundary_jumps(d.sched.history).items()},
        "holds": sum(1 for k in d.events.kinds() if k == "hold"),
        "hold_reasons": dict(collections.Counter(
            r.split(":")[0] for e in d.events.events if e["kind"] in ("hold", "hold_reason") for r in e["why"])),
        "policy_errors": sum(1 for k in d.events.kinds() if k == "policy_error"),
        "sim_realtime_factor": {k: round(v, 4) for k, v in rtf.items()},
        "rtc_hook": d.worker.has_prefix_hook,
    })
    return out


def run_sync_baseline(cfg, policy, cycles: int, device: str) -> dict:
    """Inference inline in the loop: when the action queue is empty the tick waits for the policy."""
    import torch

    from robolearn.real_robot.adapter import ActionAdapter
    from robolearn.real_robot.daemon import LoopStats
    from robolearn.real_robot.driver import JointCommand
    from robolearn.real_robot.model import Kinematics
    from robolearn.real_robot.safety import SafetyFilter
    from robolearn.real_robot.worker import ObsHistory

    kin = Kinematics(cfg.model, cfg.joints.names, base_pos=cfg.base_pos)
    drv = SimDriver(cfg)
    drv.connect()
    c = policy.config
    ad = ActionAdapter(cfg.action, cfg.joints.dof, kin)
    sf = SafetyFilter(cfg.joints, cfg.workspace, cfg.period, fk=kin.fk)
    st0 = drv.read_state()
    sf.reset(st0.q, 0.0)
    hist = ObsHistory()
    stats = LoopStats()
    queue: list[np.ndarray] = []
    per_slot = max(1, round(cfg.scheduling.action_dt / cfg.period))
    period, t0, k, slot = cfg.period, time.monotonic(), 0, 0
    try:
        for tick in range(cycles):
            deadline = t0 + k * period
            now = time.monotonic()
            if now < deadline:
                time.sleep(deadline - now)
                now = time.monotonic()
            stats.tick_start.append(now)
            stats.lateness.append(now - deadline)
            s = drv.read_state()
            hist.add(s)
            if tick % per_slot == 0:
                if not queue:
                    obs = hist.window(s.t, c.obs_horizon, cfg.scheduling.action_dt, list(c.obs_keys))
                    t_inf = time.monotonic()
                    with torch.inference_mode():
                        out = policy.predict_action_chunk({k_: torch.from_numpy(v)[None].to(device) for k_, v in obs.items()})
                    stats.inference_latency.append(time.monotonic() - t_inf)
                    queue = list(out[0, : c.n_action_steps].float().cpu().numpy())
                a = queue.pop(0)
                slot += 1
            q, g = ad.target(a, slot, sf.q_prev)
            r = sf.filter(q, g)
            drv.send(JointCommand(now, r.q, r.gripper))
            end = time.monotonic()
            stats.busy.append(end - now)
            k += 1
            if end > t0 + k * period:
                stats.deadline_misses += 1
                behind = int((end - t0) / period) - k
                if behind > 0:
                    stats.skipped += behind
                    k += behind
    finally:
        drv.stop()
        drv.close()
    out = timing(stats, period)
    out["inference_ms"] = ms(stats.inference_latency)
    return out


# ---- lift success: the same checkpoints through the daemon and through `robolearn eval` --------------------

LIFT_RECIPE = ROOT / "policies" / "lift_bc.toml"  # shrunk (below): a small state BC trains in about a minute on CPU
LIFT_OVERRIDES = ["policy.hidden=[256, 256]", "train.lr=1e-3", "train.warmup_steps=100", "train.ema_decay=0.999",
                  "train.batch_size=64", "train.progress=false", "train.tensorboard=false", "data.in_ram=true"]


def load_avg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def train_bc(store: Path, out: Path, steps: int, threads: int) -> Path:
    from robolearn.train.config import load_recipe
    from robolearn.train.run import train

    run = load_recipe(LIFT_RECIPE, [f"dataset={store}", f"out={out}", f"train.steps={steps}", f"train.checkpoint_every={steps}",
                                    f"train.num_threads={threads}", *LIFT_OVERRIDES])
    train(run)
    return out / "checkpoints" / "last"


def daemon_lift(cfg, policy, seeds, realtime: bool) -> dict:
    from robolearn.real_robot.lift import run_lift_episode, summarize

    t0, load0 = time.perf_counter(), load_avg()
    out = summarize([run_lift_episode(cfg, policy, s, realtime=realtime) for s in seeds])
    return {**out, "wall_s": round(time.perf_counter() - t0, 1), "loadavg_before": load0, "loadavg_after": load_avg()}


def robolearn_eval(checkpoint: Path, episodes: int, out: Path) -> dict:
    from robolearn.eval.runner import EvalConfig, evaluate

    t0, load0 = time.perf_counter(), load_avg()
    r = evaluate(EvalConfig(checkpoint=str(checkpoint), episodes=episodes, workers=2, out=str(out)), progress=False)
    keep = ("episodes", "successes", "errors", "success_rate", "wilson95", "mean_length", "seed_start")
    return {**{k: r[k] for k in keep}, "wall_s": round(time.perf_counter() - t0, 1), "loadavg_before": load0,
            "loadavg_after": load_avg()}


def lift_success(args, tmp: Path) -> dict:
    """Train the same state BC recipe on two demo sources and run each checkpoint three ways:

    - `robolearn_eval`: robosuite Lift (OSC_POSE controller), the sim eval (`robolearn eval`);
    - `daemon_realtime`: the daemon on the real-time sim arm (SimDriver process, wall-clock loop,
      asynchronous inference, differential IK + joint impedance, safety filter), as `robolearn serve`;
    - `daemon_stepped`: the same daemon code and sim arm on a simulated clock (inference takes no time):
      what the policy does on this arm without real-time effects.

    Demo sources: `daemon` = the Markov scripted controller recorded through the daemon (stepped) with
    `EpisodeRecorder`; `robosuite` = `robolearn collect` (robosuite's scripted expert through OSC).
    Success is robosuite's rule everywhere (cube centre > table + 4 cm within 10 s = 200 steps at 20 Hz).
    """
    import torch

    from robolearn.policies import load_policy
    from robolearn.real_robot.lift import SCENE, record_lift_demos, summarize
    from tests.real_robot.doubles import MarkovLiftPolicy
    from robolearn.sim.collect import CollectConfig, collect

    cfg = load_robot_config(args.robot, {"control_socket": "", "event_log": "", "control_hz": args.hz})
    n_eval, n_rt = args.lift_episodes, args.lift_realtime_episodes
    seeds = range(100_000, 100_000 + max(n_eval, n_rt))
    res = {"robot": cfg.name, "control_hz": cfg.control_hz, "scheduling": cfg.scheduling.mode, "scene": SCENE,
           "success_rule": "cube centre > table top + 0.04 m (robosuite Lift) within 10 s", "cpu_count": os.cpu_count(),
           "torch_threads": args.threads, "demos": args.lift_demos, "train_steps": args.lift_steps,
           "recipe": f"{LIFT_RECIPE.relative_to(ROOT)} + {LIFT_OVERRIDES}", "timings_s": {}}

    def timed(name, fn, *a, **kw):
        t0 = time.perf_counter()
        out = fn(*a, **kw)
        res["timings_s"][name] = round(time.perf_counter() - t0, 1)
        print(f"[daemon lift] {name}: {res['timings_s'][name]} s, load {load_avg()}", file=sys.stderr)
        return out

    demo = timed("record_daemon_demos", record_lift_demos, cfg, MarkovLiftPolicy(), tmp / "daemon_demos.zarr",
                 seeds=range(args.lift_demos), realtime=False)
    res["demonstrator"] = {"policy": "tests.real_robot.doubles.MarkovLiftPolicy (privileged, Markov)",
                           "daemon_stepped": summarize(demo),
                           "daemon_realtime": timed("demonstrator_realtime", daemon_lift, cfg, MarkovLiftPolicy(),
                                                    seeds[:n_rt], True)}
    timed("collect_robosuite_demos", collect, CollectConfig(task="lift", episodes=args.lift_demos, workers=2,
                                                             out=str(tmp / "robosuite_demos.zarr"), cameras=[], progress=False))
    checkpoints = {"daemon_demos": timed("train_daemon_bc", train_bc, tmp / "daemon_demos.zarr", tmp / "bc_daemon",
                                         args.lift_steps, args.threads)}
    if args.robosuite_checkpoint:
        checkpoints["robosuite_demos"] = Path(args.robosuite_checkpoint)
    else:
        checkpoints["robosuite_demos"] = timed("train_robosuite_bc", train_bc, tmp / "robosuite_demos.zarr",
                                               tmp / "bc_robosuite", args.lift_steps, args.threads)
    torch.set_num_threads(args.threads)
    for name, ck in checkpoints.items():
        policy = load_policy(ck).eval()
        res[f"trained_on_{name}"] = {
            "checkpoint": str(ck), "method": policy.config.method,
            "robolearn_eval": timed(f"{name}:robolearn_eval", robolearn_eval, ck, n_eval, tmp / f"eval_{name}"),
            "daemon_realtime": timed(f"{name}:daemon_realtime", daemon_lift, cfg, policy, seeds[:n_rt], True),
            "daemon_stepped": timed(f"{name}:daemon_stepped", daemon_lift, cfg, policy, seeds[:n_eval], False),
        }
    return res


def write_json(result: dict, path: str) -> None:
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(result, indent=2))
    os.replace(tmp, out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--robot", default=str(ROOT / "real_robot" / "sim_panda.toml"))
    ap.add_argument("--checkpoint", help="diffusion checkpoint (state obs, eef_delta actions); default: untrained")
    ap.add_argument("--cycles", type=int, default=10_000)
    ap.add_argument("--baseline-cycles", type=int, default=2_000)
    ap.add_argument("--hz", type=float, default=100.0)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--modes", default=",".join(MODES))
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--size", choices=sorted(SIZES), default="small", help="untrained diffusion head size (no --checkpoint)")
    ap.add_argument("--inference", choices=["thread", "process"], default="process")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "daemon.json"))
    ap.add_argument("--part", choices=["all", "timing", "lift"], default="all",
                    help="timing: loop/latency/boundary figures; lift: success through the daemon vs robolearn eval")
    ap.add_argument("--lift-demos", type=int, default=50, help="demos per source (daemon-recorded, robosuite)")
    ap.add_argument("--lift-steps", type=int, default=5000, help="BC training steps per checkpoint")
    ap.add_argument("--lift-episodes", type=int, default=20, help="robolearn eval / stepped daemon episodes per checkpoint")
    ap.add_argument("--lift-realtime-episodes", type=int, default=10, help="real-time daemon episodes per policy")
    ap.add_argument("--robosuite-checkpoint", help="a robosuite-trained lift checkpoint (state obs) instead of training a BC")
    ap.add_argument("--lift-out", default=str(ROOT / "benchmarks" / "results" / "daemon_lift_success.json"))
    args = ap.parse_args()

    import tempfile

    import torch

    torch.set_num_threads(args.threads)
    if args.part in ("all", "lift"):
        lift = lift_success(args, Path(tempfile.mkdtemp(prefix="robolearn_lift_")))
        print(json.dumps(lift, indent=2))
        if args.lift_out:
            write_json(lift, args.lift_out)
        if args.part == "lift":
            return
    base = {"control_hz": args.hz, "control_socket": "", "event_log": "", "driver_options.obs_latency_s": 0.01,
            "driver_options.act_latency_s": 0.005}
    result = {"hz": args.hz, "cycles": args.cycles, "device": args.device, "cpu_count": os.cpu_count(),
              "torch_threads": args.threads, "inference": args.inference,
              "policy": args.checkpoint or f"untrained {args.size} diffusion UNet {SIZES[args.size]}, 10 DDIM steps",
              "modes": {}, "toy_policy_boundary_jumps": {}}
    if args.device.startswith("cuda"):
        result["gpu"] = torch.cuda.get_device_name(0)
    tmp = Path(tempfile.mkdtemp(prefix="robolearn_bench_"))
    ck = diffusion_checkpoint(args.checkpoint, args.size, tmp)
    for mode in args.modes.split(","):
        cfg = load_robot_config(args.robot, {**base, "scheduling.mode": mode})
        print(f"[daemon] {mode}: {args.cycles} cycles with the diffusion policy ...", file=sys.stderr)
        policy, proc = load(ck, args.inference, args.device, args.threads, 2 * cfg.safety.inference_deadline_s)
        result["modes"][mode] = run_daemon(cfg, policy, args.cycles, args.device)
        if proc is not None:
            proc.kill()
        toy_cycles = min(args.cycles, 3000)
        print(f"[daemon] {mode}: {toy_cycles} cycles with the toy reach policy ...", file=sys.stderr)
        toy = run_daemon(cfg, ToyReachPolicy(seed=0), toy_cycles, "cpu")
        result["toy_policy_boundary_jumps"][mode] = toy["boundary_jumps"]
        if mode == "rtc":
            toy_nohook = run_daemon(cfg, ToyReachPolicy(seed=0, rtc_hook=False), toy_cycles, "cpu")
            result["toy_policy_boundary_jumps"]["rtc_without_hook_blend"] = toy_nohook["boundary_jumps"]
    if args.baseline_cycles:
        cfg = load_robot_config(args.robot, {**base, "scheduling.mode": "receding"})
        print(f"[daemon] synchronous baseline: {args.baseline_cycles} cycles ...", file=sys.stderr)
        policy, _ = load(ck, "thread", args.device, args.threads, 1.0)
        result["baseline_synchronous_inference"] = run_sync_baseline(cfg, policy, args.baseline_cycles, args.device)
    print(json.dumps(result, indent=2))
    if args.out:
        write_json(result, args.out)


if __name__ == "__main__":
    main()

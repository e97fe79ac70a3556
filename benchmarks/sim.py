"""Sim benchmarks: expert success rates, env step/render speed vs raw robosuite, collect throughput.

    python benchmarks/sim.py experts --seeds 100 --out benchmarks/results/experts.json
    python benchmarks/sim.py speed --out benchmarks/results/sim.json
    python benchmarks/sim.py demonstrators --seeds 20 --tasks lift stack --out benchmarks/results/demonstrators.json

`experts`: each task's scripted expert over seeds 0..N-1 (state-only env), success rate,
mean episode length, seconds per episode. `speed`: in one run, raw robosuite Lift stepping
(state only) vs our env (state only, and two 84x84 cameras); render ms/frame for our fast
mode vs robosuite's default offscreen camera path (each in its own process: one GL context
per process); reset time; `robolearn collect` episodes/min with 1 and 2 workers.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

TASKS = ["lift", "stack", "pick_place_can", "nut_assembly_square", "door", "multi_cube"]


def bench_experts(seeds: int, tasks: list[str]) -> dict:
    from robolearn.sim import make
    from robolearn.sim.rollout import run_expert

    out = {}
    for task in tasks:
        env = make(task, cameras=())
        ok, lengths, t0 = [], [], time.perf_counter()
        for s in range(seeds):
            ep = run_expert(env, s, record=False)
            ok.append(ep.success)
            lengths.append(ep.meta["length"])
        out[task] = {
            "success_rate": float(np.mean(ok)),
            "n_seeds": seeds,
            "failed_seeds": [s for s, o in enumerate(ok) if not o],
            "mean_length": float(np.mean(lengths)),
            "sec_per_episode": (time.perf_counter() - t0) / seeds,
        }
        env.close()
        print(task, out[task], flush=True)
    return out


def bench_demonstrators(seeds: int, tasks: list[str]) -> dict:
    """Per other-dynamics demonstrator: its own expert success, and the success of replaying its
    recorded actions open-loop on the default robot (same seed): < 1 means infeasible for it."""
    from robolearn.sim import make
    from robolearn.sim.conditions import DEMONSTRATORS
    from robolearn.sim.rollout import run_expert

    out = {}
    for task in tasks:
        default = make(task, cameras=())
        for name, dyn in DEMONSTRATORS.items():
            env = make(task, cameras=(), dynamics=dyn)
            own, replay = [], []
            for s in range(seeds):
                ep = run_expert(env, s)
                own.append(ep.success)
                default.reset(seed=s)
                ok = False
                for a in ep.data["action"]:
                    ok = default.step(a)[4]["success"] or ok
                replay.append(ok)
            env.close()
            out[f"{task}/{name}"] = {"dynamics": dyn, "expert_success": float(np.mean(own)),
                                     "replay_on_default_success": float(np.mean(replay)), "n_seeds": seeds}  # fmt: skip
            print(task, name, out[f"{task}/{name}"], flush=True)
        default.close()
    return out


def _time(fn, n: int, repeats: int = 5) -> float:
    """Seconds per call: the best of `repeats` blocks of n/repeats calls (the machine is shared)."""
    fn()
    block = max(1, n // repeats)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(block):
            fn()
        best = min(best, (time.perf_counter() - t0) / block)
    return best


def _raw_robosuite(n: int, cameras: bool) -> dict:
    """Raw robosuite Lift at defaults (OSC_POSE); with cameras: robosuite's own offscreen path."""
    import robolearn.sim  # noqa: F401  (GL backend)
    import robosuite
    from robosuite.controllers import load_composite_controller_config

    cfg = load_composite_controller_config(controller="BASIC", robot="Panda")
    kw = dict(robots="Panda", controller_configs=cfg, has_renderer=False, ignore_done=True, hard_reset=False)
    if cameras:
        kw.update(has_offscreen_renderer=True, use_camera_obs=True, camera_names=["agentview", "robot0_eye_in_hand"],
                  camera_heights=84, camera_widths=84)
    else:
        kw.update(has_offscreen_renderer=False, use_camera_obs=False)
    env = robosuite.make("Lift", **kw)
    env.reset()
    rng = np.random.default_rng(0)
    step = _time(lambda: env.step(rng.uniform(-1, 1, 7)), n)
    res = {"step_ms": step * 1e3, "steps_per_s": 1 / step}
    if cameras:
        sim = env.sim
        cam = sim.model.camera_name2id("agentview")
        res["render_ms_per_frame"] = 1e3 * _time(lambda: sim.render(84, 84, camera_name="agentview"), n)
    res["reset_ms"] = 1e3 * _time(env.reset, 5)
    if not cameras:  # robosuite's default reset re-loads the XML model (hard_reset=True)
        env.close()
        env = robosuite.make("Lift", **{**kw, "hard_reset": True})
        env.reset()
        res["reset_ms_hard_reset_default"] = 1e3 * _time(env.reset, 3, repeats=3)
    return res


def _ours(n: int, cameras: bool) -> dict:
    from robolearn.sim import make

    env = make("lift", cameras=("agentview", "robot0_eye_in_hand") if cameras else (), image_size=84)
    env.reset(seed=0)
    rng = np.random.default_rng(0)
    step = _time(lambda: env.step(rng.uniform(-1, 1, 7)), n)
    res = {"step_ms": step * 1e3, "steps_per_s": 1 / step}
    if cameras:
        res["render_ms_per_frame"] = 1e3 * _time(lambda: env.renderer.render(env._cam_ids["agentview"]), n)
    res["reset_ms"] = 1e3 * _time(lambda: env.reset(seed=1), 5)
    return res


def _in_subprocess(name: str, n: int, cameras: bool) -> dict:
    code = f"import json,sys; sys.path.insert(0,{str(Path(__file__).parent)!r}); import sim; print('RESULT'+json.dumps(sim.{name}({n},{cameras})))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return json.loads(out.split("RESULT")[-1])


def _collect_rate(workers: int, episodes: int) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "robolearn.cli", "collect", "lift", "--episodes", str(episodes),
                        "--out", f"{tmp}/s.zarr", "--workers", str(workers), "--image-size", "84", "--no-progress"],
                       check=True, capture_output=True)
        return episodes / ((time.perf_counter() - t0) / 60)


def bench_speed(n: int, collect_episodes: int) -> dict:
    res = {
        "robosuite_state": _in_subprocess("_raw_robosuite", n, False),
        "ours_state": _in_subprocess("_ours", n, False),
        "robosuite_2cams_84": _in_subprocess("_raw_robosuite", n, True),
        "ours_2cams_84": _in_subprocess("_ours", n, True),
    }
    res["wrapper_overhead_state"] = res["ours_state"]["step_ms"] / res["robosuite_state"]["step_ms"] - 1
    res["render_speedup"] = res["robosuite_2cams_84"]["render_ms_per_frame"] / res["ours_2cams_84"]["render_ms_per_frame"]
    if collect_episodes:
        res["collect_episodes_per_min"] = {w: _collect_rate(w, collect_episodes) for w in (1, 2)}
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=["experts", "speed", "demonstrators"])
    ap.add_argument("--seeds", type=int, default=100)
    ap.add_argument("--tasks", nargs="*", default=TASKS)
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--collect-episodes", type=int, default=6)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    if args.what == "experts":
        res = bench_experts(args.seeds, args.tasks)
    elif args.what == "demonstrators":
        res = bench_demonstrators(args.seeds, args.tasks)
    else:
        res = bench_speed(args.steps, args.collect_episodes)
    if args.out and args.what == "experts" and Path(args.out).exists():  # runs over task subsets merge
        res = {**json.loads(Path(args.out).read_text()), **res}
    text = json.dumps(res, indent=2)
    print(text)
    if args.out:
        tmp = Path(args.out).with_suffix(".tmp")
        tmp.write_text(text)
        os.replace(tmp, args.out)


if __name__ == "__main__":
    main()

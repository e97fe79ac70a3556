"""GravMAD on multi_cube: keypose discovery, grounding error, and success on seen and novel goals.

    flock /tmp/robolearn-bench.lock python benchmarks/gravmad.py --store STORE [--steps 1500]
          [--episodes 50] [--workers 2] [--scratch /tmp/gravmad] [--cells gravmad,oracle,no_gravmap,diffusion]

STORE: a multi_cube store with point clouds (datasets/multi_cube_pointcloud.toml; collected if
missing). Steps:

1. keypose discovery (robolearn/policies/gravmap.py) on every demo, written as store labels, and
   measured against the scripted expert's phase ends: |timing error| of matched pairs, phase ends
   with no keypose within 5 steps (missed), keyposes with no phase end (extra), per phase.
2. the task split: seen = lift any colour + stack the pairs in SEEN_STACKS; novel = the other six
   ordered stack pairs (their reverses). Training uses the seen demos only, minus 10% held out.
3. train GravMAD (learned grounder + GravMap token), the same head without the GravMap
   (3D Diffuser Actor-style ablation) and the dense language-conditioned diffusion head (state obs).
4. grounding error of the learned grounder (cm, against the discovered next keypose) on held-out seen
   demos and on novel demos; its confidence on seen, novel and no-object instructions.
5. success, `--episodes` per cell at fixed seeds (from 100000, the first seeds whose goal is seen /
   novel), Wilson 95% intervals: GravMAD (learned), GravMAD (oracle grounder, an upper bound that
   reads the cube poses), no GravMap, dense diffusion.

Writes benchmarks/results/gravmad.json + gravmad.md and the GravMap picture gravmap.png.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import shlex
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
SEEN_STACKS = [("red", "green"), ("green", "blue"), ("blue", "yellow"), ("yellow", "red"), ("red", "blue"), ("green", "yellow")]
EVAL_SEED0 = 100_000
MAX_STEPS = 200  # per evaluation episode (the experts need 50-110 steps)


def goal_of(instruction: str) -> tuple[str, ...]:
    from robolearn.policies.gravmap import parse_colors

    colors = parse_colors(instruction)
    return ("lift", colors[0]) if len(colors) == 1 else ("stack", colors[0], colors[1])


def split_of(instruction: str) -> str:
    g = goal_of(instruction)
    return "seen" if g[0] == "lift" or (g[1], g[2]) in SEEN_STACKS else "novel"


# ------------------------------------------------------------------------ 1. keyposes
def keypose_report(store_path: str) -> dict:
    from robolearn.datasets.store import EpisodeStore
    from robolearn.policies.gravmap import discover_keyposes, label_store, phase_ends, phase_match
    from robolearn.sim.experts import PHASES

    label_store(store_path)
    s = EpisodeStore.open(store_path)
    proprio, action, phase = s.get("proprio"), s.get("action"), s.get("phase")
    errors, missed, extra, n_ends, n_keys = [], 0, 0, 0, 0
    per_phase: dict[str, list[int]] = {}
    for i in range(s.n_episodes):
        sl = s.episode_slice(i)
        keys = discover_keyposes(proprio[sl, :3], action[sl, -1] > 0)
        ends = phase_ends(phase[sl])
        m = phase_match(keys, ends)
        errors += m["errors"]
        missed, extra, n_ends, n_keys = missed + m["missed"], extra + m["extra"], n_ends + m["n_ends"], n_keys + m["n_keys"]
        for e in ends:  # which phase ends are found (a keypose within 5 steps)
            name = "end" if e == len(phase[sl]) - 1 else PHASES[int(phase[sl][e])]
            per_phase.setdefault(name, []).append(int(any(abs(k - e) <= 5 for k in keys)))
    return {"episodes": s.n_episodes, "phase_ends": n_ends, "keyposes": n_keys,
            "mean_abs_timing_error_steps": round(float(np.mean(errors)), 2) if errors else None,
            "missed_fraction": round(missed / max(n_ends, 1), 3), "extra_fraction": round(extra / max(n_keys, 1), 3),
            "found_by_phase_start": {k: round(float(np.mean(v)), 3) for k, v in sorted(per_phase.items())},
            "rule": "gripper command change | end of a rest (speed < 4 mm/step for >= 4 steps) | episode end; tolerance 5 steps"}


# ------------------------------------------------------------------------ 3. training
def train_policy(store_path: str, episodes: list[int], method: str, steps: int, out: Path, seed: int = 0, batch: int = 32,
                 **policy_kw):
    import torch
    from torch.utils.data import DataLoader

    from robolearn.datasets.sampler import WindowDataset
    from robolearn.datasets.store import EpisodeStore
    from robolearn.goal import GoalConfig
    from robolearn.policies import POLICY_REGISTRY, make_policy

    torch.manual_seed(seed)
    store = EpisodeStore.open(store_path)
    cls = POLICY_REGISTRY[method]
    cfg = cls.config_class(**policy_kw)
    cfg.goal = GoalConfig(modalities=["language"])
    mask_keys = ["keypose_pos", "keypose_quat", "keypose_open"] if method == "gravmad" else []
    cfg.obs_shapes = {k: [int(x) for x in store.array(k).shape[1:]] for k in cfg.obs_keys}
    cfg.action_dim = int(store.array("action").shape[1])
    cfg.env = {"task": store.attrs.get("task", ""), "env": store.attrs.get("env", {})}
    policy = make_policy(cfg, store.stats)
    ds = WindowDataset(store, cfg.obs_keys, "action", cfg.obs_horizon, cfg.horizon, episodes=episodes, in_ram=True,
                       mask_keys=mask_keys, goal=cfg.goal)
    if len(ds) < 2:
        raise SystemExit(f"{store_path}: only {len(ds)} training windows")
    loader = DataLoader(ds, batch_size=min(batch, len(ds)), shuffle=True, drop_last=True, num_workers=0,
                        generator=torch.Generator().manual_seed(seed))
    opt = torch.optim.AdamW(policy.parameters(), lr=1e-3, weight_decay=1e-6)
    warm = max(1, min(100, steps // 10))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: min(1.0, (i + 1) / warm) * 0.5 * (1 + np.cos(np.pi * min(i, steps) / steps)))
    policy.train()
    step, t0, logs = 0, time.perf_counter(), []
    while step < steps:
        for item in loader:
            out_ = policy.compute_loss(item)
            opt.zero_grad()
            out_["loss"].backward()
            torch.nn.utils.clip_grad_norm_(policy.parameters(), 1.0)
            opt.step()
            sched.step()
            step += 1
            if step % 100 == 0 or step == steps:
                logs.append({k: round(float(v.detach()), 4) for k, v in out_.items()} | {"step": step})
            if step >= steps:
                break
    policy.eval()
    policy.save(out)
    return policy, {"steps": steps, "batch_size": batch, "train_s": round(time.perf_counter() - t0, 1), "log": logs[-3:]}


# ------------------------------------------------------------------------ 4. grounding
def grounding_report(policy, store_path: str, episodes: dict[str, list[int]], max_steps: int = 2000) -> dict:
    import torch

    from robolearn.datasets.store import EpisodeStore
    from robolearn.nn.goal_encoder import embed_instructions
    from robolearn.policies.gravmap import NEGATIVE_INSTRUCTIONS

    s = EpisodeStore.open(store_path)
    out = {}
    instr = s.meta_column("instruction")
    for name, eps in episodes.items():
        errs, confs, open_ok = [], [], []
        rng = np.random.default_rng(0)
        for i in eps:
            sl = s.episode_slice(i)
            idx = np.arange(sl.start, sl.stop)[:: 4]
            obs = {k: torch.from_numpy(s.array(k)[idx.min(): idx.max() + 1][idx - idx.min()])[:, None]
                   for k in ("proprio", "agentview_image", "agentview_pointcloud")}
            with torch.no_grad():
                sg = policy.ground(obs, [str(instr[i])] * len(idx))
            target = s.get("keypose_pos")[idx]
            errs += list(np.linalg.norm(sg.pos.numpy() - target, axis=-1))
            confs += list(sg.confidence.numpy())
            open_ok += list((sg.open.numpy() > 0.5) == (s.get("keypose_open")[idx, 0] > 0.5))
            if len(errs) >= max_steps:
                break
        del rng
        out[name] = {"mean_error_cm": round(100 * float(np.mean(errs)), 2), "median_error_cm": round(100 * float(np.median(errs)), 2),
                     "open_accuracy": round(float(np.mean(open_ok)), 3), "mean_confidence": round(float(np.mean(confs)), 3),
                     "steps": len(errs)}
    with torch.no_grad():
        held = [t for t in ("lift the purple cube", "stack the orange cube on the pink cube", "pick up the sphere",
                            "open the mug", "lift the violet block", "grab the teapot") if t not in NEGATIVE_INSTRUCTIONS]
        conf = torch.sigmoid(policy.learned_grounder.conf(embed_instructions(held, policy.device))[:, 0])
    out["no_object_instructions"] = {t: round(float(c), 3) for t, c in zip(held, conf)}
    return out


# ------------------------------------------------------------------------ 5. success
def eval_seeds(n: int) -> dict[str, list[int]]:
    from robolearn.sim import make

    env = make("multi_cube", cameras=())
    seeds: dict[str, list[int]] = {"seen": [], "novel": []}
    s = EVAL_SEED0
    while min(len(v) for v in seeds.values()) < n:
        env.reset(seed=s)
        part = split_of(env.instruction)
        if len(seeds[part]) < n:
            seeds[part].append(s)
        s += 1
    env.close()
    return seeds


_W: dict = {}


def _init_worker() -> None:
    import torch

    torch.set_num_threads(1)


def _run_job(job: tuple) -> dict:
    cell, ckpt, grounder, seed = job
    import torch

    from robolearn.eval.rollout import run_policy_episode
    from robolearn.goal import Goal
    from robolearn.policies import load_policy
    from robolearn.sim import make

    key = (ckpt, grounder)
    if key not in _W:
        pol = load_policy(ckpt)
        if grounder:
            pol.config.grounder = grounder
        _W[key] = pol
    pol = _W[key]
    needs_cloud = "agentview_pointcloud" in pol.config.obs_keys
    env_key = ("env", needs_cloud)
    if env_key not in _W:
        _W[env_key] = make("multi_cube", cameras=("agentview",) if needs_cloud else (), image_size=84, pointcloud=needs_cloud)
    env = _W[env_key]
    env.reset(seed=seed)
    goal = Goal(instruction=env.instruction)
    t0 = time.perf_counter()
    with torch.inference_mode():
        out = run_policy_episode(env, pol, seed, goal=goal, max_steps=MAX_STEPS)
    return {"cell": cell, "seed": seed, "success": out["success"], "length": out["length"], "instruction": goal.instruction,
            "refusals": int(getattr(pol, "refusals", 0)), "s": round(time.perf_counter() - t0, 2)}


def run_cells(cells: dict[str, tuple[str, str]], seeds: dict[str, list[int]], workers: int) -> dict:
    from robolearn.stats import wilson_interval

    jobs = [(f"{name}/{part}", ckpt, grounder, s) for name, (ckpt, grounder) in cells.items() for part, ss in seeds.items() for s in ss]
    ctx = mp.get_context("spawn")
    with ctx.Pool(workers, initializer=_init_worker) as pool:
        outs = list(pool.imap_unordered(_run_job, jobs, chunksize=4))
    table = {}
    for cell in sorted({o["cell"] for o in outs}):
        rows = [o for o in outs if o["cell"] == cell]
        k, n = sum(o["success"] for o in rows), len(rows)
        stack = [o for o in rows if goal_of(o["instruction"])[0] == "stack"]
        table[cell] = {"success_rate": round(k / n, 3), "wilson95": [round(x, 3) for x in wilson_interval(k, n)], "n": n,
                       "stack_success": f"{sum(o['success'] for o in stack)}/{len(stack)}",
                       "lift_success": f"{sum(o['success'] for o in rows if o not in stack)}/{n - len(stack)}",
                       "mean_length": round(float(np.mean([o["length"] for o in rows])), 1),
                       "episode_s": round(float(np.mean([o["s"] for o in rows])), 2)}
    return table


# ------------------------------------------------------------------------ picture
def gravmap_picture(store_path: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import torch

    from robolearn.datasets.store import EpisodeStore
    from robolearn.policies.gravmap import WORKSPACE_HIGH, WORKSPACE_LOW, gravmap, grid_points

    s = EpisodeStore.open(store_path)
    instr = s.meta_column("instruction")
    ep = next(i for i in range(s.n_episodes) if goal_of(str(instr[i]))[0] == "stack")
    sl = s.episode_slice(ep)
    keyflag = s.get("keypose")[sl]
    steps = [0, int(np.nonzero(keyflag)[0][0]) + 2, len(keyflag) - 12]
    grid = torch.from_numpy(grid_points(WORKSPACE_LOW, WORKSPACE_HIGH, (14, 14, 8)))
    fig = plt.figure(figsize=(15, 5.2))
    for j, t in enumerate(steps):
        ax = fig.add_subplot(1, 3, j + 1, projection="3d")
        pc = s.array("agentview_pointcloud")[sl.start + t].reshape(-1, 3)
        rgb = s.array("agentview_image")[sl.start + t].reshape(-1, 3) / 255.0
        keep = np.all((pc >= WORKSPACE_LOW) & (pc <= WORKSPACE_HIGH), axis=-1) & (pc[:, 2] > WORKSPACE_LOW[2] + 0.005)
        ax.scatter(*pc[keep].T, c=rgb[keep], s=4, depthshade=False)
        kp = torch.from_numpy(s.get("keypose_pos")[sl.start + t][None])
        op = torch.from_numpy(s.get("keypose_open")[sl.start + t])
        gm = gravmap(kp, op, grid, WORKSPACE_LOW, WORKSPACE_HIGH)[0].numpy()
        xyz = (gm[:, :3] + 1) / 2 * (np.array(WORKSPACE_HIGH) - np.array(WORKSPACE_LOW)) + np.array(WORKSPACE_LOW)
        low = gm[:, 3] < 0.3
        sc = ax.scatter(*xyz[low].T, c=gm[low, 3], cmap="plasma", vmin=0, vmax=0.3, s=40 * (1 - gm[low, 3] / 0.3) + 2,
                        alpha=0.25, depthshade=False)
        ax.scatter(*kp[0].numpy(), marker="*", s=400, c="red" if op[0] < 0.5 else "lime", edgecolors="k", depthshade=False)
        ax.set_title(f"step {t}: sub-goal {'closed' if op[0] < 0.5 else 'open'} gripper\n{instr[ep]}", fontsize=9)
        ax.set_xlim(-0.2, 0.15)
        ax.set_ylim(-0.2, 0.2)
        ax.set_zlim(0.8, 1.05)
        ax.view_init(elev=30, azim=-50)
    fig.colorbar(sc, ax=fig.axes, shrink=0.6, label="GravMap cost (< 0.3 shown)")
    fig.suptitle("GravMaps of the demo's next keypose over the scene point cloud (star: sub-goal; red = close, green = open)")
    fig.savefig(path, dpi=90)
    plt.close(fig)


# ------------------------------------------------------------------------ main
def render(res: dict) -> str:
    kp = res["keyposes"]
    lines = [f"# GravMAD on multi_cube ({res['date']})", "", f"Command: `{res['command']}`  ", f"Machine: {res['machine']}, "
             f"load average at start {res['load_start']}, wall time {res['wall_s']} s.  ",
             f"Budget: {res['budget']}  ", *([f"Note: {res['note']}"] if res.get("note") else []), "",
             f"Split: seen = lift any colour + stack {', '.join(a + ' on ' + b for a, b in SEEN_STACKS)}; "
             "novel = the six reversed stack pairs.", "",
             "## Keypose discovery vs the scripted experts' phase ends", "",
             f"{kp['episodes']} demos, {kp['phase_ends']} phase ends, {kp['keyposes']} keyposes; rule: {kp['rule']}.  ",
             f"mean timing error {kp['mean_abs_timing_error_steps']} steps; missed {kp['missed_fraction']:.1%} of phase ends; "
             f"extra {kp['extra_fraction']:.1%} of keyposes.  ",
             "Found per phase start: " + ", ".join(f"{k} {v:.0%}" for k, v in kp["found_by_phase_start"].items()), ""]
    if "grounding" in res:
        g = res["grounding"]
        lines += ["## Learned grounder (error against the discovered next keypose)", "",
                  "| demos | mean error (cm) | median (cm) | open/closed accuracy | mean confidence |", "| --- | --- | --- | --- | --- |"]
        lines += [f"| {k} | {v['mean_error_cm']} | {v['median_error_cm']} | {v['open_accuracy']} | {v['mean_confidence']} |"
                  for k, v in g.items() if k != "no_object_instructions"]
        lines += ["", "Confidence on instructions naming nothing in the scene (not among the training negatives): "
                  + ", ".join(f"'{k}' {v}" for k, v in g["no_object_instructions"].items()), ""]
    if "success" in res:
        lines += ["## Success (Wilson 95% interval)", "", "| method | goals | success | 95% CI | lift | stack | n |",
                  "| --- | --- | --- | --- | --- | --- | --- |"]
        for cell, v in res["success"].items():
            name, part = cell.split("/")
            lines.append(f"| {name} | {part} | {v['success_rate']:.2f} | {v['wilson95'][0]:.2f}-{v['wilson95'][1]:.2f} | "
                         f"{v['lift_success']} | {v['stack_success']} | {v['n']} |")
        lines += ["", "gravmad = learned grounder; gravmad_oracle = same checkpoint, oracle grounder (reads the cube poses: an "
                  "upper bound); no_gravmap = the keypose head without the GravMap token (3D Diffuser Actor-style); "
                  "diffusion = the dense language-conditioned diffusion head on state observations."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--store", default=str(ROOT / "datasets" / "stores" / "multi_cube_pointcloud.zarr"))
    p.add_argument("--demos", type=int, default=240)
    p.add_argument("--steps", type=int, default=1500)
    p.add_argument("--episodes", type=int, default=50)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--cells", default="gravmad,oracle,no_gravmap,diffusion")
    p.add_argument("--scratch", type=Path, default=Path("/tmp/gravmad"))
    p.add_argument("--results", type=Path, default=RESULTS)
    p.add_argument("--size", choices=["cpu", "large"], default="cpu", help="cpu: sized for a shared 2-core CPU")
    p.add_argument("--note", default="", help="a line recorded with the results (e.g. how the run was scheduled)")
    p.add_argument("--render", action="store_true", help="only re-render gravmad.md from gravmad.json (with --note)")
    args = p.parse_args(argv)
    if args.render:
        res = json.loads((args.results / "gravmad.json").read_text())
        if args.note:
            res["note"] = args.note
        (args.results / "gravmad.json").write_text(json.dumps(res, indent=2) + "\n")
        (args.results / "gravmad.md").write_text(render(res))
        return
    import torch

    from robolearn.datasets.store import EpisodeStore, store_exists

    t0 = time.perf_counter()
    res: dict = {"command": "python benchmarks/gravmad.py " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:])),
                 "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "load_start": [round(x, 2) for x in os.getloadavg()],
                 "machine": f"{os.cpu_count()}-core CPU, torch {torch.__version__}", "seen_stacks": SEEN_STACKS}
    if not store_exists(args.store):
        from robolearn.sim.collect import CollectConfig, collect

        collect(CollectConfig(task="multi_cube", episodes=args.demos, out=args.store, workers=args.workers,
                              cameras=["agentview"], image_size=84, pointcloud=True, progress=False))
    res["keyposes"] = keypose_report(args.store)
    print(json.dumps(res["keyposes"]), flush=True)
    args.results.mkdir(parents=True, exist_ok=True)
    gravmap_picture(args.store, args.results / "gravmap.png")
    s = EpisodeStore.open(args.store)
    instr = [str(x) for x in s.meta_column("instruction")]
    seen = [i for i, t in enumerate(instr) if split_of(t) == "seen"]
    novel = [i for i, t in enumerate(instr) if split_of(t) == "novel"]
    held = seen[:: 10]
    train_eps = [i for i in seen if i not in held]
    res["split"] = {"train_episodes": len(train_eps), "held_out_seen": len(held), "novel_episodes": len(novel)}
    cells = [c.strip() for c in args.cells.split(",") if c.strip()]
    small = dict(hidden=128, token_dim=32, n_points=128, grid_shape=[8, 8, 5])  # sized for a shared 2-core CPU
    if args.size == "large":
        small = dict(hidden=256, token_dim=64, n_points=256, grid_shape=[10, 10, 6])
    budget = [f"{len(train_eps)} seen demos, {args.steps} steps x batch 32 per model ({small})"]
    ckpts, train_info = {}, {}
    if {"gravmad", "oracle"} & set(cells):
        pol, train_info["gravmad"] = train_policy(args.store, train_eps, "gravmad", args.steps, args.scratch / "gravmad", **small)
        ckpts["gravmad"] = str(args.scratch / "gravmad")
        res["grounding"] = grounding_report(pol, args.store, {"held_out_seen": held, "novel": novel})
        print(json.dumps(res["grounding"]), flush=True)
    if "no_gravmap" in cells:
        _, train_info["no_gravmap"] = train_policy(args.store, train_eps, "gravmad", args.steps, args.scratch / "no_gravmap",
                                                   use_gravmap=False, **small)
        ckpts["no_gravmap"] = str(args.scratch / "no_gravmap")
    if "diffusion" in cells:
        _, train_info["diffusion"] = train_policy(args.store, train_eps, "diffusion", args.steps, args.scratch / "diffusion",
                                                  obs_keys=["state"], down_dims=[64, 128, 256], num_inference_steps=10)
        ckpts["diffusion"] = str(args.scratch / "diffusion")
    res["training"] = train_info
    print(json.dumps(train_info), flush=True)
    evals = {}
    if "gravmad" in cells:
        evals["gravmad"] = (ckpts["gravmad"], "learned")
    if "oracle" in cells:
        evals["gravmad_oracle"] = (ckpts["gravmad"], "oracle")
    for c in ("no_gravmap", "diffusion"):
        if c in cells:
            evals[c] = (ckpts[c], "")
    if args.episodes > 0 and evals:
        seeds = eval_seeds(args.episodes)
        res["eval_seeds"] = {k: [v[0], v[-1], len(v)] for k, v in seeds.items()}
        t1 = time.perf_counter()
        res["success"] = run_cells(evals, seeds, args.workers)
        res["eval_s"] = round(time.perf_counter() - t1, 1)
    budget.append(f"{args.episodes} episodes per cell (seeds from {EVAL_SEED0}, first seen / novel goals), at most {MAX_STEPS} steps, "
                  f"{args.workers} eval workers")
    res["budget"] = "; ".join(budget)
    res["wall_s"] = round(time.perf_counter() - t0, 1)
    (args.results / "gravmad.json").write_text(json.dumps(res, indent=2) + "\n")
    (args.results / "gravmad.md").write_text(render(res))
    print(json.dumps({k: res.get(k) for k in ("success", "wall_s")}, indent=2))


if __name__ == "__main__":
    main()

"""OOD-IL benchmark: demos from demonstrators with other dynamics (default, heavy_object, strong_gain,
damped_joints; 2 modes), scored by OOD-IL and by the Cao et al. feasibility baseline, then imitated.

    python benchmarks/oodil.py scores --task lift [--demos 64]          # clustering ARI + transferability AUROC
    python benchmarks/oodil.py imitate --task lift --head bc [--steps 2000] [--episodes 50]
    python benchmarks/oodil.py --table                                  # re-render benchmarks/results/oodil.md

`scores`: collect (or reuse) a state-only store with datasets/<task>_other_dynamics.toml's demonstrators;
ground truth per demo = replaying its recorded actions open loop on the *default* robot from its own
seed succeeds (as benchmarks/sim.py's demonstrators table, per demo); run `robolearn pretrain` with
policies/<task>_oodil_pretrain.toml (method oodil, then method feasibility) on a copy of the store;
report the adjusted Rand index of `mode_cluster` against the experts' `mode`, and the AUROC of
`transferability` / `feasibility` against the replay ground truth (plus the mean score per
demonstrator and the imitator's interaction budget).
`imitate`: train the head (state) on the scored store with data.weights = "" (uniform), "feasibility",
"transferability", and on the truly transferable demos only (oracle: data.episodes), evaluate each
on 50 episodes at fixed seeds (100000...) in the default-dynamics task; Wilson 95 % intervals.
Every row records its command, budget, wall time and the load average. Rows merge into
benchmarks/results/oodil.json; the table is benchmarks/results/oodil.md.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
sys.path.insert(0, str(ROOT / "benchmarks"))
from success import CPU_PROFILE, machine, stamp  # noqa: E402

DEMONSTRATORS = {"default": {}, "heavy_object": {"object_mass_scale": 4.0},
                 "strong_gain": {"action_scale": 1.6, "kp_scale": 1.5},
                 "damped_joints": {"joint_damping_scale": 8.0, "kp_scale": 0.6}}  # datasets/*_other_dynamics.toml
WEIGHTINGS = {"uniform": "", "feasibility": "feasibility", "oodil": "transferability", "oracle": ""}



def auroc(score: np.ndarray, positive: np.ndarray) -> float:
    """P(score of a random positive > score of a random negative), ties count half."""
    pos, neg = score[positive], score[~positive]
    if not len(pos) or not len(neg):
        return float("nan")
    return float(((pos[:, None] > neg[None]) + 0.5 * (pos[:, None] == neg[None])).mean())


def base_store(args) -> Path:
    from robolearn.sim.collect import CollectConfig, collect

    path = args.scratch / f"{args.task}_other_dynamics_{args.demos}.zarr"
    if path.exists():  # collected before (its own recipe, or an earlier run): reused
        return path
    collect(CollectConfig(task=args.task, episodes=args.demos, out=str(path), workers=args.workers, cameras=[],
                          demonstrators=DEMONSTRATORS, progress=False))
    return path


def scored_store(args) -> Path:
    return args.scratch / f"{args.task}_scored_{args.demos}.zarr"


def replay_ground_truth(store_path: Path, task: str) -> np.ndarray:
    """Per demo: do its recorded actions, replayed open loop on the default robot from its seed, succeed?"""
    from robolearn.datasets.store import EpisodeStore
    from robolearn.sim import make

    store = EpisodeStore.open(store_path)
    env, ok = make(task, cameras=()), []
    for i, seed in enumerate(store.meta_column("seed")):
        env.reset(seed=int(seed))
        success = False
        for a in store.get_episode(i, ["action"])["action"]:
            success = env.step(a)[4]["success"] or success
        ok.append(success)
    env.close()
    return np.array(ok)


def first_states_ari(store, steps: int = 20) -> float:
    """Reference clustering without any encoder: spherical k-means (k=2) on each demo's mean state over its
    first `steps` steps, every dimension z-scored over the demos."""
    from robolearn.pretrain.infocon import adjusted_rand_index
    from robolearn.pretrain.oodil import kmeans

    x = np.stack([store.get_episode(i, ["state"])["state"][:steps].mean(0) for i in range(store.n_episodes)])
    z = (x - x.mean(0)) / x.std(0).clip(1e-6)
    return adjusted_rand_index(kmeans(z / np.linalg.norm(z, axis=1, keepdims=True).clip(1e-12), 2)[0], store.meta_column("mode"))


def scores(args) -> dict:
    from robolearn.datasets.store import EpisodeStore
    from robolearn.pretrain.infocon import adjusted_rand_index
    from robolearn.train.pretrain_run import load_pretrain_recipe, pretrain

    t0 = time.perf_counter()
    src = base_store(args)
    dst = scored_store(args)
    shutil.rmtree(dst, ignore_errors=True)
    shutil.copytree(src, dst)
    t_gt = time.perf_counter()
    gt = replay_ground_truth(dst, args.task)
    t_gt = time.perf_counter() - t_gt
    np.save(args.scratch / f"{args.task}_replay_ok_{args.demos}.npy", gt)
    recipe = ROOT / "policies" / f"{args.task}_oodil_pretrain.toml"
    walls, summaries = {}, {}
    for method, steps in (("oodil", args.pretrain_steps), ("feasibility", 20)):  # the baseline uses no encoder
        out = args.scratch / "runs" / f"{args.task}_{method}"
        shutil.rmtree(out, ignore_errors=True)
        t = time.perf_counter()
        pretrain(load_pretrain_recipe(recipe, [f"dataset={dst}", f"out={out}", f"method={method}",
                                               f"train.steps={steps}", "train.progress=false", *args.pretrain_set]))
        walls[method] = round(time.perf_counter() - t, 1)
        summaries[method] = json.loads((out / f"{method}_scores.json").read_text())
    store = EpisodeStore.open(dst)
    who = store.meta_column("demonstrator").astype(str)
    row = {"task": args.task, "demos": store.n_episodes, "replay_ok": gt.astype(int).tolist(),
           "replay_ok_per_demonstrator": {d: float(gt[who == d].mean()) for d in np.unique(who)},
           "ari_mode_cluster": adjusted_rand_index(store.meta_column("mode_cluster"), store.meta_column("mode")),
           "ari_reference_first20_states": first_states_ari(store),
           "clusters": summaries["oodil"]["clusters"], "pretrain_steps": args.pretrain_steps, "pretrain_set": args.pretrain_set,
           "replay_wall_s": round(t_gt, 1), "method_wall_s": walls}
    for method, field in (("oodil", "transferability"), ("feasibility", "feasibility")):
        v = store.meta_column(field)
        row[method] = {"auroc": auroc(v, gt), "mean_score_per_demonstrator": {d: round(float(v[who == d].mean()), 4) for d in np.unique(who)},
                       "interaction": summaries[method]["interaction"], "rounds": summaries[method]["rounds"]}
    return stamp(row, t0)


def imitate(args) -> list[dict]:
    from robolearn.eval.runner import EvalConfig, evaluate
    from robolearn.train.config import load_recipe
    from robolearn.train.run import train

    store = scored_store(args)
    gt = np.load(args.scratch / f"{args.task}_replay_ok_{args.demos}.npy")
    recipe = ROOT / "policies" / f"{args.task}_{args.head}_oodil.toml"
    rows = []
    for name in args.weightings:
        t0 = time.perf_counter()
        out = args.scratch / "runs" / f"{args.task}_{args.head}_{name}"
        shutil.rmtree(out, ignore_errors=True)
        overrides = [f"dataset={store}", f"out={out}", f"train.steps={args.steps}", f"train.checkpoint_every={args.steps}",
                     f'data.weights="{WEIGHTINGS[name]}"', "train.progress=false", *CPU_PROFILE[args.head]]
        if name == "oracle":
            overrides.append(f"data.episodes={json.dumps(np.flatnonzero(gt).tolist())}")
        train(load_recipe(recipe, overrides))
        t_train = time.perf_counter() - t0
        report = evaluate(EvalConfig(checkpoint=str(out / "checkpoints" / "last"), episodes=args.episodes,
                                     workers=args.workers, out=str(out / "eval")), progress=False)
        rows.append(stamp({"task": args.task, "head": args.head, "weighting": name, "demos": int(len(gt)),
                           "demos_used": int(gt.sum()) if name == "oracle" else int(len(gt)), "train_steps": args.steps,
                           "episodes": args.episodes, "success_rate": report["success_rate"], "wilson95": report["wilson95"],
                           "train_wall_s": round(t_train, 1), "overrides": overrides[1:]}, t0))
        print(json.dumps(rows[-1]), flush=True)
        merge("imitation", rows[-1:], ("task", "head", "weighting"))  # each cell as it finishes
    return rows


# --- results ----------------------------------------------------------------------------------------
def merge(section: str, rows: list[dict], key: tuple[str, ...]) -> dict:
    path = RESULTS / "oodil.json"
    data = json.loads(path.read_text()) if path.exists() else {}
    new = {tuple(r[k] for k in key) for r in rows}
    data[section] = [r for r in data.get(section, []) if tuple(r[k] for k in key) not in new] + rows
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    tmp.replace(path)
    return data


def render(data: dict) -> str:
    lines = ["# OOD-IL: demonstrators with other dynamics", "",
             "Generated by `benchmarks/oodil.py` (the commands are in each row of oodil.json). Demos: state-only, "
             "seeds dealt round-robin over 4 demonstrators (default, heavy_object, strong_gain, damped_joints) "
             "and 2 expert modes. Ground truth: a demo is transferable when replaying its actions open loop on the "
             "default robot from its seed succeeds.", "",
             "## Clustering and transferability", "",
             "| task | demos | replay ok (per demonstrator) | ARI mode_cluster vs mode (k) | ARI reference: k-means on first-20-step mean states | AUROC OOD-IL | AUROC feasibility (Cao et al.) | mean score OOD-IL / feasibility per demonstrator | imitator interaction (env steps, per method) | wall s | load |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in data.get("scores", []):
        per = ", ".join(f"{d} {v:.2f}" for d, v in r["replay_ok_per_demonstrator"].items())
        ms = ", ".join(f"{d} {r['oodil']['mean_score_per_demonstrator'][d]:.2f}/{r['feasibility']['mean_score_per_demonstrator'][d]:.2f}"
                       for d in r["replay_ok_per_demonstrator"])
        inter = r["oodil"]["interaction"]
        lines.append(f"| {r['task']} | {r['demos']} | {per} | {r['ari_mode_cluster']:.2f} ({r['clusters']['k']}) | {r.get('ari_reference_first20_states', float('nan')):.2f} | "
                     f"{r['oodil']['auroc']:.2f} | {r['feasibility']['auroc']:.2f} | {ms} | "
                     f"{inter['env_steps']} / {r['feasibility']['interaction']['env_steps']} ({inter['rollouts']} rollouts of <= {inter['rollout_steps_max']}) | "
                     f"{r['wall_s']} | {r['load_avg']} |")
    lines += ["", "## Imitation (success in the default-dynamics task, episodes at fixed seeds 100000..., Wilson 95 %)", "",
              "| task | head | weighting | demos used | train steps | episodes | success | 95 % CI | wall s | load |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    for r in data.get("imitation", []):
        lo, hi = r["wilson95"]
        lines.append(f"| {r['task']} | {r['head']} | {r['weighting']} | {r['demos_used']}/{r['demos']} | {r['train_steps']} | {r['episodes']} | "
                     f"{r['success_rate']:.2f} | [{lo:.2f}, {hi:.2f}] | {r['wall_s']} | {r['load_avg']} |")
    lines += ["", "Budget (2-core CPU shared with other jobs, load in the rows): scores: 64 demos (16 per demonstrator), "
              "encoder 300 steps (batch 64), the imitator 2 rounds x 6 rollouts of at most the task horizon in the "
              "default-dynamics simulator (env steps in the table), 400 imitator + 300 discriminator steps per round; "
              "the feasibility baseline the same loop without modes. Imitation: benchmarks/success.py's CPU profile, "
              "BC 2000 steps, diffusion 1000 steps, state observations, one evaluation of the last checkpoint. "
              "Every cell is filled; on stack, diffusion at 1000 steps does not learn the task under any weighting "
              "(0.00-0.02), so those four rows say nothing about the weights: benchmarks/oodil_gpu.sh runs every "
              "cell at 200 demos and a longer schedule."]
    lines += ["", f"Machine: {machine()}. Commands: " + "; ".join(sorted({r['command'] for s in data.values() for r in s}))]
    text = "\n".join(lines) + "\n"
    (RESULTS / "oodil.md").write_text(text)
    return text


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", nargs="?", choices=["scores", "imitate"])
    ap.add_argument("--task", default="lift", choices=["lift", "stack"])
    ap.add_argument("--head", default="bc", choices=["bc", "diffusion"])
    ap.add_argument("--demos", type=int, default=64)
    ap.add_argument("--pretrain-steps", type=int, default=300)
    ap.add_argument("--pretrain-set", nargs="*", default=[], metavar="KEY=VALUE",
                    help="overrides of policies/<task>_oodil_pretrain.toml, e.g. pretrain.rounds=4 pretrain.rollouts=16")
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--episodes", type=int, default=50)
    ap.add_argument("--weightings", nargs="+", default=list(WEIGHTINGS), choices=list(WEIGHTINGS))
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--scratch", type=Path, default=Path("/tmp/oodil/bench"))
    ap.add_argument("--table", action="store_true")
    args = ap.parse_args(argv)
    args.scratch.mkdir(parents=True, exist_ok=True)
    if args.what == "scores":
        row = scores(args)
        print(json.dumps(row))
        merge("scores", [row], ("task",))
    elif args.what == "imitate":
        imitate(args)
    path = RESULTS / "oodil.json"
    if path.exists():
        print(render(json.loads(path.read_text())))


if __name__ == "__main__":
    main()

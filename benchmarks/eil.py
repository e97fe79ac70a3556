"""EIL (issue 16): does finding and dropping the extraneous segments of demos help imitation?

    python benchmarks/eil.py stores  --task lift            # collect the demos (once; re-used)
    python benchmarks/eil.py detect  --task lift            # EIL vs plain TCC vs random flags
    python benchmarks/eil.py imitate --task lift --head bc --data raw|eil|oracle|clean
    python benchmarks/eil.py all                            # everything below, in the CPU budget
    python benchmarks/eil.py table                          # re-render the markdown only

Stores (state observations, scripted experts): `--demos` (default 50) demos collected with
`robolearn collect --extraneous 0.6` (60% of the demos get 1-2 inserted wander / pause segments,
per-step true label `extraneous`), and as many clean demos from the same seeds.

detect: label copies of the extraneous store with policies/lift_eil_pretrain.toml (EIL, action-
conditioned embeddings) and with pretrain.action_conditioned=false (plain TCC), `--steps` TCC steps
each; per-frame precision / recall / F1 of the flagged frames against `extraneous`, next to random
flags at the true rate. The EIL copy also gets `true_keep` = not extraneous (the oracle's weights).

imitate: the task's BC (or diffusion) state recipe with benchmarks/success.py's CPU profile, trained
`--policy-steps` steps on (raw) the extraneous demos as they are, (eil) the same demos weighted by
`eil_keep` (data.step_weight_key), (oracle) weighted by the true labels, (clean) the clean demos;
success over 50 episodes at fixed seeds (100000...) with Wilson intervals, and the mean episode
length (extraneous behaviour learned by the policy shows up as slower episodes).

Every step merges its rows into benchmarks/results/eil.json (keyed, re-runnable) and re-renders
benchmarks/results/eil.md; each row records its command, machine, wall time and load average.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import numpy as np
from success import CPU_PROFILE, TASK_RECIPE, stamp  # benchmarks/ is on sys.path when run as a script

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
DATA_LABEL = {"raw": "", "eil": "eil_keep", "oracle": "true_keep", "clean": ""}



def store_path(args, kind: str) -> Path:
    return args.scratch / "stores" / f"{args.task}_{kind}_{args.demos}.zarr"


def labelled_path(args, variant: str) -> Path:
    return args.scratch / "labelled" / f"{args.task}_{variant}_{args.demos}.zarr"


def make_stores(args) -> None:
    from robolearn.sim.collect import CollectConfig, collect

    for kind, extraneous in (("x", 0.6), ("clean", 0.0)):
        path = store_path(args, kind)
        path.parent.mkdir(parents=True, exist_ok=True)
        collect(CollectConfig(task=args.task, episodes=args.demos, out=str(path), workers=args.workers, cameras=[],
                              extraneous=extraneous))


# --- detection ------------------------------------------------------------------------------------
def detect(args) -> list[dict]:
    from robolearn.datasets.store import EpisodeStore
    from robolearn.pretrain.eil import detection_scores, random_flags
    from robolearn.train.pretrain_run import load_pretrain_recipe, pretrain

    rows = []
    for variant, conditioned in (("eil", True), ("tcc", False)):
        t0 = time.perf_counter()
        dst = labelled_path(args, variant)
        if dst.exists():
            shutil.rmtree(dst)
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copytree(store_path(args, "x"), dst)
        out = args.scratch / "runs" / f"{args.task}_{variant}_pretrain"
        if out.exists():
            shutil.rmtree(out)
        overrides = [f"dataset={dst}", f"out={out}", f"task={args.task}", f"train.steps={args.steps}", "pretrain.max_episode_len=256",
                     f"train.checkpoint_every={args.steps}", f"pretrain.action_conditioned={str(conditioned).lower()}"]
        pretrain(load_pretrain_recipe(ROOT / "policies" / "lift_eil_pretrain.toml", overrides))
        store = EpisodeStore.open(dst, mode="a")
        true = store.get("extraneous").astype(bool)
        if variant == "eil":  # the oracle's weights, beside EIL's
            store.write_labels({"true_keep": (~true).astype(np.uint8)})
        rows.append(stamp({"task": args.task, "method": variant, "demos": args.demos, "steps": args.steps,
                           **detection_scores(store.get("eil_keep") == 0, true), "overrides": overrides}, t0))
    true = EpisodeStore.open(labelled_path(args, "eil")).get("extraneous").astype(bool)
    rows.append(stamp({"task": args.task, "method": "random", "demos": args.demos, "steps": 0,
                       **detection_scores(random_flags(len(true), float(true.mean())), true)}, time.perf_counter()))
    return rows


# --- imitation ----------------------------------------------------------------------------------------
def imitate(args) -> dict:
    from robolearn.eval.runner import EvalConfig, evaluate
    from robolearn.train.config import load_recipe
    from robolearn.train.run import train

    t0 = time.perf_counter()
    store = store_path(args, "clean") if args.data == "clean" else (
        store_path(args, "x") if args.data == "raw" else labelled_path(args, "eil"))
    if not Path(store).exists():
        raise SystemExit(f"{store}: missing (run the stores and detect steps for --task {args.task} first)")
    out = args.scratch / "runs" / "imitate" / f"{args.task}_{args.head}_{args.data}"
    if out.exists():
        shutil.rmtree(out)
    overrides = [f"dataset={store}", f"out={out}", f"task={args.task}", f"train.steps={args.policy_steps}",
                 f"train.checkpoint_every={args.policy_steps}", f"train.seed={args.seed}", *CPU_PROFILE[args.head]]
    if DATA_LABEL[args.data]:
        overrides.append(f"data.step_weight_key={DATA_LABEL[args.data]}")
    train(load_recipe(ROOT / "policies" / f"{TASK_RECIPE[args.task]}_{args.head}.toml", overrides))
    report = evaluate(EvalConfig(checkpoint=str(out / "checkpoints" / "last"), episodes=args.episodes,
                                 workers=args.workers, out=str(out / "eval")), progress=False)
    wins = [o["length"] for o in report["per_episode"] if o.get("success")]
    row = {"task": args.task, "head": args.head, "data": args.data, "demos": args.demos, "seed": args.seed,
           "policy_steps": args.policy_steps, "episodes": args.episodes, "success_rate": report["success_rate"],
           "wilson95": report["wilson95"], "mean_length": report["mean_length"],
           "mean_length_successes": float(np.mean(wins)) if wins else None, "overrides": overrides}
    return stamp(row, t0)


# --- results ---------------------------------------------------------------------------------------
KEYS = {"detect": ("task", "method", "demos"), "imitate": ("task", "head", "data", "demos", "seed")}


def merge(section: str, rows: list[dict], results: Path) -> dict:
    path = results / "eil.json"
    data = json.loads(path.read_text()) if path.exists() else {}
    old = data.get(section, [])
    keys = {tuple(r[k] for k in KEYS[section]) for r in rows}
    data[section] = [r for r in old if tuple(r[k] for k in KEYS[section]) not in keys] + rows
    results.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    tmp.replace(path)
    render(data, results)
    return data


def render(data: dict, results: Path) -> str:
    lines = ["# EIL: extraneous-segment detection and imitation on the kept frames (issue 16)", "",
             "Commands, budgets, machine and load per row are in eil.json. Detection: per-frame flags vs the",
             "collector's true `extraneous` label. Imitation: 50 evaluation episodes at seeds 100000..., Wilson 95%;",
             "mean length over all 50 episodes (a failure runs to the horizon) and over the successes only.",
             "CPU budget (`python benchmarks/eil.py all`): 50 demos per store (60% with 1-2 extraneous segments),",
             "TCC 800 steps at batch 16 (32 frames per demo), one training seed per cell, the heads at",
             "benchmarks/success.py's CPU sizes for 1000 steps, state observations only (no image row on this budget);",
             "benchmarks/eil_gpu.sh is the larger variant.", "",
             "## Detection", "",
             "| task | method | demos | TCC steps | precision | recall | F1 | flagged | true share | wall s |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in data.get("detect", []):
        lines.append(f"| {r['task']} | {r['method']} | {r['demos']} | {r['steps']} | {r['precision']:.2f} | {r['recall']:.2f} | "
                     f"{r['f1']:.2f} | {r['flagged_share']:.2f} | {r['true_share']:.2f} | {r['wall_s']} |")
    lines += ["", "## Imitation", "",
              "| task | head | data | demos | policy steps | success (95% CI) | mean length | mean length (successes) | wall s | load |",
              "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    order = list(DATA_LABEL)
    for r in sorted(data.get("imitate", []), key=lambda r: (r["task"], r["head"], order.index(r["data"]), r["seed"])):
        lo, hi = r["wilson95"]
        ml = f"{r['mean_length_successes']:.1f}" if r["mean_length_successes"] is not None else "-"
        lines.append(f"| {r['task']} | {r['head']} | {r['data']} | {r['demos']} | {r['policy_steps']} | "
                     f"{r['success_rate']:.2f} ({lo:.2f}-{hi:.2f}) | {r['mean_length']:.1f} | {ml} | {r['wall_s']} | {r['load_avg']} |")
    text = "\n".join(lines) + "\n"
    (results / "eil.md").write_text(text)
    return text


# CPU budget of `all`: (task, head) imitation cells, 4 data conditions each
ALL_CELLS = [("lift", "bc"), ("pick_place_can", "bc"), ("lift", "diffusion")]


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("step", choices=["stores", "detect", "imitate", "all", "table"])
    p.add_argument("--task", default="lift", choices=list(TASK_RECIPE))
    p.add_argument("--head", default="bc", choices=["bc", "diffusion", "act"])
    p.add_argument("--data", default="raw", choices=list(DATA_LABEL))
    p.add_argument("--demos", type=int, default=50)
    p.add_argument("--steps", type=int, default=800, help="TCC pretraining steps")
    p.add_argument("--policy-steps", type=int, default=1000)
    p.add_argument("--episodes", type=int, default=50)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--scratch", type=Path, default=Path("/tmp/eil"))
    p.add_argument("--results", type=Path, default=RESULTS)
    args = p.parse_args(argv)
    if args.step == "table":
        print(render(json.loads((args.results / "eil.json").read_text()), args.results))
        return
    if args.step == "stores":
        make_stores(args)
    elif args.step == "detect":
        print(json.dumps(merge("detect", detect(args), args.results)["detect"], indent=2))
    elif args.step == "imitate":
        row = imitate(args)
        merge("imitate", [row], args.results)
        print(json.dumps(row, indent=2))
    elif args.step == "all":
        for task in dict.fromkeys(t for t, _ in ALL_CELLS):
            args.task = task
            make_stores(args)
            merge("detect", detect(args), args.results)
        for task, head in ALL_CELLS:
            args.task, args.head = task, head
            for data in DATA_LABEL:
                args.data = data
                row = imitate(args)
                merge("imitate", [row], args.results)
                print(json.dumps({k: row[k] for k in ("task", "head", "data", "success_rate", "mean_length", "wall_s")}), flush=True)


if __name__ == "__main__":
    main()

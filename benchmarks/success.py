"""Headline success table: policy heads trained on scripted demos, evaluated in robosuite.

    python benchmarks/success.py --task lift --method diffusion [--obs state] [--demos 200]
                                 [--steps 3000] [--evals 3] [--episodes 50] [--workers 2]
    python benchmarks/success.py --table        # only re-render the markdown table

Each call runs ONE row (task x method x observation type), so the table can be completed over
several runs, and merges it into benchmarks/results/success.json, then re-renders
benchmarks/results/success.md (and the same table in README.md) beside the Diffusion Policy
paper's numbers.

A row: collect `--demos` scripted demos into datasets/stores/ (re-used between rows), train
with the recipe policies/<task>_<method>[_image].toml plus the CPU profile below, evaluate the
EMA weights `--evals` times during training on 50 episodes at fixed seeds (100000...), and
report "max" (best evaluation) and "last" (final checkpoint), like the paper's max / last-10.
Each row records the exact command, overrides, machine and wall time.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
TASK_RECIPE = {"lift": "lift", "pick_place_can": "can", "nut_assembly_square": "square"}
# Diffusion Policy paper, state observations, proficient-human data, DP-C: (max, last-10)
PAPER = {"lift": (1.00, 0.98), "pick_place_can": (1.00, 0.96), "nut_assembly_square": (1.00, 0.93)}
TARGET = {"lift": 0.98, "pick_place_can": 0.95, "nut_assembly_square": 0.85}

# Model sizes that train in minutes on a 2-core CPU (the recipes carry the paper's GPU sizes).
CPU_PROFILE = {
    "diffusion": ["policy.down_dims=[64,128,256]", "train.batch_size=64", "train.lr=1e-3", "train.warmup_steps=100",
                  "train.ema_decay=0.999"],
    "act": ["policy.d_model=128", "policy.n_heads=4", "policy.n_encoder_layers=2", "policy.dim_feedforward=512",
            "train.batch_size=64", "train.lr=3e-4", "train.warmup_steps=100", "train.ema_decay=0.999"],
    "bc": ["train.batch_size=64", "train.lr=1e-3", "train.warmup_steps=100", "train.ema_decay=0.999"],
}
# Image rows add: a ResNet-18 at a quarter of the width (16) per camera, smaller batches, and the
# frames of the 200-demo store held in RAM (about 1 GB) instead of DataLoader workers on 2 cores.
IMAGE_PROFILE = ["policy.encoder.image_width=16", "train.batch_size=32", "data.in_ram=true", "data.num_workers=0"]


def machine() -> str:
    desc = f"{os.cpu_count()}-core {platform.machine()} CPU ({platform.node() or 'unknown host'})"
    import torch

    if torch.cuda.is_available():
        desc += f" + {torch.cuda.get_device_name(0)}"
    return desc


def stamp(row: dict, t0: float) -> dict:
    """Record how a benchmark row was made: the command line, machine, wall time since t0, load, date."""
    script = Path(sys.argv[0]).name
    row.update(command=f"python benchmarks/{script} " + " ".join(shlex.quote(a) for a in sys.argv[1:]),
               machine=machine(), wall_s=round(time.perf_counter() - t0, 1),
               load_avg=round(os.getloadavg()[0], 2), date=time.strftime("%Y-%m-%d"))
    return row


def ensure_store(task: str, demos: int, image: bool, workers: int, scratch: Path) -> Path:
    from robolearn.sim.collect import CollectConfig, collect

    kind = "image" if image else "state"
    path = scratch / "datasets" / "stores" / f"{task}_ph_{kind}.zarr"
    path.parent.mkdir(parents=True, exist_ok=True)
    cams = None if image else []  # image stores: the task's default cameras at 84 px
    collect(CollectConfig(task=task, episodes=demos, out=str(path), workers=workers, cameras=cams))
    return path


def run_row(args: argparse.Namespace) -> dict:
    from robolearn.eval.during_training import checkpoint_evaluator
    from robolearn.train.config import load_recipe
    from robolearn.train.run import train

    image = args.obs == "image"
    t0 = time.perf_counter()
    store = ensure_store(args.task, args.demos, image, args.workers, args.scratch)
    recipe = ROOT / "policies" / f"{TASK_RECIPE[args.task]}_{args.method}{'_image' if image else ''}.toml"
    name = f"{args.task}_{args.method}_{args.obs}"
    out = args.scratch / "runs" / "success" / name
    every = max(1, args.steps // args.evals)
    overrides = [f"dataset={store}", f"out={out}", f"train.steps={args.steps}", f"train.checkpoint_every={every}",
                 f"eval_every={every}", f"eval_episodes={args.episodes}", f"eval_workers={args.workers}",
                 *CPU_PROFILE[args.method], *(IMAGE_PROFILE if image else []), *args.override]
    if out.exists():
        import shutil

        shutil.rmtree(out)  # a row is re-run from scratch
    train(load_recipe(recipe, overrides), evaluator=checkpoint_evaluator)
    summary = json.loads((out / "eval_summary.json").read_text())
    return {
        "task": args.task, "method": args.method, "obs": args.obs, "demos": args.demos,
        "train_steps": args.steps, "eval_episodes": args.episodes,
        "max": summary["max"], "last": summary["last"], "history": summary["history"],
        "recipe": str(recipe.relative_to(ROOT)), "overrides": overrides[1:],
        "command": "python benchmarks/success.py " + " ".join(shlex.quote(a) for a in sys.argv[1:]),
        "machine": machine(), "wall_s": round(time.perf_counter() - t0, 1),
        "date": time.strftime("%Y-%m-%d"),
    }


def merge(row: dict, results: Path) -> dict:
    path = results / "success.json"
    data = json.loads(path.read_text()) if path.exists() else {"rows": []}
    data["rows"] = [r for r in data["rows"] if (r["task"], r["method"], r["obs"]) != (row["task"], row["method"], row["obs"])]
    data["rows"].append(row)
    data["rows"].sort(key=lambda r: (list(TASK_RECIPE).index(r["task"]), r["obs"], r["method"]))
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    tmp.replace(path)
    return data


def render_table(data: dict, results: Path) -> str:
    lines = [
        "| task | obs | method | demos | steps | max (95% CI) | last | target | DP paper max / last-10 | machine |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in data["rows"]:
        lo, hi = r["max"]["wilson95"]
        paper = "{:.2f} / {:.2f}".format(*PAPER[r["task"]]) if r["obs"] == "state" else "-"
        lines.append(f"| {r['task']} | {r['obs']} | {r['method']} | {r['demos']} | {r['train_steps']} | "
                     f"{r['max']['success_rate']:.2f} ({lo:.2f}-{hi:.2f}) | {r['last']['success_rate']:.2f} | "
                     f"{TARGET[r['task']]:.2f} | {paper} | {r['machine']} |")
    text = "\n".join(lines) + "\n"
    (results / "success.md").write_text(text)
    if results != RESULTS:
        return text
    readme = ROOT / "README.md"  # README shows the same table between these markers
    begin, end = "<!-- success-table -->\n", "<!-- /success-table -->"
    doc = readme.read_text()
    if begin in doc and end in doc:
        head, rest = doc.split(begin, 1)
        readme.write_text(head + begin + text + end + rest.split(end, 1)[1])
    return text


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", choices=list(TASK_RECIPE))
    p.add_argument("--method", choices=list(CPU_PROFILE))
    p.add_argument("--obs", choices=["state", "image"], default="state")
    p.add_argument("--demos", type=int, default=200)
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--evals", type=int, default=3, help="evaluations during training (the last is at the end)")
    p.add_argument("--episodes", type=int, default=50)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--override", action="append", default=[], help="extra key=value for the recipe")
    p.add_argument("--table", action="store_true", help="only re-render the markdown table")
    p.add_argument("--results", type=Path, default=RESULTS, help="where success.json/.md live (default benchmarks/results)")
    p.add_argument("--scratch", type=Path, default=ROOT, help="root for datasets/stores and runs/success (default the repo)")
    args = p.parse_args(argv)
    if not args.table:
        if not (args.task and args.method):
            p.error("--task and --method are required (or --table)")
        row = run_row(args)
        data = merge(row, args.results)
        print(json.dumps({k: row[k] for k in ("task", "method", "obs", "max", "last", "wall_s")}, indent=2))
    else:
        data = json.loads((args.results / "success.json").read_text())
    print(render_table(data, args.results))


if __name__ == "__main__":
    main()

"""MDT (issue 14): does MDT with few language labels match a fully labelled language-conditioned
baseline, and do its auxiliary losses (MGF, CLA) add success?

    python benchmarks/mdt.py store                    # multi_cube demos, every instruction kept (once)
    python benchmarks/mdt.py cell --name mdt --labels 0.1 --seed 0
    python benchmarks/mdt.py all                      # every cell below at the CPU budget
    python benchmarks/mdt.py table                    # re-render the markdown only

Store: `--demos` multi_cube demos (every lift and stack goal) with the agentview camera at 64x64 (the
goal image and the foresight target) and every instruction kept; a cell with `--labels p` trains on a
copy whose instructions are blanked on all but a seeded p share of the episodes (at least one).

Cells (each trained `--steps` steps on state observations, then evaluated over `--episodes` episodes
at seeds 100000... with `--goal language` and with `--goal image`; success overall and per goal kind
(lift / stack), Wilson 95% intervals):

    mdt            MDT (policies/multi_cube_mdt.toml) at 2% and 10% labels, training seeds 0 and 1
    mdt_no_mgf     the same at 10% without masked generative foresight (mgf_coef 0)
    mdt_no_cla     ... without contrastive latent alignment (cla_coef 0)
    mdt_no_both    ... without both
    diffusion_lang the diffusion head with the language goal, trained on only the labelled demos (10%)
                   and on every demo with its instruction (100%: the "fully labelled" reference)

Every cell merges its row into benchmarks/results/mdt.json (keyed, re-runnable) and re-renders
benchmarks/results/mdt.md; each row records its command, machine, wall time and load average.
benchmarks/mdt_gpu.sh runs the paper-sized variant.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
from success import stamp  # benchmarks/ is on sys.path when run as a script

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
CELLS = {  # name -> (recipe, overrides)
    "mdt": ("policies/multi_cube_mdt.toml", []),
    "mdt_no_mgf": ("policies/multi_cube_mdt.toml", ["policy.mgf_coef=0.0", "policy.future_keys=[]"]),
    "mdt_no_cla": ("policies/multi_cube_mdt.toml", ["policy.cla_coef=0.0"]),
    "mdt_no_both": ("policies/multi_cube_mdt.toml", ["policy.mgf_coef=0.0", "policy.future_keys=[]", "policy.cla_coef=0.0"]),
    "diffusion_lang": ("policies/diffusion.toml", ["task=multi_cube", 'policy.obs_keys=["proprio","object"]',
                                                   'policy.goal.modalities=["language"]', "policy.down_dims=[64,128,256]"]),
}
PLAN = [("mdt", 0.02, 0), ("mdt", 0.1, 0), ("mdt", 0.02, 1), ("mdt", 0.1, 1), ("mdt_no_mgf", 0.1, 0),
        ("mdt_no_cla", 0.1, 0), ("mdt_no_both", 0.1, 0), ("diffusion_lang", 0.1, 0), ("diffusion_lang", 1.0, 0)]


def run(cmd: list[str]) -> None:
    print("$", " ".join(shlex.quote(c) for c in cmd), flush=True)
    subprocess.run(cmd, check=True, cwd=ROOT)


def store_path(args) -> Path:
    return args.scratch / f"multi_cube_{args.demos}.zarr"


def make_store(args) -> None:
    run(["robolearn", "collect", "multi_cube", "--episodes", str(args.demos), "--cameras", "agentview",
         "--image-size", "64", "--language-fraction", "1.0", "--workers", str(args.workers),
         "--out", str(store_path(args)), "--no-progress"])


def labelled_copy(args, labels: float) -> tuple[Path, list[int]]:
    """A copy of the store keeping the instructions of a seeded `labels` share of episodes."""
    from robolearn.datasets.store import EpisodeStore

    dst = args.scratch / f"multi_cube_{args.demos}_labels{labels:g}.zarr"
    with EpisodeStore.open(str(store_path(args))) as src:
        n, texts = src.n_episodes, [str(t) for t in src.meta_column("instruction")]
    keep = sorted(np.random.default_rng(0).choice(n, max(1, round(labels * n)), replace=False).tolist())
    if not dst.exists():  # rebuilt episode by episode (string metadata cannot be rewritten in place)
        from robolearn.datasets.store import AtomicStoreWriter

        with EpisodeStore.open(str(store_path(args))) as src, \
                AtomicStoreWriter(dst, attrs={k: v for k, v in src.attrs.items() if k != "stats"}) as out:
            for i in range(src.n_episodes):
                out.append_episode(src.get_episode(i), {**src.episode_meta(i), "instruction": texts[i] if i in keep else ""})
    return dst, keep


def cell(args, name: str, labels: float, seed: int) -> dict:
    t0 = time.perf_counter()
    recipe, overrides = CELLS[name]
    data, keep = labelled_copy(args, labels)
    out = args.scratch / "runs" / f"{name}_l{labels:g}_s{seed}"
    extra = [f"train.seed={seed}", f"train.checkpoint_every={args.steps}", "train.progress=false"]
    if name == "diffusion_lang" and labels < 1.0:
        extra.append(f"data.episodes={json.dumps(keep)}")  # the baseline sees only the labelled demos
    if not (out / "checkpoints" / "last").exists():
        shutil.rmtree(out, ignore_errors=True)
        sized = os.environ.get("ROBOLEARN_MDT_OVERRIDES", "").split() if name.startswith("mdt") else []  # mdt_gpu.sh
        run(["robolearn", "train", "--recipe", recipe, f"dataset={data}", "--out", str(out), "--max-steps",
             str(args.steps), *overrides, *sized, *extra])
    row = {"key": f"{name}|{labels:g}|{seed}", "cell": name, "labels": labels, "seed": seed, "steps": args.steps,
           "demos": args.demos, "labelled_demos": len(keep), "eval": {}}
    for goal in (["language"] if name == "diffusion_lang" else ["language", "image"]):
        ev = out / f"eval_{goal}"
        run(["robolearn", "eval", str(out / "checkpoints" / "last"), "--goal", goal, "--episodes", str(args.episodes),
             "--seed", "100000", "--workers", str(args.workers), "--videos", "0", "--out", str(ev)])
        rep = json.loads((ev / "report.json").read_text())
        row["eval"][goal] = {k: rep[k] for k in ("success_rate", "wilson95", "episodes", "mean_length")}
        row["eval"][goal]["by_goal_kind"] = {k: {"success_rate": v["success_rate"], "episodes": v["episodes"]}
                                             for k, v in rep.get("by_goal_kind", {}).items()}
    merge(stamp(row, t0))
    return row


def merge(row: dict) -> None:
    path = RESULTS / "mdt.json"
    data = json.loads(path.read_text()) if path.exists() else {"rows": []}
    data["rows"] = [r for r in data["rows"] if r["key"] != row["key"]] + [row]
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(data, indent=2))
    os.replace(tmp, path)
    render()


def render() -> None:
    path = RESULTS / "mdt.json"
    if not path.exists():
        return
    rows = json.loads(path.read_text())["rows"]
    lines = ["# MDT on multi_cube (benchmarks/mdt.py)", "",
             "| cell | labels | seed | steps | goal | success (95% CI) | lift | stack | wall s | load |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in sorted(rows, key=lambda r: r["key"]):
        for goal, e in r["eval"].items():
            kinds = e.get("by_goal_kind", {})
            lo, hi = e["wilson95"]
            lines.append(f"| {r['cell']} | {r['labels']:g} ({r['labelled_demos']}/{r['demos']}) | {r['seed']} | {r['steps']} | "
                         f"{goal} | {e['success_rate']:.2f} ({lo:.2f}-{hi:.2f}) | "
                         f"{kinds.get('lift', {}).get('success_rate', float('nan')):.2f} | "
                         f"{kinds.get('stack', {}).get('success_rate', float('nan')):.2f} | {r['wall_s']} | {r['load_avg']} |")
    lines += ["", "Commands, machine and dates per row in mdt.json."]
    (RESULTS / "mdt.md").write_text("\n".join(lines) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("stage", choices=["store", "cell", "all", "table"])
    ap.add_argument("--name", choices=sorted(CELLS), default="mdt")
    ap.add_argument("--labels", type=float, default=0.1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--demos", type=int, default=160)
    ap.add_argument("--steps", type=int, default=3000, help="training steps per cell (CPU budget)")
    ap.add_argument("--episodes", type=int, default=50)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--scratch", type=Path, default=Path("/tmp/robolearn_mdt"))
    args = ap.parse_args()
    args.scratch.mkdir(parents=True, exist_ok=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    if args.stage == "table":
        render()
    elif args.stage == "store":
        make_store(args)
    elif args.stage == "cell":
        print(json.dumps(cell(args, args.name, args.labels, args.seed), indent=2))
    else:
        if not store_path(args).exists():
            make_store(args)
        for name, labels, seed in PLAN:
            print(json.dumps(cell(args, name, labels, seed)))


if __name__ == "__main__":
    main()

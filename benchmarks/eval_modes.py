"""Chunk execution modes in sim: success and boundary jumps of one checkpoint per `--mode`, in one run.

    python benchmarks/eval_modes.py [--checkpoint runs/quickstart/train/checkpoints/last] [--episodes 50]
                                    [--workers 2] [--modes receding,ensemble,rtc] [--latencies 0,4] [--quick]

Each cell is one `robolearn eval CHECKPOINT --mode MODE --latency-steps N` (the CLI, as a user runs
it) over the same seeds (100000...). `robolearn eval` executes chunks through the control daemon's
scheduler (robolearn/policies/scheduling.py) stepped by the sim clock. Latency 0: inference is
instantaneous (a chunk starts at the step of its observation). Latency 4 (0.2 s at 20 Hz, the
daemon's default `rtc_prefix_s`): a chunk starts 4 steps after its observation and the old plan
runs meanwhile, as on the arm.

receding  (the baseline: the default) predict when `horizon - n_action_steps` planned actions are
          left: 8 of every 16-action chunk execute
ensemble  predict every step (or as soon as the last request is back); each step executes the
          exp(-0.01 i)-weighted average of every chunk's prediction for it (ACT's temporal ensembling)
rtc       as receding, and the next 0.2 s (4 steps) of the current plan go into the policy as the
          committed prefix (the diffusion head inpaints them), so the new chunk continues the old
          one; at latency 0 those 4 steps of the old plan still execute (the daemon's setting), at
          latency 4 they are exactly the steps that run while inference runs

Boundary jumps: max |a_{k+1} - a_k| over the action dims between consecutive executed steps where
the executing chunk changes (mean over every boundary, max over every episode), against the same
quantity within a chunk. In ensemble mode at latency 0 every step mixes a new chunk in, so every
step counts as a boundary. Default checkpoint: the quickstart's (`robolearn quickstart` writes it).

Writes benchmarks/results/eval_modes.json and eval_modes.md (--out / --table to change).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
MODES = ("receding", "ensemble", "rtc")


def eval_mode(checkpoint: str, mode: str, latency: int, episodes: int, workers: int, out: Path,
              max_steps: int | None) -> dict:
    """One `robolearn eval` run through the CLI; its report.json."""
    cmd = [sys.executable, "-m", "robolearn.cli", "eval", checkpoint, "--mode", mode, "--latency-steps", str(latency),
           "--episodes", str(episodes), "--workers", str(workers), "--videos", "0", "--out", str(out)]
    if max_steps:
        cmd += ["--max-steps", str(max_steps)]
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, cwd=ROOT)
    report = json.loads((out / "report.json").read_text())
    report["cli_wall_s"] = round(time.perf_counter() - t0, 1)
    return report


def row(mode: str, r: dict) -> dict:
    j = r["boundary_jumps"]
    return {
        "mode": mode,
        "latency_steps": r["latency_steps"],
        "success_rate": r["success_rate"],
        "wilson95": [round(x, 3) for x in r["wilson95"]],
        "successes": r["successes"],
        "episodes": r["episodes"],
        "errors": r["errors"],
        "mean_length": r["mean_length"],
        "boundary_jump_mean": round(j["boundary_mean"], 4),
        "boundary_jump_max": round(j["boundary_max"], 4),
        "within_chunk_jump_mean": round(j["within_mean"], 4),
        "n_boundaries": j["n_boundaries"],
        "chunks_predicted": j["chunks"],
        "held_steps": j["held_steps"],
        "env_steps": r["env_steps"],
        "wall_s": r["cli_wall_s"],
    }


def table(rows: list[dict], setup: dict) -> str:
    lines = [
        f"Chunk execution modes on {setup['task']}: `{setup['checkpoint']}`, {setup['episodes']} episodes per mode "
        f"(seeds 100000+), `robolearn eval --mode`, {setup['workers']} workers, {setup['machine']}.",
        f"Command: `{setup['command']}`; load average at the end {setup['loadavg_at_end']}; "
        f"eval wall time {setup['total_wall_s']} s in all.",
        "",
        "| mode | latency (steps) | success (95% CI) | mean length | boundary jump mean / max | within-chunk jump mean "
        "| chunks predicted | wall (s) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        lo, hi = r["wilson95"]
        lines.append(f"| {r['mode']} | {r['latency_steps']} | {r['success_rate']:.2f} ({lo:.2f}-{hi:.2f}) | {r['mean_length']} | "
                     f"{r['boundary_jump_mean']:.3f} / {r['boundary_jump_max']:.3f} | {r['within_chunk_jump_mean']:.3f} | "
                     f"{r['chunks_predicted']} | {r['wall_s']} |")
    lines += ["", "Jumps are max |a(k+1) - a(k)| over the 7 action dims (actions in [-1, 1]); in ensemble mode at "
              "latency 0 every step is a boundary (each step mixes in a new chunk), so it has no within-chunk figure. "
              "Latency N: a chunk starts N steps (N x 50 ms) after its observation; the old plan runs meanwhile. "
              "rtc executes the same actions at latency 0 and 4 (the 4 frozen steps are the policy's inpainted "
              "prefix either way); only where the chunk boundary is counted differs."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", default=str(ROOT / "runs" / "quickstart" / "train" / "checkpoints" / "last"))
    p.add_argument("--episodes", type=int, default=50)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--modes", default=",".join(MODES))
    p.add_argument("--latencies", default="0,4", help="inference latencies in env steps, comma-separated (default 0,4)")
    p.add_argument("--max-steps", type=int, help="cap episodes below the task horizon (quick checks)")
    p.add_argument("--quick", action="store_true", help="2 episodes of 20 steps per mode: a smoke test")
    p.add_argument("--out", type=Path, default=RESULTS / "eval_modes.json")
    p.add_argument("--table", type=Path, default=RESULTS / "eval_modes.md")
    args = p.parse_args(argv)
    if args.quick:
        args.episodes, args.max_steps = 2, 20
    if not (Path(args.checkpoint) / "config.json").is_file():
        sys.exit(f"eval_modes: no checkpoint at {args.checkpoint}; run `robolearn quickstart` first or pass --checkpoint")
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    latencies = [int(x) for x in args.latencies.split(",") if x.strip()]
    cpu = f"{os.cpu_count()}-core {platform.machine()} CPU"
    rows, reports = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        for latency in latencies:
            for mode in modes:
                r = eval_mode(args.checkpoint, mode, latency, args.episodes, args.workers,
                              Path(tmp) / f"{mode}_{latency}", args.max_steps)
                reports[f"{mode}_latency{latency}"] = {k: r[k] for k in (
                    "success_rate", "wilson95", "boundary_jumps", "wall_s", "env_steps_per_s", "startup_s", "mode",
                    "latency_steps", "goal", "method", "task")}
                rows.append(row(mode, r))
                print(json.dumps(rows[-1]), flush=True)
    ckpt, first = Path(args.checkpoint).resolve(), next(iter(reports.values()))
    setup = {"task": first["task"],
             "checkpoint": str(ckpt.relative_to(ROOT) if ckpt.is_relative_to(ROOT) else ckpt),
             "method": first["method"], "episodes": args.episodes, "max_steps": args.max_steps,
             "workers": args.workers, "machine": cpu, "latencies_steps": latencies, "dt_s": 0.05,
             "scheduler": "robolearn.policies.scheduling.ChunkScheduler (the daemon's defaults: ensemble_k 0.01, "
                          "rtc_prefix_s 0.2, rtc_blend_steps 4)",
             "command": " ".join(["python benchmarks/eval_modes.py", *(sys.argv[1:] if argv is None else argv)]),
             "loadavg_at_end": [round(x, 2) for x in os.getloadavg()],
             "total_wall_s": round(sum(r["wall_s"] for r in rows), 1)}
    result = {"benchmark": "eval_modes", "baseline": "receding",
              "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": sys.version.split()[0],
                          "loadavg_at_end": os.getloadavg()},
              "setup": setup, "results": rows, "reports": reports}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    args.table.write_text(table(rows, setup))
    print(table(rows, setup))
    return result


if __name__ == "__main__":
    main()

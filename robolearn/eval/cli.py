"""`robolearn eval`: parallel sim rollouts of a checkpoint; and `robolearn train`, whose options live in
robolearn.train.cli but which is registered here, with the sim evaluator its eval_every=N runs."""

from __future__ import annotations

import argparse
import os

from robolearn.train.cli import register_train


def register(sub: argparse._SubParsersAction) -> None:
    # `robolearn train` is registered here, a layer above training: its eval_every=N runs sim evaluations
    register_train(sub, evaluator=sim_evaluator)
    p = sub.add_parser(
        "eval",
        help="evaluate a policy checkpoint in sim (parallel rollouts, success rate, videos)",
        description="Roll a policy checkpoint out in its robosuite task over fixed seeds, in worker processes "
        "(one env each). Chunks execute through the control daemon's scheduler (--mode), stepped by the sim clock; "
        "a goal-conditioned policy gets its goal from the env (--goal). Writes report.json (success rate with a "
        "95%% Wilson interval, lengths, boundary jumps, per-episode outcomes, env-steps/s), success.png and K mp4 videos.",
    )
    p.add_argument("checkpoint", help="policy checkpoint directory (model.safetensors + config.json + stats.json)")
    p.add_argument("--task", help="task to evaluate on (default: the task the checkpoint was trained on)")
    p.add_argument("--episodes", type=int, default=50, help="number of episodes (default 50)")
    p.add_argument("--seed", type=int, default=100000, help="first seed; episode i uses seed+i (default 100000)")
    p.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1),
                   help="worker processes (default: min(2, cores)); 0 = run the episodes in this process (debugging)")
    p.add_argument("--videos", type=int, default=2, help="record mp4s of the first K episodes (default 2)")
    p.add_argument("--mode", default="receding", metavar="MODE",
                   help="chunk execution, as on the arm: receding (default; n_action_steps of each chunk), ensemble "
                   "(ACT temporal ensembling: predict every step, average the overlapping predictions) or rtc "
                   "(real-time chunking: the committed prefix goes into the policy)")
    p.add_argument("--goal", default="auto", metavar="GOAL",
                   help="goal given to the policy: none, language (the task's instruction), image (final frame of the "
                   "task's scripted expert from the same seed), state (its final low-dim values), or several "
                   "comma-separated; default auto = every modality the checkpoint was trained with (none for most)")
    p.add_argument("--latency-steps", type=int, default=0, metavar="N",
                   help="model inference latency: a chunk predicted at step k starts at step k+N, the steps between "
                   "run the old plan, as on the arm (default 0: instantaneous)")
    p.add_argument("--max-steps", type=int, help="cap episode length below the task horizon")
    p.add_argument("--episode-timeout", type=float, default=600.0, help="seconds before a silent worker counts as hung")
    p.add_argument("--device", default="cpu", help="torch device for the policy (cpu, cuda)")
    p.add_argument("--out", help="output directory (default runs/eval/<task>_<time>)")
    p.add_argument("--strict", action="store_true", help="exit non-zero if any episode errored")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from robolearn.eval.runner import EvalConfig, evaluate

    cfg = EvalConfig(
        checkpoint=args.checkpoint, task=args.task, episodes=args.episodes, seed=args.seed, workers=args.workers,
        videos=args.videos, mode=args.mode, goal=args.goal, latency_steps=args.latency_steps, max_steps=args.max_steps,
        episode_timeout=args.episode_timeout, device=args.device, out=args.out,
    )  # fmt: skip
    r = evaluate(cfg)
    lo, hi = r["wilson95"]
    jumps = r["boundary_jumps"]
    print(f"{r['task']}: success {r['successes']}/{r['episodes']} = {r['success_rate']:.2f} "
          f"(95% CI {lo:.2f}-{hi:.2f}), errors {r['errors']}, mean length {r['mean_length']}, "
          f"{r['env_steps_per_s']} env-steps/s over {r['workers']} workers")
    print(f"mode {r['mode']} (latency {r['latency_steps']} steps), goal {','.join(r['goal']) or 'none'}: "
          f"boundary jump mean {jumps['boundary_mean']:.3f} "
          f"max {jumps['boundary_max']:.3f} (within chunks mean {jumps['within_mean']:.3f})")
    print(f"report: {r['report']}\nplot:   {r['plot']}")
    for v in r["videos"]:
        print(f"video:  {v}")
    return 1 if args.strict and r["errors"] else 0


def sim_evaluator(run, out):
    """robolearn.eval.during_training.checkpoint_evaluator, imported when a run asks for it (rollouts are heavy)."""
    from robolearn.eval.during_training import checkpoint_evaluator

    return checkpoint_evaluator(run, out)

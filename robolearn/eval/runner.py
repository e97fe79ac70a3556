"""Parallel sim evaluation of a policy checkpoint.

Each worker process (started with `spawn`) loads the checkpoint once (`robolearn.policies.load_policy`),
builds one env (one GL context per process, never two) and runs the episodes the parent hands it,
one at a time, over fixed seeds (seed, seed+1, ...). Because the parent assigns every episode, it
always knows which one a worker holds: a worker that dies, or stays silent past
`episode_timeout`, turns exactly that episode into an `error` outcome, and a replacement
runs the rest. Outcomes depend only on the seed, never on which worker ran them.
`workers=0` runs the episodes in this process instead (debugging; a policy class registered
only in this process).

The env is built from what the checkpoint needs: a state policy gets no cameras, an image
policy gets exactly its cameras at its training image size (plus its goal cameras).
Chunks are executed by the daemon's scheduler (`mode`, see robolearn/eval/rollout.py); the
goal (`goal`) comes from the env. The report records both, and the boundary jumps.
"""

from __future__ import annotations

import json
import logging
import multiprocessing as mp
import multiprocessing.connection
import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from robolearn.errors import UserError
from robolearn.eval.metrics import summarize
from robolearn.goal import MODALITIES, GoalConfig
from robolearn.policies.scheduling import MODES

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = {"_image": "rgb", "_depth": "depth", "_pointcloud": "pointcloud"}


@dataclass
class EvalConfig:
    checkpoint: str
    task: str | None = None  # None: the task the checkpoint was trained on
    episodes: int = 50
    seed: int = 100000
    workers: int = 1  # worker processes; 0 = run the episodes in this process
    videos: int = 0
    video_camera: str = "agentview"
    video_size: int = 128
    mode: str = "receding"  # chunk execution: receding | ensemble | rtc (robolearn/policies/scheduling.py)
    goal: str = "auto"  # none | auto (every modality the checkpoint was trained with) | comma-separated modalities
    latency_steps: int = 0  # modelled inference latency in env steps (0: instantaneous; see robolearn/eval/rollout.py)
    max_steps: int | None = None  # cap below the task horizon (quick checks)
    episode_timeout: float = 600.0  # seconds before a worker silent mid-episode counts as hung
    startup_timeout: float = 300.0  # seconds for a worker to load the policy and build its env
    device: str = "cpu"
    out: str | None = None


def read_checkpoint_config(checkpoint: str | os.PathLike) -> dict:
    """config.json of a policy checkpoint, without building the model."""
    from robolearn.files import read_config_json

    path = Path(checkpoint)
    if not path.exists():
        raise UserError(f"{path}: no such checkpoint")
    return read_config_json(path, "policy checkpoint")


def goal_config_of(cfg: dict, checkpoint: str) -> GoalConfig:
    """The checkpoint's goal table (none in checkpoints from before goals: no goal)."""
    from robolearn.config_io import from_dict

    return from_dict(GoalConfig, cfg.get("goal") or {}, f"{checkpoint}/config.json", "goal.")


def resolve_goal(requested: str, trained: GoalConfig, checkpoint: str, task: str) -> list[str]:
    """`--goal` -> the modalities to build for each episode; one line if the checkpoint was not
    trained with one of them, or the task cannot provide it."""
    text = requested.strip().lower()
    if text == "auto":
        return list(trained.modalities)
    if text in ("none", ""):
        return []
    wanted = [m.strip() for m in text.split(",") if m.strip()]
    for m in wanted:
        if m not in MODALITIES:
            raise UserError(f"--goal: unknown goal modality {m!r} (expected none, auto or some of {', '.join(MODALITIES)})")
        if m not in trained.modalities:
            raise UserError(f"--goal {m}: {checkpoint} was trained without {m} goals "
                            f"(its goal modalities: {', '.join(trained.modalities) or 'none'})")
    if {"image", "state"} & set(wanted):
        from robolearn.sim.experts import EXPERTS

        if task not in EXPERTS:
            raise UserError(f"--goal {','.join(wanted)}: goal images and states come from the task's scripted expert, "
                            f"and task {task!r} has none (have {', '.join(sorted(EXPERTS))})")
    return [m for m in MODALITIES if m in wanted]


def env_kwargs_for(cfg: dict) -> tuple[str | None, dict]:
    """(training task, kwargs for robolearn.sim.make) giving the policy exactly the observations it needs."""
    env_info = cfg.get("env") or {}
    task = env_info.get("task")
    recorded = dict(env_info.get("env") or {})
    shapes = cfg.get("obs_shapes") or {}
    cameras, size, depth, cloud = [], None, False, False
    for key in cfg.get("obs_keys") or []:
        for suffix, kind in IMAGE_SUFFIXES.items():
            if key.endswith(suffix):
                cameras.append(key[: -len(suffix)])
                depth |= kind == "depth"
                cloud |= kind == "pointcloud"
                if key in shapes and kind == "rgb":
                    size = int(shapes[key][0])
    kwargs = {
        "cameras": sorted(set(cameras)),
        "image_size": size or int(recorded.get("image_size") or 84),
        "depth": depth,
        "pointcloud": cloud,
    }
    for k in ("robot", "render_mode", "env_kwargs"):
        if recorded.get(k) is not None:
            kwargs[k] = recorded[k]
    return task, kwargs


def add_goal_cameras(env_kwargs: dict, goal: GoalConfig) -> None:
    """Goal images are frames of the goal cameras: the env renders them too, at the goal image size."""
    cameras = [k[: -len("_image")] if k.endswith("_image") else k for k in goal.image_keys]
    if not env_kwargs["cameras"]:
        shapes = [goal.image_shapes[k] for k in goal.image_keys if k in goal.image_shapes]
        env_kwargs["image_size"] = int(shapes[0][0]) if shapes else env_kwargs["image_size"]
    env_kwargs["cameras"] = sorted(set(env_kwargs["cameras"]) | set(cameras))


def check_compatible(env, cfg: dict, checkpoint: str, task: str) -> None:
    """One clear line if the env cannot feed this policy or take its actions."""
    act_dim = env.action_space.shape[0]
    if int(cfg.get("action_dim", -1)) != act_dim:
        raise UserError(f"{checkpoint}: policy action_dim {cfg.get('action_dim')} but task {task!r} takes {act_dim}")
    space = env.observation_space.spaces
    for key in cfg.get("obs_keys") or []:
        if key not in space:
            raise UserError(f"{checkpoint}: policy needs observation {key!r}; task {task!r} provides {sorted(space)}")
        want = list((cfg.get("obs_shapes") or {}).get(key, space[key].shape))
        if list(space[key].shape) != want:
            raise UserError(f"{checkpoint}: observation {key!r} has shape {list(space[key].shape)} in task {task!r}, policy expects {want}")


@dataclass
class Worker:
    """The parent's view of one worker process."""

    process: Any
    jobs: Any  # the parent's queue of (index, seed, video path) for this worker, or None to stop
    results: Any  # the reading end of the worker's own result pipe
    since: float  # when it started, then when its current episode started
    ready: bool = False
    job: tuple | None = None
    eof: bool = False  # its pipe is closed: it is exiting, and waiting on the pipe would return at once


# ---------------------------------------------------------------------- worker process
class EpisodeRunner:
    """One policy and one env, running episodes by seed: in a worker process, or in the parent
    with `workers=0`. Raises UserError when the checkpoint cannot run in this env."""

    def __init__(self, cfg: EvalConfig, task: str, env_kwargs: dict, goal: list[str]):
        from robolearn.eval.rollout import ExecutionConfig
        from robolearn.policies import load_policy
        from robolearn.sim import make

        self.cfg, self.goal = cfg, goal
        ckpt_cfg = read_checkpoint_config(cfg.checkpoint)
        self.goal_cfg = goal_config_of(ckpt_cfg, cfg.checkpoint)
        self.execution = ExecutionConfig(mode=cfg.mode, latency_steps=cfg.latency_steps)
        self.policy = load_policy(cfg.checkpoint, device=cfg.device).eval()
        self.env = make(task, **env_kwargs)
        try:
            check_compatible(self.env, ckpt_cfg, cfg.checkpoint, task)
        except UserError:
            self.env.close()
            raise

    def run(self, seed: int, video_path: str | None = None) -> dict:
        """One episode's outcome; a failing policy or env makes it an `error` outcome (a bad goal
        raises UserError: it would fail every episode)."""
        import numpy as np

        from robolearn.eval.rollout import episode_goal, run_policy_episode
        from robolearn.goal import check_goal

        env, frames, on_frame = self.env, [], None
        if video_path:
            # a state policy's env renders at video size; an image policy's env renders at its
            # training size, so film one of its own cameras
            cam = self.cfg.video_camera if not env.cameras or self.cfg.video_camera in env.cameras else env.cameras[0]

            def on_frame(e, cam=cam):
                frames.append(e.render_camera(cam).copy())

        gc = self.goal_cfg
        try:
            goal = episode_goal(env, seed, self.goal, gc.image_keys, gc.state_keys)
            check_goal(goal, gc, "--goal")
            out = run_policy_episode(env, self.policy, seed, self.execution, goal, self.cfg.max_steps, on_frame)
            out["goal"] = goal.modalities if goal is not None else []
            if video_path and frames:
                import imageio.v2 as imageio

                imageio.mimwrite(video_path, np.stack(frames), fps=int(getattr(env.spec_, "control_freq", 20)),
                                 macro_block_size=1)
                out["video"] = video_path
        except UserError:
            raise
        except Exception as exc:  # the policy or env failed on this episode: report it, keep going
            out = {"seed": int(seed), "success": False, "length": 0, "error": f"{type(exc).__name__}: {exc}"}
        return out

    def close(self) -> None:
        self.env.close()


def _worker(wid: int, cfg: EvalConfig, task: str, env_kwargs: dict, goal: list[str], jobs, results) -> None:
    import torch

    torch.set_num_threads(1)
    try:
        runner = EpisodeRunner(cfg, task, env_kwargs, goal)
    except UserError as exc:
        results.send(("fatal", wid, str(exc)))
        return
    results.send(("ready", wid, None))
    while True:
        job = jobs.get()
        if job is None:
            break
        index, seed, video_path = job
        try:
            out = runner.run(seed, video_path)
        except UserError as exc:
            results.send(("fatal", wid, str(exc)))
            break
        results.send(("done", wid, index, out))
    runner.close()


# ---------------------------------------------------------------------- parent
def evaluate(cfg: EvalConfig, progress: bool = True) -> dict:
    """Run the evaluation; returns the report (also written to <out>/report.json)."""
    if cfg.episodes < 1:
        raise UserError(f"--episodes: expected at least 1, got {cfg.episodes}")
    if cfg.workers < 0:
        raise UserError(f"--workers: expected 0 (in this process) or more, got {cfg.workers}")
    if cfg.mode not in MODES:
        raise UserError(f"--mode: expected one of {', '.join(MODES)}, got {cfg.mode!r}")
    ckpt_cfg = read_checkpoint_config(cfg.checkpoint)
    horizon = int(ckpt_cfg.get("horizon") or 1)
    if not 0 <= cfg.latency_steps < horizon:
        raise UserError(f"--latency-steps: expected 0 to {horizon - 1} (below the policy's horizon), got {cfg.latency_steps}")
    trained_task, env_kwargs = env_kwargs_for(ckpt_cfg)
    task = cfg.task or trained_task
    if not task:
        raise UserError(f"{cfg.checkpoint}: the checkpoint records no task; pass --task")
    from robolearn.sim.suite import get_spec

    get_spec(task)  # unknown task -> UserError before any process starts
    trained_goal = goal_config_of(ckpt_cfg, cfg.checkpoint)
    goal = resolve_goal(cfg.goal, trained_goal, cfg.checkpoint, task)  # before any worker: one line if refused
    if "image" in goal:
        add_goal_cameras(env_kwargs, trained_goal)
    if not env_kwargs["cameras"]:  # a state policy's env renders only for the videos
        env_kwargs["image_size"] = cfg.video_size
    from dataclasses import replace

    from robolearn.sim.gl import offscreen_problem, require_offscreen

    if env_kwargs["cameras"]:  # an image policy cannot act without rendering: one line, before any worker
        require_offscreen(f"evaluating an image policy (cameras {', '.join(env_kwargs['cameras'])})")
    elif cfg.videos and offscreen_problem():  # a state policy renders only for the videos: run without them
        log.warning("videos skipped: %s", offscreen_problem())
        cfg = replace(cfg, videos=0)
    out = Path(cfg.out or Path("runs") / "eval" / f"{task}_{time.strftime('%Y%m%d-%H%M%S')}")
    out.mkdir(parents=True, exist_ok=True)

    seeds = [cfg.seed + i for i in range(cfg.episodes)]
    pending = [(i, s, str(out / f"episode_{s}.mp4") if i < cfg.videos else None) for i, s in enumerate(seeds)]
    pending.reverse()  # pop() hands out the lowest seed first
    ctx = mp.get_context("spawn")
    outcomes: dict[int, dict] = {}
    # Each worker has its own job queue (only the parent writes it) and its own result pipe (only
    # the worker writes it): a worker that dies mid-write can leave a shared queue's cross-process
    # lock held forever, silencing every other worker; a pipe of its own dies with it.
    workers: dict[int, Worker] = {}
    next_id = 0
    failed_starts = 0

    def start_worker() -> None:
        nonlocal next_id
        jobs = ctx.Queue()
        recv, send = ctx.Pipe(duplex=False)
        p = ctx.Process(target=_worker, args=(next_id, cfg, task, env_kwargs, goal, jobs, send), daemon=True)
        p.start()
        send.close()  # the parent keeps only the reading end: EOF once the worker is gone
        workers[next_id] = Worker(p, jobs, recv, time.monotonic())
        next_id += 1

    def assign(w: Worker) -> None:
        """The parent decides who runs what, so it always knows which episode a dead worker held."""
        w.ready = True
        if pending:
            w.job = pending.pop()
            w.since = time.monotonic()
            w.jobs.put(w.job)
        else:
            w.job = None
            w.jobs.put(None)

    def retire(wid: int, why: str) -> None:
        """Stop a dead or silent worker; its episode (if any) is an error; start a replacement."""
        nonlocal failed_starts
        w = workers.pop(wid)
        if w.process.is_alive():
            w.process.kill()
        w.process.join(timeout=5)
        reason = f"worker {why} (exit code {w.process.exitcode})" if why == "crashed" else f"worker {why}"
        if w.job is not None:
            index = w.job[0]
            outcomes[index] = {"seed": seeds[index], "success": False, "length": 0, "error": reason}
            bar.update(1)
            log.warning("episode seed %d: %s", seeds[index], reason)
        elif not w.ready:
            failed_starts += 1
            if failed_starts >= 3:
                raise RuntimeError(f"evaluation workers keep failing to start ({reason})")
        if pending:
            start_worker()

    from tqdm import tqdm

    bar = tqdm(total=cfg.episodes, desc=f"eval {task}", unit="ep", disable=not progress)
    t0 = time.perf_counter()
    if cfg.workers == 0:
        n_workers, t_ready, runner = 0, None, None
        try:
            runner = EpisodeRunner(cfg, task, env_kwargs, goal)
            t_ready = time.perf_counter()
            while pending:
                index, seed, video_path = pending.pop()
                outcomes[index] = runner.run(seed, video_path)
                bar.update(1)
        finally:
            bar.close()
            if runner is not None:
                runner.close()
    else:
        for _ in range(min(cfg.workers, cfg.episodes)):
            start_worker()
        n_workers = len(workers)
        t_ready = None  # when the first worker had loaded its policy and env
        try:
            while len(outcomes) < cfg.episodes:
                by_conn = {w.results: wid for wid, w in workers.items() if not w.eof}
                for conn in mp.connection.wait(list(by_conn), timeout=0.5):
                    wid = by_conn[conn]
                    try:
                        msg = conn.recv()
                    except (EOFError, OSError):
                        workers[wid].eof = True  # gone or going: the health check below retires it once reaped
                        continue
                    kind = msg[0]
                    if kind == "fatal":
                        raise UserError(msg[2])
                    if kind == "ready" and t_ready is None:
                        t_ready = time.perf_counter()
                    if kind == "done":
                        outcomes[msg[2]] = msg[3]
                        bar.update(1)
                        bar.set_postfix(success=f"{sum(o['success'] for o in outcomes.values())}/{len(outcomes)}")
                    assign(workers[wid])  # "ready" or "done": the worker is idle, give it the next episode
                now = time.monotonic()
                for wid, w in list(workers.items()):
                    if not w.process.is_alive():
                        retire(wid, "crashed")
                    elif w.job is not None and now - w.since > cfg.episode_timeout:
                        retire(wid, f"hung (> {cfg.episode_timeout:.0f} s)")
                    elif not w.ready and now - w.since > cfg.startup_timeout:
                        retire(wid, f"did not start (> {cfg.startup_timeout:.0f} s)")
                if not workers and len(outcomes) < cfg.episodes:
                    raise RuntimeError("every evaluation worker exited before the episodes were done")
        finally:
            bar.close()
            for w in workers.values():
                w.jobs.put(None)
            for w in workers.values():
                w.process.join(timeout=10)
                if w.process.is_alive():
                    w.process.kill()
    wall = time.perf_counter() - t0

    ordered = [outcomes[i] for i in range(cfg.episodes)]
    steps = sum(o["length"] for o in ordered)
    report = {
        "task": task,
        "checkpoint": str(cfg.checkpoint),
        "method": ckpt_cfg.get("method"),
        "obs_keys": ckpt_cfg.get("obs_keys"),
        "env_kwargs": env_kwargs,
        "seed_start": cfg.seed,
        **summarize(ordered),
        "wall_s": round(wall, 2),
        "env_steps": steps,
        "env_steps_per_s": round(steps / wall, 1) if wall > 0 else None,
        "startup_s": round(t_ready - t0, 2) if t_ready else None,  # process spawn, imports, policy + env build
        "env_steps_per_s_after_startup": round(steps / (t0 + wall - t_ready), 1) if t_ready else None,
        "workers": n_workers,
        "device": cfg.device,
        "mode": cfg.mode,
        "latency_steps": cfg.latency_steps,
        "goal": goal,
        "boundary_jumps": aggregate_jumps(ordered),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "videos": [o["video"] for o in ordered if o.get("video")],
        "per_episode": ordered,
    }
    write_report(report, out)
    return report


def aggregate_jumps(outcomes: list[dict]) -> dict:
    """Boundary jumps over every episode: the largest, and the mean over every chunk boundary
    (and within chunks), of max |a_k+1 - a_k| between consecutive executed actions."""
    per = [o["boundary_jumps"] for o in outcomes if "boundary_jumps" in o]
    n_b = sum(j["n_boundaries"] for j in per)
    n_w = sum(j.get("n_within", 0) for j in per)
    return {
        "boundary_max": max((j["boundary_max"] for j in per), default=0.0),
        "boundary_mean": sum(j["boundary_mean"] * j["n_boundaries"] for j in per) / n_b if n_b else 0.0,
        "within_max": max((j["within_max"] for j in per), default=0.0),
        "within_mean": sum(j["within_mean"] * j.get("n_within", 0) for j in per) / n_w if n_w else 0.0,
        "n_boundaries": n_b,
        "n_within": n_w,
        "chunks": sum(o.get("chunks", 0) for o in outcomes),
        "held_steps": sum(o.get("held_steps", 0) for o in outcomes),
    }


def write_report(report: dict, out: Path) -> None:
    """report.json and success.png in `out`, atomically."""
    from robolearn.eval.plots import plot_success

    tmp = out / "report.json.tmp"
    tmp.write_text(json.dumps(report, indent=2))
    os.replace(tmp, out / "report.json")
    plot_success([report], out / "success.png")
    report["report"] = str(out / "report.json")
    report["plot"] = str(out / "success.png")

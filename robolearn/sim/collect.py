"""`robolearn collect`: scripted-expert demonstrations into an episode store.

One env per worker process (spawned: a fresh GL context each). The main process
is the only writer: each finished episode is appended whole (`append_episode`
commits by extending `episode_ends` last), so Ctrl-C or SIGKILL keeps every
finished episode and a re-run with a larger N appends from the next seed.

The camera codec (`--image-codec`, robolearn/datasets/codecs.py) is fixed when the store is
created and recorded in it; appending with a different explicit codec is refused.
"""

from __future__ import annotations

import json
import logging
import multiprocessing as mp
import zlib
from dataclasses import asdict, dataclass, field

import numpy as np

from robolearn.errors import UserError

log = logging.getLogger(__name__)


@dataclass
class CollectConfig:
    task: str
    episodes: int
    out: str
    workers: int = 1
    cameras: list[str] | None = None
    image_size: int | None = None
    depth: bool = False
    pointcloud: bool = False  # world-frame XYZ per pixel (H, W, 3) float32, from depth
    keep_failed: bool = False
    seed_start: int = 0
    randomize: bool = True  # expert speed/offset/noise randomness
    extraneous: float = 0.0  # share of episodes with inserted extraneous segments
    demonstrators: dict[str, dict] = field(default_factory=lambda: {"default": {}})
    language_fraction: float = 1.0  # share of episodes that keep their instruction
    # camera codec: "webp:90" for every camera, ["webp:90", "agentview_image=blosc"], or {key: spec}
    # (robolearn/datasets/codecs.py); None = the store default (codecs.DEFAULT_IMAGE_CODEC)
    image_codec: str | list[str] | dict[str, str] | None = None
    progress: bool = True

    def validate(self) -> None:
        if self.episodes <= 0:
            raise UserError(f"--episodes: expected a positive integer, got {self.episodes}")
        if self.workers <= 0:
            raise UserError(f"--workers: expected a positive integer, got {self.workers}")
        if self.image_size is not None and self.image_size <= 0:
            raise UserError(f"--image-size: expected a positive integer, got {self.image_size}")
        for name, frac in (("extraneous", self.extraneous), ("language_fraction", self.language_fraction)):
            if not 0.0 <= frac <= 1.0:
                raise UserError(f"{name}: expected a fraction in [0, 1], got {frac}")
        if not self.demonstrators:
            raise UserError("demonstrators: expected at least one demonstrator")
        self.image_codecs()  # an unknown codec / bad quality / missing library: before anything runs

    def image_codecs(self):
        """`image_codec` in the form EpisodeStore.create takes (None, one spec, or {key | "*": spec})."""
        from robolearn.datasets.codecs import parse_image_codec_options

        return parse_image_codec_options(self.image_codec, "--image-codec")


def env_kwargs(cfg: CollectConfig, dynamics: dict | None = None) -> dict:
    kw = {"depth": cfg.depth, "pointcloud": cfg.pointcloud, "dynamics": dynamics or {}}
    if cfg.cameras is not None:
        kw["cameras"] = tuple(cfg.cameras)
    if cfg.image_size is not None:
        kw["image_size"] = cfg.image_size
    return kw


def _keeps_language(seed: int, fraction: float) -> bool:
    return (zlib.crc32(f"lang{seed}".encode()) % 10_000) / 10_000 < fraction


# ------------------------------------------------------------------ worker side
_ENVS: dict = {}
_CFG: CollectConfig | None = None


def _worker_init(cfg_dict: dict) -> None:
    global _CFG
    import robolearn.sim  # noqa: F401  (GL backend before mujoco)

    _CFG = CollectConfig(**cfg_dict)


def _episode(seed: int):
    from robolearn.sim import make
    from robolearn.sim.conditions import ExtraneousWrapper
    from robolearn.sim.rollout import run_expert

    cfg = _CFG
    names = sorted(cfg.demonstrators)
    demo = names[seed % len(names)]
    if demo not in _ENVS:
        _ENVS[demo] = make(cfg.task, **env_kwargs(cfg, cfg.demonstrators[demo]))
    env = _ENVS[demo]
    rng = np.random.default_rng([seed, 17])
    wrapper = None
    if cfg.extraneous > 0 and rng.random() < cfg.extraneous:
        wrapper = lambda ex: ExtraneousWrapper(ex, rng)  # noqa: E731
    ep = run_expert(env, seed, randomize=cfg.randomize, wrapper=wrapper)
    ep.meta["extraneous_segments"] = int(getattr(ep, "extraneous_segments", 0))
    if cfg.extraneous > 0 and "extraneous" not in ep.data:
        ep.data["extraneous"] = np.zeros(len(ep.data["action"]), np.uint8)
    ep.meta.update(
        demonstrator=demo,
        dynamics=json.dumps(env.dynamics.to_dict(), sort_keys=True),
        instruction=ep.meta["instruction"] if _keeps_language(seed, cfg.language_fraction) else "",
        phases=json.dumps(sorted({int(p) for p in ep.data["phase"]})),
    )
    return ep.data, ep.meta


# ------------------------------------------------------------------ main side
def _check_store_codecs(cfg: CollectConfig, store) -> None:
    """Appending with an explicit --image-codec must match the codecs the store's cameras have."""
    from robolearn.datasets.codecs import LOSSLESS, spec_for_array
    from robolearn.datasets.store import is_image_array

    wanted = cfg.image_codecs()
    if wanted is None:
        return
    have = dict(store.attrs.get("image_codecs") or {})  # format 1: no record, every camera is blosc
    for key in store.keys:
        arr = store.array(key)
        if not is_image_array(arr):
            continue
        want = str(spec_for_array(wanted, key, arr.shape, arr.dtype, "--image-codec"))
        if want != have.get(key, LOSSLESS):
            raise UserError(f"{cfg.out}: store's camera {key} is stored as {have.get(key, LOSSLESS)}, not {want}; "
                            f"append without --image-codec, or convert it with `robolearn data rechunk "
                            f"{cfg.out} --image-codec ...`")


def _open_or_create(cfg: CollectConfig, attrs: dict):
    from robolearn.datasets.store import EpisodeStore, store_exists

    if store_exists(cfg.out):
        store = EpisodeStore.open(cfg.out, mode="a")  # UserError if not a store
        have = store.attrs.get("task")
        if have != cfg.task:
            raise UserError(f"{cfg.out}: store was recorded for task {have!r}, not {cfg.task!r}")
        if store.attrs.get("env", {}).get("cameras") != attrs["env"]["cameras"] or store.attrs.get("env", {}).get(
            "image_size"
        ) != attrs["env"]["image_size"]:
            raise UserError(f"{cfg.out}: store was recorded with env {store.attrs.get('env')}; got {attrs['env']}")
        _check_store_codecs(cfg, store)
        return store
    return EpisodeStore.create(cfg.out, attrs=attrs, image_codecs=cfg.image_codecs())


def _require_rendering(cfg: CollectConfig) -> None:
    """Camera images need an offscreen GL backend: one line saying what is missing, before any worker starts."""
    from robolearn.sim.gl import require_offscreen
    from robolearn.sim.suite import get_spec

    cameras = get_spec(cfg.task).cameras if cfg.cameras is None else cfg.cameras
    if cameras:
        require_offscreen(f"collecting camera images ({', '.join(cameras)})")


def collect(cfg: CollectConfig) -> dict:
    """Collect until the store holds cfg.episodes episodes; returns a summary."""
    from robolearn.sim import make
    from robolearn.sim.experts import EXPERTS, PHASES
    from robolearn.sim.suite import get_spec

    cfg.validate()
    if cfg.task not in EXPERTS:
        get_spec(cfg.task)  # unknown task -> UserError naming the known ones
        raise UserError(f"task: no scripted expert for {cfg.task!r}; have {sorted(EXPERTS)}")
    _require_rendering(cfg)
    probe = make(cfg.task, **env_kwargs(cfg))  # validates cameras / image size before touching the output
    env_attrs = {k: v for k, v in probe.kwargs.items() if k != "dynamics"}
    from robolearn.datasets.codecs import check_codec_keys

    steps = {k: ((1, *sp.shape), sp.dtype) for k, sp in probe.observation_space.spaces.items()}
    check_codec_keys(cfg.image_codecs(), steps, "--image-codec")  # lossy only for RGB cameras of this task
    probe.close()
    del probe
    attrs = {"task": cfg.task, "env": env_attrs, "phase_names": PHASES, "fps": int(get_spec(cfg.task).control_freq),
             "collect": {k: v for k, v in asdict(cfg).items() if k not in ("out", "progress")}}  # fmt: skip
    store = _open_or_create(cfg, attrs)
    have = store.n_episodes
    if have >= cfg.episodes:
        return {"episodes": have, "added": 0, "attempted": 0, "failed": 0}
    seeds_done = store.meta_column("seed") if "seed" in store.meta_fields else np.array([], np.int64)
    attempted_max = int(store.attrs.get("last_seed", -1))
    next_seed = max(cfg.seed_start, attempted_max + 1, int(seeds_done.max()) + 1 if len(seeds_done) else 0)
    summary = {"added": 0, "attempted": 0, "failed": 0}
    from tqdm import tqdm

    bar = tqdm(total=cfg.episodes, initial=have, desc=f"collect {cfg.task}", disable=not cfg.progress, unit="ep")
    ctx = mp.get_context("spawn")
    pool = ctx.Pool(cfg.workers, initializer=_worker_init, initargs=(asdict(cfg),))
    try:
        seeds = iter(range(next_seed, next_seed + 100 * cfg.episodes))
        for data, meta in pool.imap(_episode, seeds):
            summary["attempted"] += 1
            store.update_attrs(last_seed=int(meta["seed"]))
            if not meta["success"]:
                summary["failed"] += 1
                if not cfg.keep_failed:
                    continue
            store.append_episode(data, meta)
            summary["added"] += 1
            bar.update(1)
            if store.n_episodes >= cfg.episodes:
                break
    finally:
        pool.terminate()
        pool.join()
        bar.close()
    store.compute_stats()
    summary["episodes"] = store.n_episodes
    return summary

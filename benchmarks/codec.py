"""Camera codecs side by side on the same scripted Lift episodes, against LeRobot's AV1 videos.

    python benchmarks/codec.py table  [--store S] [--scratch /tmp/codecs] [--specs blosc webp:90 ...]
    python benchmarks/codec.py policy [--store S50] [--steps 1000] [--episodes 50] [--arms blosc webp:90]
    python benchmarks/codec.py render  # only re-write benchmarks/results/codec.md from codec.json

`table`: the first `--episodes` (12) episodes of a lift store collected with two 84x84 cameras
(agentview + wrist; collected once into --scratch if --store is missing) are written into one
new store per camera codec x quality. Per row: camera bytes per frame and store size; PSNR
(aggregate and worst frame) and SSIM (Wang et al. 2004: 11x11 Gaussian window, sigma 1.5, per RGB
channel) of the frames read back against the raw ones; the encode cost `collect` pays (append
time per frame above the lossless store's, and the codec's own encode time); the codec's decode
time per frame from bytes in RAM; and store-backed windows/s (WindowDataset, obs horizon 2,
16-step action windows, batch 64, DataLoader workers 0 and 2) for the lossless store and each
codec's default-quality store. The LeRobot row encodes the same frames the way LeRobot's dataset
code does by default (lerobot-dataset 0.4.4 `encode_video_frames`: libsvtav1, yuv420p, g=2,
crf=30, preset 12, one video per episode and camera, concatenated per camera by stream copy)
through PyAV, and measures the same quality figures on its decoded frames. If
.venv-lerobot and robolearn.datasets.lerobot's exporter are there, the same episodes are also
exported to a LeRobot v3 dataset and LeRobotDataset's windows/s measured in the same run
(benchmarks/lerobot_read.py, its PyAV decode path, workers 0 and 2).

`policy`: an image BC policy on Lift trained on a lossless copy and on a lossy copy of the same
demos (same seed, steps, recipe: policies/lift_bc_image.toml + benchmarks/success.py's CPU image
profile), each evaluated once at the end on the same 50 fixed-seed episodes, Wilson 95% intervals.

Every row records the machine's load average beside its timings; results are merged into
benchmarks/results/codec.json and rendered to codec.md.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
sys.path.insert(0, str(ROOT / "benchmarks"))

CAMERAS = ("agentview_image", "robot0_eye_in_hand_image")
SPECS = ("blosc", "webp:75", "webp:90", "webp:95", "jpeg:85", "jpeg:90", "jpeg:95", "jpegxl:70", "jpegxl:80",
         "jpegxl:90", "avif:50", "avif:60", "avif:70", "jpeg2k:38", "jpeg2k:40", "jpeg2k:45")
LEROBOT_VIDEO = {"vcodec": "libsvtav1", "pix_fmt": "yuv420p", "options": {"g": "2", "crf": "30", "preset": "12"}}
OBS_HORIZON, ACTION_HORIZON, BATCH = 2, 16, 64


def load() -> float:
    return round(os.getloadavg()[0], 2)


# ---------------------------------------------------------------------- quality
def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255.0**2 / max(mse, 1e-12)))


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Mean SSIM over frames and RGB channels (Gaussian 11x11, sigma 1.5, K1=0.01, K2=0.03)."""
    from scipy.ndimage import gaussian_filter

    x, y = a.astype(np.float64), b.astype(np.float64)
    sig = (0, 1.5, 1.5, 0)
    f = lambda z: gaussian_filter(z, sig, truncate=3.5)  # noqa: E731  (radius 5: an 11x11 window)
    mx, my = f(x), f(y)
    vx, vy, cxy = f(x * x) - mx * mx, f(y * y) - my * my, f(x * y) - mx * my
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    return float(s[:, 5:-5, 5:-5].mean())


def quality(raw: dict[str, np.ndarray], got: dict[str, np.ndarray]) -> dict:
    a = np.concatenate([raw[c] for c in CAMERAS])
    b = np.concatenate([got[c] for c in CAMERAS])
    per_frame = [psnr(x, y) for x, y in zip(a, b)]
    return {"psnr_db": round(psnr(a, b), 2), "psnr_min_db": round(min(per_frame), 2),
            "ssim": round(np.mean([ssim(a[i:i + 64], b[i:i + 64]) for i in range(0, len(a), 64)]), 4)}


# ---------------------------------------------------------------------- stores
def ensure_source(args) -> Path:
    if args.store and Path(args.store).exists():
        return Path(args.store)
    from robolearn.sim.collect import CollectConfig, collect

    path = Path(args.store or args.scratch / f"lift{args.episodes}.zarr")
    path.parent.mkdir(parents=True, exist_ok=True)
    collect(CollectConfig(task="lift", episodes=args.episodes, out=str(path), workers=1,
                          cameras=["agentview", "robot0_eye_in_hand"], image_size=84, progress=False))
    return path


def read_episodes(path: Path, n: int) -> tuple[list, list, dict]:
    from robolearn.datasets.store import EpisodeStore

    src = EpisodeStore.open(path)
    if src.n_episodes < n:
        raise SystemExit(f"{path}: has {src.n_episodes} episodes, need {n}")
    eps = [src.get_episode(i) for i in range(n)]
    meta = [src.episode_meta(i) for i in range(n)]
    return eps, meta, src.attrs


def dir_bytes(p: Path) -> int:
    return sum(f.stat().st_size for f in p.rglob("*") if f.is_file())


def write_store(path: Path, spec: str, eps, meta, attrs) -> float:
    """A new store with camera codec `spec` holding `eps`; returns the seconds spent appending."""
    from robolearn.datasets.store import EpisodeStore

    shutil.rmtree(path, ignore_errors=True)
    store = EpisodeStore.create(path, attrs=attrs, image_codecs=spec)
    t0 = time.perf_counter()
    for data, m in zip(eps, meta):
        store.append_episode(data, m)
    return time.perf_counter() - t0


def codec_times(spec: str, frames: np.ndarray, repeats: int = 3) -> tuple[float, float]:
    """The codec's own encode and decode ms per frame (bytes in RAM, no store), best of `repeats` passes."""
    from robolearn.datasets import codecs

    s = codecs.parse_image_codec(spec)
    out = np.empty((1, *frames.shape[1:]), np.uint8)
    enc, dec = [], []
    for _ in range(repeats):  # the fastest pass: the least disturbed by other work on a shared CPU
        t0 = time.perf_counter()
        payloads = [codecs.encode_chunk(s, f) for f in frames]
        t1 = time.perf_counter()
        for p in payloads:
            codecs.decode_chunk(s, p, out.shape, out=out)
        enc.append(t1 - t0)
        dec.append(time.perf_counter() - t1)
    return 1e3 * min(enc) / len(frames), 1e3 * min(dec) / len(frames)


def windows_per_s(path: Path, workers: int, batches: int) -> float:
    import torch

    from robolearn.datasets.sampler import WindowDataset

    ds = WindowDataset(str(path), obs_keys=[*CAMERAS, "proprio"], obs_horizon=OBS_HORIZON, action_horizon=ACTION_HORIZON)
    loader = torch.utils.data.DataLoader(ds, batch_size=BATCH, shuffle=True, num_workers=workers, drop_last=True,
                                         generator=torch.Generator().manual_seed(0))
    it = iter(loader)
    next(it)  # worker start-up and first reads are not throughput
    n, t0 = 0, time.perf_counter()
    for _ in range(batches):
        try:
            next(it)
        except StopIteration:
            it = iter(loader)
            next(it)
        n += BATCH
    return round(n / (time.perf_counter() - t0), 1)


# ---------------------------------------------------------------------- LeRobot's AV1 videos
def av1_encode(frames: np.ndarray, fps: int) -> bytes:
    os.environ.setdefault("SVT_LOG", "1")  # SVT-AV1: errors only (its banner goes to stderr per video)
    import av

    buf = io.BytesIO()
    with av.open(buf, "w", format="mp4") as out:
        stream = out.add_stream(LEROBOT_VIDEO["vcodec"], rate=fps, options=dict(LEROBOT_VIDEO["options"]))
        stream.pix_fmt, stream.height, stream.width = LEROBOT_VIDEO["pix_fmt"], frames.shape[1], frames.shape[2]
        for f in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return buf.getvalue()


def av1_decode(payload: bytes) -> np.ndarray:
    import av

    with av.open(io.BytesIO(payload), "r") as inp:
        return np.stack([fr.to_ndarray(format="rgb24") for fr in inp.decode(video=0)])


def lerobot_video_row(eps, fps: int) -> dict:
    import av

    raw = {c: np.concatenate([e[c] for e in eps]) for c in CAMERAS}
    got, nbytes, t_enc, t_dec = {c: [] for c in CAMERAS}, 0, 0.0, 0.0
    for e in eps:
        for c in CAMERAS:
            t0 = time.perf_counter()
            payload = av1_encode(e[c], fps)
            t1 = time.perf_counter()
            frames = av1_decode(payload)
            t_dec += time.perf_counter() - t1
            t_enc += t1 - t0
            if len(frames) != len(e[c]):
                raise SystemExit(f"AV1 video decoded {len(frames)} frames of {len(e[c])}")
            got[c].append(frames)
            nbytes += len(payload)
    got = {c: np.concatenate(v) for c, v in got.items()}
    n = sum(len(v) for v in raw.values())
    return {"spec": "lerobot av1 (libsvtav1 crf30 g2 yuv420p, per-episode mp4)", "camera_bytes": nbytes,
            "bytes_per_frame": round(nbytes / n, 1), **quality(raw, got), "encode_ms_per_frame": round(1e3 * t_enc / n, 3),
            "decode_ms_per_frame": round(1e3 * t_dec / n, 3), "pyav": av.__version__, "load_avg": load()}


def lerobot_dataset(store: Path, scratch: Path, batches: int, fps: int) -> dict:
    """Export the store to LeRobot v3 (robolearn's exporter, LeRobot's default video encoding) and
    read it with LeRobotDataset in .venv-lerobot: size and windows/s, workers 0 and 2."""
    venv = ROOT / ".venv-lerobot" / "bin" / "python"
    try:
        from robolearn.datasets.lerobot import export_lerobot
    except ImportError as exc:
        return {"skipped": f"robolearn.datasets.lerobot has no exporter here ({exc})"}
    if not venv.exists():
        return {"skipped": ".venv-lerobot missing (bash benchmarks/lerobot_env.sh builds it)"}
    dst = scratch / "lerobot_v3"
    shutil.rmtree(dst, ignore_errors=True)
    export_lerobot(str(store), str(dst), fps=fps)
    videos = dst / "videos"
    row = {"dataset_bytes": dir_bytes(dst), "video_bytes": dir_bytes(videos) if videos.exists() else None}
    for workers in (0, 2):
        cmd = [str(venv), str(ROOT / "benchmarks" / "lerobot_read.py"), str(dst), "--obs-horizon", str(OBS_HORIZON),
               "--action-horizon", str(ACTION_HORIZON), "--batch", str(BATCH), "--workers", str(workers),
               "--batches", str(batches)]
        env = {**os.environ, "HF_HOME": str(scratch / "hf_home")}
        res = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)
        if res.returncode != 0:
            row[f"workers{workers}"] = {"error": (res.stderr.strip().splitlines() or ["?"])[-1]}
            continue
        out = json.loads(res.stdout[res.stdout.index("{"):])
        row[f"workers{workers}"] = {"windows_per_s": round(out["windows_per_s"], 1), "load_avg": out.get("load_avg"),
                                    "lerobot": out.get("lerobot")}
    return row


# ---------------------------------------------------------------------- parts
def run_table(args) -> dict:
    from robolearn.datasets import codecs

    t_start = time.perf_counter()
    src = ensure_source(args)
    eps, meta, attrs = read_episodes(src, args.episodes)
    raw = {c: np.concatenate([e[c] for e in eps]) for c in CAMERAS}
    n_frames = sum(len(v) for v in raw.values())
    fps = int(attrs.get("fps", 20))
    sample = np.concatenate([raw[c][:: max(1, len(raw[c]) // 100)] for c in CAMERAS])  # ~200 frames for codec timing
    write_store(args.scratch / "stores" / "warmup.zarr", "blosc", eps[:1], meta[:1], attrs)  # imports, first-call costs
    rows = []
    for spec in args.specs:
        path = args.scratch / "stores" / f"{spec.replace(':', '_')}.zarr"
        append_s = write_store(path, spec, eps, meta, attrs)
        from robolearn.datasets.store import EpisodeStore

        store = EpisodeStore.open(path)
        got = {c: store.get(c) for c in CAMERAS}
        enc_ms, dec_ms = codec_times(spec, sample)
        cam_bytes = sum(dir_bytes(path / "data" / c) for c in CAMERAS)
        row = {"spec": str(codecs.parse_image_codec(spec)), "store_bytes": store.nbytes_stored(), "camera_bytes": cam_bytes,
               "bytes_per_frame": round(cam_bytes / n_frames, 1), **quality(raw, got),
               "append_ms_per_frame": round(1e3 * append_s / n_frames, 3), "encode_ms_per_frame": round(enc_ms, 3),
               "decode_ms_per_frame": round(dec_ms, 3), "load_avg": load()}
        rows.append(row)
        print(json.dumps(row), flush=True)
    base = next(r for r in rows if r["spec"] == "blosc")
    for r in rows:
        r["collect_extra_ms_per_frame"] = round(r["append_ms_per_frame"] - base["append_ms_per_frame"], 3)
    video = lerobot_video_row(eps, fps)
    print(json.dumps(video), flush=True)
    for r in rows:
        r["x_lerobot_bytes"] = round(r["camera_bytes"] / video["camera_bytes"], 2)
    # windows/s: the lossless store and every codec's default quality, workers 0 and 2, in this run
    windows = []
    defaults = ["blosc"] + [f"{n}:{codecs.LOSSY[n].default}" for n in codecs.LOSSY]
    for spec in [s for s in defaults if s in {r["spec"] for r in rows}]:
        path = args.scratch / "stores" / f"{spec.replace(':', '_')}.zarr"
        w = {"spec": spec}
        for workers in (0, 2):
            w[f"workers{workers}"] = windows_per_s(path, workers, args.batches)
            w[f"load_avg_workers{workers}"] = load()
        windows.append(w)
        print(json.dumps(w), flush=True)
    lerobot = lerobot_dataset(args.scratch / "stores" / "blosc.zarr", args.scratch, args.batches, fps) if args.lerobot else {
        "skipped": "--no-lerobot"}
    print(json.dumps(lerobot), flush=True)
    from success import stamp

    return stamp({"source_store": str(src), "episodes": args.episodes, "frames": n_frames, "cameras": list(CAMERAS),
                  "image_size": int(raw[CAMERAS[0]].shape[1]), "fps": fps, "rows": rows, "lerobot_video": video,
                  "windows": windows, "lerobot_dataset": lerobot, "window": {"obs_horizon": OBS_HORIZON,
                  "action_horizon": ACTION_HORIZON, "batch": BATCH, "batches": args.batches}}, t_start)


def run_timing(args, table: dict) -> dict:
    """Re-time every row's codec alone (encode / decode ms per frame, bytes in RAM), the codecs
    interleaved round by round and each figure the best of `--rounds`: on a shared CPU the one-codec-
    at-a-time passes of `table` catch other work unevenly."""
    eps, _, _ = read_episodes(Path(table["source_store"]), table["episodes"])
    sample = np.concatenate([np.concatenate([e[c] for e in eps])[::6] for c in CAMERAS])  # ~200 frames
    best: dict[str, list[float]] = {}
    loads = []
    for _ in range(args.rounds):
        for row in table["rows"]:
            enc, dec = codec_times(row["spec"], sample, repeats=1)
            old = best.get(row["spec"], [np.inf, np.inf])
            best[row["spec"]] = [min(old[0], enc), min(old[1], dec)]
        loads.append(load())
    for row in table["rows"]:
        row["encode_ms_per_frame"], row["decode_ms_per_frame"] = (round(x, 3) for x in best[row["spec"]])
    table["timing"] = {"command": "python benchmarks/codec.py " + " ".join(sys.argv[1:]), "frames": len(sample),
                       "rounds": args.rounds, "load_avg": loads}
    return table


def run_policy(args) -> dict:
    from robolearn.eval.during_training import checkpoint_evaluator
    from robolearn.stats import wilson_interval
    from robolearn.train.config import load_recipe
    from robolearn.train.run import train
    from success import CPU_PROFILE, IMAGE_PROFILE, stamp

    t_start = time.perf_counter()
    eps, meta, attrs = read_episodes(Path(args.store), args.demos)
    arms = []
    for spec in args.arms:
        t0 = time.perf_counter()
        store = args.scratch / "policy" / f"demos_{spec.replace(':', '_')}.zarr"
        write_store(store, spec, eps, meta, attrs)
        out = args.scratch / "policy" / f"run_{spec.replace(':', '_')}"
        shutil.rmtree(out, ignore_errors=True)
        overrides = [f"dataset={store}", f"out={out}", f"train.steps={args.steps}", f"train.checkpoint_every={args.steps}",
                     f"eval_every={args.steps}", f"eval_episodes={args.eval_episodes}", f"eval_workers={args.workers}",
                     "train.seed=0", *CPU_PROFILE["bc"], *IMAGE_PROFILE, "train.ema_decay=0.99"]  # short run: shorter EMA
        train(load_recipe(ROOT / "policies" / "lift_bc_image.toml", overrides), evaluator=checkpoint_evaluator)
        summary = json.loads((out / "eval_summary.json").read_text())
        last = summary["last"]
        k = round(last["success_rate"] * args.eval_episodes)
        arm = {"spec": spec, "success_rate": last["success_rate"], "successes": k,
               "wilson95": list(wilson_interval(k, args.eval_episodes)), "wall_s": round(time.perf_counter() - t0, 1),
               "load_avg": load(), "overrides": overrides[2:]}
        arms.append(arm)
        print(json.dumps(arm), flush=True)
    lossless = next((a for a in arms if a["spec"] == "blosc"), None)
    for a in arms:
        if lossless is not None and a is not lossless:
            lo, hi = lossless["wilson95"]
            a["within_lossless_interval"] = bool(lo <= a["success_rate"] <= hi)
    return stamp({"task": "lift", "method": "bc", "obs": "image", "demos": args.demos, "train_steps": args.steps,
                  "eval_episodes": args.eval_episodes, "recipe": "policies/lift_bc_image.toml", "arms": arms}, t_start)


# ---------------------------------------------------------------------- results
def merge(part: str, value: dict) -> dict:
    path = RESULTS / "codec.json"
    data = json.loads(path.read_text()) if path.exists() else {}
    data[part] = value
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    tmp.replace(path)
    return data


def render(data: dict) -> str:
    from robolearn.datasets import codecs

    lines = ["# Camera codecs vs LeRobot's AV1 videos (benchmarks/codec.py)", "",
             f"Default camera codec: **{codecs.DEFAULT_IMAGE_CODEC}** (robolearn/datasets/codecs.py).", ""]
    t = data.get("table")
    if t:
        v = t["lerobot_video"]
        lines += [f"`{t['command']}` — {t['episodes']} scripted Lift episodes, {t['frames']} frames "
                  f"({len(t['cameras'])} cameras, {t['image_size']}x{t['image_size']}), {t['machine']}, "
                  f"wall {t['wall_s']} s, load {t['load_avg']} at the end, {t['date']}.", "",
                  "| codec | bytes/frame | x LeRobot AV1 | store MB | PSNR dB (worst frame) | SSIM | encode ms/frame "
                  "| decode ms/frame | load |",
                  "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
        for r in t["rows"]:
            lines.append(f"| {r['spec']} | {r['bytes_per_frame']:.0f} | {r['x_lerobot_bytes']:.2f} | "
                         f"{r['store_bytes'] / 1e6:.2f} | {r['psnr_db']:.1f} ({r['psnr_min_db']:.1f}) | {r['ssim']:.3f} | "
                         f"{r['encode_ms_per_frame']:.2f} | {r['decode_ms_per_frame']:.3f} | {r['load_avg']} |")
        lines.append(f"| LeRobot AV1 (libsvtav1, crf 30, g 2, yuv420p, preset 12; PyAV {v['pyav']}) | "
                     f"{v['bytes_per_frame']:.0f} | 1.00 | - | {v['psnr_db']:.1f} ({v['psnr_min_db']:.1f}) | "
                     f"{v['ssim']:.3f} | {v['encode_ms_per_frame']:.2f} | {v['decode_ms_per_frame']:.3f} | {v['load_avg']} |")
        tm = t.get("timing")
        how = (f"best of {tm['rounds']} rounds with the codecs interleaved (`{tm['command']}`, load "
               f"{min(tm['load_avg'])}-{max(tm['load_avg'])})" if tm else "best of 3 passes")
        lines += ["", f"Encode/decode ms: the codec alone on ~200 frames in RAM, {how} (AV1: whole per-episode videos, "
                  "decode = sequential PyAV decode, timed in the table run). The encode time is what `robolearn collect` pays "
                  "per camera frame; the whole-store append times (`append_ms_per_frame` in codec.json) varied by "
                  "tens of ms between runs at this load and are not shown. The load column is the table run's, when "
                  "bytes and quality were measured (those do not depend on load).", "",
                  "Store-backed windows/s (WindowDataset, obs horizon "
                  f"{t['window']['obs_horizon']}, action horizon {t['window']['action_horizon']}, batch "
                  f"{t['window']['batch']}, {t['window']['batches']} batches, both cameras + proprio):", "",
                  "| store | workers 0 | workers 2 | load |", "| --- | --- | --- | --- |"]
        for w in t["windows"]:
            lines.append(f"| {w['spec']} | {w['workers0']} | {w['workers2']} | {w['load_avg_workers0']} / "
                         f"{w['load_avg_workers2']} |")
        lr = t.get("lerobot_dataset", {})
        if "skipped" in lr:
            lines.append(f"| LeRobotDataset | not run: {lr['skipped']} | | |")
        else:
            cells = []
            for k in ("workers0", "workers2"):
                x = lr.get(k, {})
                cells.append(str(x.get("windows_per_s", x.get("error", "?"))))
            lo = [lr.get(k, {}).get("load_avg") for k in ("workers0", "workers2")]
            lo = " / ".join(str(round(x[0], 2)) if isinstance(x, list) else str(x) for x in lo)
            lines.append(f"| LeRobotDataset (v3 export, {lr.get('dataset_bytes', 0) / 1e6:.2f} MB, PyAV decode) | "
                         f"{cells[0]} | {cells[1]} | {lo} |")
    p = data.get("policy")
    if p:
        lines += ["", f"Policy check: `{p['command']}` — image BC on Lift ({p['recipe']} + benchmarks/success.py's "
                  f"CPU image profile), {p['demos']} demos, {p['train_steps']} steps, {p['eval_episodes']} eval "
                  f"episodes at fixed seeds, last checkpoint; wall {p['wall_s']} s, {p['machine']}.", "",
                  "| store codec | success | Wilson 95% | within lossless interval | wall s | load |",
                  "| --- | --- | --- | --- | --- | --- |"]
        for a in p["arms"]:
            lo, hi = a["wilson95"]
            lines.append(f"| {a['spec']} | {a['success_rate']:.2f} ({a['successes']}/{p['eval_episodes']}) | "
                         f"{lo:.2f}-{hi:.2f} | {a.get('within_lossless_interval', '-')} | {a['wall_s']} | {a['load_avg']} |")
    text = "\n".join(lines) + "\n"
    (RESULTS / "codec.md").write_text(text)
    return text


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("part", choices=["table", "timing", "policy", "render"])
    p.add_argument("--rounds", type=int, default=5, help="timing: interleaved rounds, best of which is kept")
    p.add_argument("--store", help="source lift store with two 84x84 cameras (collected into --scratch if missing)")
    p.add_argument("--scratch", type=Path, default=Path("/tmp/codecs"))
    p.add_argument("--episodes", type=int, default=12, help="table: episodes of --store used")
    p.add_argument("--specs", nargs="+", default=list(SPECS))
    p.add_argument("--batches", type=int, default=30, help="batches timed per windows/s cell")
    p.add_argument("--no-lerobot", dest="lerobot", action="store_false", help="skip the LeRobotDataset export + read")
    p.add_argument("--demos", type=int, default=50, help="policy: demos of --store used")
    p.add_argument("--steps", type=int, default=1000, help="policy: training steps per arm")
    p.add_argument("--eval-episodes", type=int, default=50)
    p.add_argument("--workers", type=int, default=2, help="policy: eval worker processes")
    p.add_argument("--arms", nargs="+", default=None, help="policy: store codecs compared (default blosc + the default)")
    args = p.parse_args(argv)
    args.scratch.mkdir(parents=True, exist_ok=True)
    if args.part == "table":
        data = merge("table", run_table(args))
    elif args.part == "timing":
        data = merge("table", run_timing(args, json.loads((RESULTS / "codec.json").read_text())["table"]))
    elif args.part == "policy":
        from robolearn.datasets import codecs

        args.arms = args.arms or ["blosc", codecs.DEFAULT_IMAGE_CODEC]
        if not args.store:
            p.error("policy: --store (a lift image store with at least --demos episodes) is required")
        data = merge("policy", run_policy(args))
    else:
        data = json.loads((RESULTS / "codec.json").read_text())
    print(render(data))


if __name__ == "__main__":
    main()

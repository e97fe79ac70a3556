"""Does in-domain pretraining help? Three measurements over the same stores (issue 7).

    python benchmarks/pretrain.py stores [--task lift]         # collect the image stores (once)
    python benchmarks/pretrain.py encoders --source task       # pretrain each method's encoder
    python benchmarks/pretrain.py probe                        # linear probe: features -> true state
    python benchmarks/pretrain.py infocon [--task lift]        # InfoCon segments vs the experts' phases
    python benchmarks/pretrain.py downstream --encoder dynamo --source task --demos 10
    python benchmarks/pretrain.py subgoal --task pick_place_can --subgoal none|infocon|oracle --demos 50
    python benchmarks/pretrain.py table [--import FILE]        # re-render the markdown (merging another
                                                               # machine's pretrain.json rows first)

Every step takes --task (lift, or the harder stack / pick_place_can) and --profile (cpu: the budget
below; gpu: the larger variant, full-width ResNet-18 and the policy recipe's own size, run on a GPU
machine by benchmarks/pretrain_gpu.sh).

Every step merges its rows into benchmarks/results/pretrain.json (keyed, so steps can be re-run or
completed over several sessions) and re-renders benchmarks/results/pretrain.md. Each row records the
exact command, the machine, the wall time and the CPU budget it ran under.

Stores (84x84 agentview + eye-in-hand, scripted demos):
  task       the task's demos: lift 200 (shared with benchmarks/success.py's image rows), stack and
             pick_place_can 100. Pretraining and downstream training use episodes 0..49 (downstream
             10-demo runs use 0..9); the probe is fitted on episodes 0..49 and scored on the last 50.
  multitask  the other two of lift / stack / pick_place_can, 40 demos each, without the task (as in
             the inverse-dynamics paper: pretrain on other tasks, then imitate a new one from few demos).

CPU budget (2-core development machine): encoders are the width-16 ResNet-18 layout with spatial-
softmax 64-d features (close to the inverse-dynamics paper's small conv encoder), pretrained for
--steps (default 2000) at batch 32; downstream policies are the image diffusion recipe at CPU size
(UNet [64,128,256]), encoder frozen when pretrained, trained end to end from scratch otherwise,
--policy-steps (default 2000), evaluated on 50 episodes at fixed seeds.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from success import stamp  # benchmarks/ is on sys.path when run as a script

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
METHODS = ["dynamo", "inverse_dynamics", "act_jepa"]
CAMERAS = ["agentview_image", "robot0_eye_in_hand_image"]
TASK_DEMOS = {"lift": 200, "stack": 100, "pick_place_can": 100}  # demos in each task's image store
MULTITASK_DEMOS = 40  # per other task in a multitask store
PRETRAIN_EPISODES = list(range(50))
PROFILES = {
    # 2-core CPU: width-16 ResNet-18 (spatial softmax, 64-d), UNet [64,128,256], batch 32
    "cpu": {"encoder_width": 16, "pretrain_batch": 32, "device": "cpu", "runs": "",
            "policy": ["policy.down_dims=[64,128,256]", "policy.encoder.image_width=16", "train.batch_size=32",
                       "train.lr=1e-3", "train.warmup_steps=100", "train.ema_decay=0.999", "data.in_ram=true",
                       "data.num_workers=0"]},
    # GPU machine: full-width ResNet-18 and the image diffusion recipe's own UNet [256,512,1024], batch 64
    "gpu": {"encoder_width": 64, "pretrain_batch": 64, "device": "cuda", "runs": "gpu",
            "policy": ["train.batch_size=64", "train.lr=3e-4", "train.warmup_steps=200", "train.ema_decay=0.999",
                       "data.in_ram=true", "data.num_workers=0"]},
}


# --- stores ------------------------------------------------------------------------------------------
def stores_dir(scratch: Path) -> Path:
    return scratch / "datasets" / "stores"


def task_store(scratch: Path, task: str) -> Path:
    return stores_dir(scratch) / f"{task}_ph_image.zarr"


def multitask_store(scratch: Path, task: str) -> Path:
    return stores_dir(scratch) / f"multitask_no_{task}_image.zarr"


def probe_episodes(task: str) -> list[int]:
    """The held-out episodes the probe is scored on: the task store's last 50."""
    return list(range(TASK_DEMOS[task] - 50, TASK_DEMOS[task]))


def make_stores(args) -> None:
    from robolearn.datasets.store import AtomicStoreWriter, EpisodeStore
    from robolearn.sim.collect import CollectConfig, collect

    def collect_to(task: str, episodes: int, out: Path) -> None:  # collect completes a store, or leaves a full one
        collect(CollectConfig(task=task, episodes=episodes, out=str(out), workers=args.workers))

    if args.store in ("task", "both"):  # benchmarks/success.py --task lift --obs image makes the same lift store
        collect_to(args.task, TASK_DEMOS[args.task], task_store(args.scratch, args.task))
    dst = multitask_store(args.scratch, args.task)
    if args.store == "task" or dst.exists():
        return
    parts = []
    others = [t for t in TASK_DEMOS if t != args.task]
    for task in others:
        part = stores_dir(args.scratch) / f"{task}_ph_image_{MULTITASK_DEMOS}.zarr"
        collect_to(task, MULTITASK_DEMOS, part)
        parts.append(EpisodeStore.open(part))
    keys = [*CAMERAS, "proprio", "action"]  # the tasks' object states differ in size; the encoders see images
    with AtomicStoreWriter(dst, attrs={"task": "multitask", "tasks": others}) as out:
        for src in parts:
            for i in range(src.n_episodes):
                out.append_episode(src.get_episode(i, keys=keys), src.episode_meta(i))


# --- encoders ---------------------------------------------------------------------------------------
def runs_dir(scratch: Path, profile: str) -> Path:
    return scratch / "runs" / "pretrain_bench" / PROFILES[profile]["runs"]


def encoder_dir(scratch: Path, profile: str, task: str, method: str, source: str) -> Path:
    return runs_dir(scratch, profile) / f"{task}_{method}_{source}" / "encoder"


def pretrain_encoder(method: str, source: str, args) -> dict:
    from robolearn.train.pretrain_run import load_pretrain_recipe, pretrain

    t0 = time.perf_counter()
    prof = PROFILES[args.profile]
    store = task_store(args.scratch, args.task) if source == "task" else multitask_store(args.scratch, args.task)
    out = encoder_dir(args.scratch, args.profile, args.task, method, source).parent
    overrides = [f"dataset={store}", f"out={out}", f"task={args.task}", f"train.steps={args.steps}",
                 f"train.checkpoint_every={args.steps}", f"train.batch_size={prof['pretrain_batch']}",
                 f"pretrain.encoder.image_width={prof['encoder_width']}", "data.in_ram=true", "data.num_workers=0",
                 f"pretrain.obs_keys={json.dumps(CAMERAS)}"]
    if source == "task":
        overrides.append(f"data.episodes={json.dumps(PRETRAIN_EPISODES)}")
    # the lift recipes hold each method's objective settings; dataset/task/width come from the overrides
    res = pretrain(load_pretrain_recipe(ROOT / "policies" / f"lift_{method}_pretrain.toml", overrides))
    return stamp({"task": args.task, "profile": args.profile, "method": method, "source": source, "steps": res.step,
                  "final_loss": float(np.mean(res.losses[-50:])), "encoder": res.outputs["encoder"],
                  "overrides": overrides}, t0)


# --- probe -------------------------------------------------------------------------------------------
def frame_features(encoder, store, episodes: list[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Frozen, eval-mode features of every frame of ``episodes`` (cameras concatenated) and the true
    eef position (proprio[:3]) and object position (object[:3]) at those frames."""
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    encoder = encoder.to(device)
    feats, eef, obj = [], [], []
    with torch.no_grad():
        for e in episodes:
            ep = store.get_episode(e, keys=[*CAMERAS, "proprio", "object"])
            per_cam = [torch.cat([encoder(torch.from_numpy(ep[k][i:i + 128]).to(device)) for i in range(0, len(ep[k]), 128)])
                       for k in CAMERAS]
            feats.append(torch.cat(per_cam, dim=-1).cpu().numpy())
            eef.append(ep["proprio"][:, :3])
            obj.append(ep["object"][:, :3])
    return np.concatenate(feats), np.concatenate(eef), np.concatenate(obj)


def ridge_r2(x_fit, y_fit, x_test, y_test, lam: float = 1e-2) -> float:
    """Closed-form ridge on standardised features; R^2 on the held-out set, averaged over outputs."""
    mu, sd = x_fit.mean(0), x_fit.std(0) + 1e-6
    a, b = (x_fit - mu) / sd, (x_test - mu) / sd
    a, b = np.c_[a, np.ones(len(a))], np.c_[b, np.ones(len(b))]
    w = np.linalg.solve(a.T @ a + lam * len(a) * np.eye(a.shape[1]), a.T @ y_fit)
    resid = ((b @ w - y_test) ** 2).sum(0)
    total = ((y_test - y_test.mean(0)) ** 2).sum(0)
    return float(np.mean(1.0 - resid / total))


def load_image_encoder(run_dir: Path | None, shape: list[int], width: int):
    """The image encoder of the pretraining run at ``run_dir`` (its final EMA weights, the ones it
    exported), or a randomly initialised one of the default pretraining architecture."""
    import torch

    from robolearn.nn.vision import ResNetImageEncoder
    from robolearn.pretrain.base import load_pretrainer, small_encoder

    if run_dir is not None:
        return load_pretrainer(run_dir).encoder.eval()
    torch.manual_seed(0)
    e = small_encoder()
    return ResNetImageEncoder(shape[-1], width, e.image_feature_dim, e.image_pooling, e.num_keypoints,
                              e.crop_size).eval()


def probe(args) -> list[dict]:
    from robolearn.datasets.store import EpisodeStore

    store = EpisodeStore.open(task_store(args.scratch, args.task))
    shape = [int(s) for s in store.array(CAMERAS[0]).shape[1:]]
    rows = []
    for name in ["random", *[f"{m}:{s}" for s in args.sources for m in METHODS]]:
        t0 = time.perf_counter()
        path = None if name == "random" else encoder_dir(args.scratch, args.profile, args.task, *name.split(":"))
        if path is not None and not path.exists():
            print(f"skip {name}: no encoder at {path} (run the encoders step)")
            continue
        enc = load_image_encoder(None if path is None else path.parent, shape, PROFILES[args.profile]["encoder_width"])
        fit = frame_features(enc, store, PRETRAIN_EPISODES)
        test = frame_features(enc, store, probe_episodes(args.task))
        row = {"task": args.task, "profile": args.profile, "encoder": name,
               "eef_pos_r2": ridge_r2(fit[0], fit[1], test[0], test[1]),
               "object_pos_r2": ridge_r2(fit[0], fit[2], test[0], test[2]),
               "fit_frames": len(fit[0]), "test_frames": len(test[0])}
        rows.append(stamp(row, t0))
        print(json.dumps({k: row[k] for k in ("encoder", "eef_pos_r2", "object_pos_r2")}))
    return rows


# --- InfoCon -----------------------------------------------------------------------------------------
def infocon(args) -> dict:
    from robolearn.datasets.store import EpisodeStore, copy_episodes
    from robolearn.pretrain.infocon import fixed_length_segments, segmentation_scores
    from robolearn.train.pretrain_run import load_pretrain_recipe, pretrain

    t0 = time.perf_counter()
    src = EpisodeStore.open(args.scratch / "datasets" / "stores" / f"{args.task}_ph_state.zarr")
    labelled = args.scratch / "runs" / "pretrain_bench" / f"{args.task}_infocon_labelled.zarr"
    if labelled.exists():
        import shutil

        shutil.rmtree(labelled)
    copy_episodes(src, labelled)  # InfoCon writes its labels into the store it trained on: use a copy
    out = args.scratch / "runs" / "pretrain_bench" / f"{args.task}_infocon"
    overrides = [f"dataset={labelled}", f"out={out}", f"task={args.task}", f"train.steps={args.steps}", f"train.checkpoint_every={args.steps}"]
    pretrain(load_pretrain_recipe(ROOT / "policies" / "lift_infocon_pretrain.toml", overrides))
    store = EpisodeStore.open(labelled)
    phase, concept, lengths = store.get("phase"), store.get("concept"), store.episode_lengths
    starts = np.r_[0, np.cumsum(lengths)[:-1]]
    true_k = int(np.median([len(np.unique(phase[a:a + t])) for a, t in zip(starts, lengths)]))
    baseline = fixed_length_segments(lengths, true_k)  # given the true number of phases per demo
    row = {"task": args.task, "episodes": store.n_episodes, "true_phases_per_demo": true_k,
           "concepts_used": int(len(np.unique(concept))),
           "infocon": segmentation_scores(concept, phase, lengths),
           "fixed_length": segmentation_scores(baseline, phase, lengths), "steps": args.steps, "overrides": overrides}
    return stamp(row, t0)


# --- downstream ---------------------------------------------------------------------------------------
def downstream(args) -> dict:
    from robolearn.eval.runner import EvalConfig, evaluate
    from robolearn.train.config import load_recipe
    from robolearn.train.run import train

    t0 = time.perf_counter()
    prof = PROFILES[args.profile]
    source = args.source if args.encoder != "scratch" else "-"
    name = f"{args.task}_{args.encoder}_{args.source}_{args.demos}demos_{args.policy_steps}steps"
    out = runs_dir(args.scratch, args.profile) / "downstream" / name
    # the lift image diffusion recipe, pointed at the task's store (its task key picks the eval env)
    overrides = [f"dataset={task_store(args.scratch, args.task)}", f"out={out}", f"task={args.task}",
                 f"train.steps={args.policy_steps}", f"train.checkpoint_every={args.policy_steps}",
                 f"data.episodes={json.dumps(list(range(args.demos)))}", *prof["policy"]]
    if args.encoder != "scratch":
        enc = encoder_dir(args.scratch, args.profile, args.task, args.encoder, args.source)
        overrides += [f"policy.encoder.pretrained={enc}", "policy.encoder.freeze_pretrained=true"]
    train(load_recipe(ROOT / "policies" / "lift_diffusion_image.toml", overrides))
    report = evaluate(EvalConfig(checkpoint=str(out / "checkpoints" / "last"), episodes=args.episodes,
                                 workers=args.workers, max_steps=args.eval_max_steps, device=prof["device"],
                                 out=str(out / "eval")), progress=False)
    row = {"task": args.task, "profile": args.profile, "encoder": args.encoder, "source": source,
           "demos": args.demos, "policy_steps": args.policy_steps, "episodes": args.episodes,
           "eval_max_steps": args.eval_max_steps, "success_rate": report["success_rate"],
           "wilson95": report["wilson95"], "overrides": overrides}
    return stamp(row, t0)


# --- sub-goal conditioning on InfoCon's key states ------------------------------------------------
SUBGOAL_LABELS = {"none": None, "infocon": "key_state", "oracle": "phase_end"}
BC_PROFILE = ["train.batch_size=64", "train.lr=1e-3", "train.warmup_steps=100", "train.ema_decay=0.999"]  # success.py's


def subgoal(args) -> dict:
    """State BC on the infocon step's labelled store of --task, trained on --demos demos: without
    sub-goals, conditioned on InfoCon's key states, or on the experts' true phase ends (an oracle for
    what perfect key states would give)."""
    from robolearn.datasets.store import EpisodeStore
    from robolearn.eval.runner import EvalConfig, evaluate
    from robolearn.train.config import load_recipe
    from robolearn.train.run import train
    from success import TASK_RECIPE

    t0 = time.perf_counter()
    labelled = args.scratch / "runs" / "pretrain_bench" / f"{args.task}_infocon_labelled.zarr"
    if not labelled.exists():
        raise SystemExit(f"{labelled}: no InfoCon-labelled store (run the infocon step for --task {args.task} first)")
    label = SUBGOAL_LABELS[args.subgoal]
    if label == "phase_end":
        store = EpisodeStore.open(labelled, mode="a")
        if "phase_end" not in store.keys:
            phase = store.get("phase")
            end = np.r_[phase[1:] != phase[:-1], True]
            end[store.episode_ends - 1] = True
            store.write_labels({"phase_end": end})
    out = args.scratch / "runs" / "pretrain_bench" / "subgoal" / f"{args.task}_{args.subgoal}_{args.demos}demos_seed{args.seed}"
    overrides = [f"dataset={labelled}", f"out={out}", f"task={args.task}", f"train.steps={args.policy_steps}",
                 f"train.checkpoint_every={args.policy_steps}", f"data.episodes={json.dumps(list(range(args.demos)))}",
                 f"train.seed={args.seed}", *BC_PROFILE]
    if label:
        overrides += ['policy.subgoal_keys=["state"]', f"policy.subgoal_label={label}"]
    train(load_recipe(ROOT / "policies" / f"{TASK_RECIPE[args.task]}_bc.toml", overrides))
    report = evaluate(EvalConfig(checkpoint=str(out / "checkpoints" / "last"), episodes=args.episodes,
                                 workers=args.workers, out=str(out / "eval")), progress=False)
    row = {"task": args.task, "subgoal": args.subgoal, "demos": args.demos, "seed": args.seed, "policy_steps": args.policy_steps,
           "episodes": args.episodes, "success_rate": report["success_rate"], "wilson95": report["wilson95"],
           "overrides": overrides}
    return stamp(row, t0)


# --- results -----------------------------------------------------------------------------------------
KEYS = {"encoders": ("task", "profile", "method", "source"), "probe": ("task", "profile", "encoder"),
        "downstream": ("task", "profile", "encoder", "source", "demos", "policy_steps"), "infocon": ("task",),
        "subgoal": ("task", "subgoal", "demos", "seed")}


def load_results(path: Path) -> dict:
    data = json.loads(path.read_text()) if path.exists() else {}
    for section in ("encoders", "probe", "downstream"):  # rows from before --task/--profile: lift on the CPU
        for r in data.get(section, []):
            r.setdefault("task", "lift")
            r.setdefault("profile", "cpu")
    for r in data.get("subgoal", []):
        r.setdefault("seed", 0)
    return data


def merge(section: str, rows: list[dict], results: Path) -> dict:
    """Replace ``section``'s rows that share a key with ``rows``; under a lock, since the GPU script
    runs steps in parallel, and written atomically."""
    import fcntl

    path = results / "pretrain.json"
    with open(results / ".pretrain.json.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        data = load_results(path)
        key = KEYS[section]
        new_keys = {tuple(r[k] for k in key) for r in rows}
        data[section] = [r for r in data.get(section, []) if tuple(r[k] for k in key) not in new_keys] + rows
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(data, indent=2) + "\n")
        tmp.replace(path)
    return data


def import_rows(other: Path, results: Path) -> None:
    """Merge the rows another machine's run added (e.g. the GPU machine's pretrain.json)."""
    theirs, ours = load_results(other), load_results(results / "pretrain.json")
    for section, key in KEYS.items():
        seen = {tuple(r[k] for k in key): r for r in ours.get(section, [])}
        rows = [r for r in theirs.get(section, []) if seen.get(tuple(r[k] for k in key)) != r]
        if rows:
            merge(section, rows, results)
            print(f"imported {len(rows)} {section} rows")


BUDGET = {
    "cpu": "2-core CPU budget: width-16 ResNet-18 encoders (spatial softmax, 64-d), pretrained at batch 32; "
           "policy UNet [64,128,256], batch 32.",
    "gpu": "GPU variant: full-width (64) ResNet-18 encoders, pretrained at batch 64; policy UNet "
           "[256,512,1024] (the recipe's own), batch 64.",
}


def render(data: dict, results: Path) -> str:
    out = []
    groups = sorted({(r["profile"], r["task"]) for s in ("probe", "encoders", "downstream") for r in data.get(s, [])},
                    key=lambda g: (g[0] != "cpu", g[1] != "lift", g))
    for profile, task in groups:
        pick = lambda section: [r for r in data.get(section, []) if (r["profile"], r["task"]) == (profile, task)]  # noqa: E731
        held = probe_episodes(task)
        out += [f"## {task}, {profile} profile", "", BUDGET[profile], "",
                f"### Linear probe (frozen features -> true state, R^2 on held-out episodes {held[0]}-{held[-1]})", "",
                "| encoder | eef position R^2 | object position R^2 | wall s |", "| --- | --- | --- | --- |"]
        out += [f"| {r['encoder']} | {r['eef_pos_r2']:.3f} | {r['object_pos_r2']:.3f} | {r['wall_s']} |" for r in pick("probe")]
        out += ["", "### Encoder pretraining runs", "", "| method | source | steps | final loss | wall s | machine |",
                "| --- | --- | --- | --- | --- | --- |"]
        out += [f"| {r['method']} | {r['source']} | {r['steps']} | {r['final_loss']:.4f} | {r['wall_s']} | {r['machine']} |"
                for r in pick("encoders")]
        out += ["", f"### Downstream: image diffusion policy on {task}, encoder frozen when pretrained", "",
                "| encoder | pretrained on | demos | policy steps | eval episodes (max steps) | success (95% CI) | wall s |",
                "| --- | --- | --- | --- | --- | --- | --- |"]
        for r in sorted(pick("downstream"), key=lambda r: (r["policy_steps"], r["demos"], r["encoder"] != "scratch", r["encoder"], r["source"])):
            lo, hi = r["wilson95"]
            cap = r.get("eval_max_steps") or "horizon"
            out.append(f"| {r['encoder']} | {r['source']} | {r['demos']} | {r['policy_steps']} | {r['episodes']} ({cap}) | "
                       f"{r['success_rate']:.2f} ({lo:.2f}-{hi:.2f}) | {r['wall_s']} |")
        out.append("")
    out += ["## InfoCon segments vs the scripted experts' phase labels", "",
            "ARI: adjusted Rand index per demo (mean), and pooled over all steps (concept ids must then also agree",
            "across demos); key-state error: steps from each true phase end to the nearest segment end. The",
            "fixed-length baseline cuts each demo into as many equal segments as it has true phases (median).", "",
            "| task | demos | true phases / demo | concepts used | ARI InfoCon | ARI fixed-length | pooled ARI InfoCon | pooled ARI fixed | key-state error InfoCon | key-state error fixed |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in data.get("infocon", []):
        a, b = r["infocon"], r["fixed_length"]
        out.append(f"| {r['task']} | {r['episodes']} | {r['true_phases_per_demo']} | {r['concepts_used']} | {a['ari']:.3f} | "
                   f"{b['ari']:.3f} | {a['ari_pooled']:.3f} | {b['ari_pooled']:.3f} | {a['key_state_error_steps']:.1f} | "
                   f"{b['key_state_error_steps']:.1f} |")
    out += ["", "## Sub-goal conditioning on InfoCon's key states (state BC, 50 eval episodes)", "",
            "BC whose actions are conditioned on its own prediction of the state at the next key state",
            "(policy.subgoal_keys), the key states taken from InfoCon's labels or from the experts' true",
            "phase ends (oracle), against plain BC; success.py's CPU BC profile.", "",
            "| task | sub-goals | demos | policy steps | seed | success (95% CI) | wall s |",
            "| --- | --- | --- | --- | --- | --- | --- |"]
    for r in sorted(data.get("subgoal", []), key=lambda r: (r["task"], r["demos"], list(SUBGOAL_LABELS).index(r["subgoal"]), r["seed"])):
        lo, hi = r["wilson95"]
        out.append(f"| {r['task']} | {r['subgoal']} | {r['demos']} | {r['policy_steps']} | {r['seed']} | "
                   f"{r['success_rate']:.2f} ({lo:.2f}-{hi:.2f}) | {r['wall_s']} |")
    groups: dict[tuple, list[dict]] = {}
    for r in data.get("subgoal", []):
        groups.setdefault((r["task"], r["demos"], r["subgoal"]), []).append(r)
    if any(len(g) > 1 for g in groups.values()):  # pooled over training seeds
        out += ["", "Pooled over training seeds:", "", "| task | sub-goals | demos | seeds | successes / episodes | rate (95% CI) |",
                "| --- | --- | --- | --- | --- | --- |"]
        from robolearn.eval.metrics import wilson_interval

        for (task, demos, sub), g in sorted(groups.items(), key=lambda kv: (kv[0][0], kv[0][1], list(SUBGOAL_LABELS).index(kv[0][2]))):
            k = sum(round(r["success_rate"] * r["episodes"]) for r in g)
            n = sum(r["episodes"] for r in g)
            lo, hi = wilson_interval(k, n)
            out.append(f"| {task} | {sub} | {demos} | {len(g)} | {k} / {n} | {k / n:.2f} ({lo:.2f}-{hi:.2f}) |")
    text = "\n".join(out) + "\n"
    (results / "pretrain.md").write_text(text)
    return text


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("step", choices=["stores", "encoders", "probe", "infocon", "downstream", "subgoal", "table"])
    p.add_argument("--task", default="lift", choices=sorted(TASK_DEMOS), help="the task imitated (and left out of multitask)")
    p.add_argument("--profile", choices=sorted(PROFILES), default="cpu", help="cpu budget, or the larger gpu variant")
    p.add_argument("--store", choices=["task", "multitask", "both"], default="both", help="stores step: which to make")
    p.add_argument("--methods", default=",".join(METHODS), help="encoders step: comma-separated methods")
    p.add_argument("--source", choices=["task", "multitask"], default="task")
    p.add_argument("--sources", default="task,multitask", help="probe step: which pretraining sources to probe")
    p.add_argument("--steps", type=int, default=2000, help="pretraining steps")
    p.add_argument("--encoder", default="scratch", help="downstream step: scratch or a method name")
    p.add_argument("--subgoal", choices=list(SUBGOAL_LABELS), default="infocon", help="subgoal step: which key states")
    p.add_argument("--seed", type=int, default=0, help="subgoal step: training seed")
    p.add_argument("--demos", type=int, default=50)
    p.add_argument("--policy-steps", type=int, default=2000)
    p.add_argument("--episodes", type=int, default=50)
    p.add_argument("--eval-max-steps", type=int, default=None, help="downstream: cap episodes below the task horizon")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--results", type=Path, default=RESULTS)
    p.add_argument("--import", dest="import_path", type=Path, help="table step: merge this pretrain.json's rows first")
    p.add_argument("--scratch", type=Path, default=ROOT, help="root for datasets/stores and runs/ (default the repo)")
    args = p.parse_args(argv)
    args.sources = [s for s in args.sources.split(",") if s]
    import torch

    torch.set_num_threads(1)
    if args.step == "stores":
        make_stores(args)
    elif args.step == "encoders":
        for m in args.methods.split(","):
            merge("encoders", [pretrain_encoder(m, args.source, args)], args.results)
    elif args.step == "probe":
        merge("probe", probe(args), args.results)
    elif args.step == "infocon":
        merge("infocon", [infocon(args)], args.results)
    elif args.step == "downstream":
        merge("downstream", [downstream(args)], args.results)
    elif args.step == "subgoal":
        merge("subgoal", [subgoal(args)], args.results)
    elif args.import_path is not None:
        import_rows(args.import_path, args.results)
    print(render(load_results(args.results / "pretrain.json"), args.results))


if __name__ == "__main__":
    main()

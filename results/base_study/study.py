"""The base study (issue 18), end to end, from one command: pretraining, probes, tables, plots.

  python results/base_study/study.py --root runs/base_study            # the study (one H200)
  python results/base_study/study.py --root /tmp/bs --tiny             # CPU, minutes: every stage
  python results/base_study/study.py --root runs/base_study --only grid cells   # some stages

Stages, in order (each is skipped when its DONE marker exists, and a probe whose result.json
exists is not rerun, so a killed run continues where it stopped with the same command):

  tokenizer  `walt-probe pretrain` experiments/base_study/pretrain_tokenizer.gin
  iwalt      `walt-probe pretrain` experiments/base_study/pretrain_walt.gin, VARIANT 'image'
  vwalt      the same with VARIANT 'video': identical data, order, steps, batch and seeds
  data       renders the ten analogs' train / val / test splits and scores the trivial
             predictors on val and test (a CPU process started alongside the pretraining)
  grid       block x t grid on objects, motion, depth, point tracks; I-WALT and V-WALT; seed 0
  cells      the ten analogs at each model's cell selected on val (each analog takes its
             family's grid analog: objects for the appearance analogs, depth for pose, point
             tracks for box tracks), readout seeds 0 and 1
  budget     the checkpoints at 5, 10, 20, 26, 50 and 100 % of pretraining at the selected
             cells on objects, motion and point tracks, I and V, seeds 0 and 1
  controls   the pixel floor (RGB tubelets on the latent grid) and the oracle (the renderer's
             ground truth) on the ten analogs, block 0, seeds 0 and 1; at the full scale they
             run beside the pretraining (the data stage's process, `early_controls` workers)
  (recipe)   depth and pose are also probed with the 'geo' readout recipe (RECIPE_TASKS) at
             the selected cells and on the controls: job ids end in _rgeo
  analyze    CSVs, Tables 1-2 (Pearson / Spearman with p-values), plots, tables.md

Every probe is fitted once on train; its readout is scored on val (used only to select cells)
and on test (the reported number). Probes run without Ray: worker processes (--workers) each
take whole groups of probes that share one cache entry (model, checkpoint, analog, t), extract
it once (one backbone pass serves every block of the group) and delete it when done.

Outputs under --root: pretraining runs (tokenizer/, iwalt/, vwalt/), probes/<id>/result.json,
data/trivial.json, results/ (the CSVs, tables, plots: what results/base_study/ commits),
study.log (stage timings), timing.json.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import hashlib
import json
import multiprocessing
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

STAGES = ("tokenizer", "iwalt", "vwalt", "data", "grid", "cells", "budget", "controls", "analyze")
# Readout recipes beside the study's (500 steps, lr 1e-3, warm-up 100; probe.gin). 'geo': twice
# the steps at three times the rate, for the geometry analogs, whose heads on the oracle are not
# converged at the study's rate (results/controls/README.md: depth AbsRel 0.139 at lr 1e-3 x 1,000
# steps vs 0.090 at lr 1e-2 x 300; pose 0.38x -> 0.24x trivial at lr 3e-3 x 1,000). Run at the
# selected cells and on the controls, so the oracle says whether the recipe or the backbone limits.
RECIPE_TASKS = {"geo": ("depth", "pose")}
GRID_TASKS = ("objects", "motion", "depth", "point_tracks")
# Analog -> (gin builder, family grid analog whose selected cell it is probed at).
ANALOGS = {
    "objects": ("SyntheticObjects", "objects"),
    "scenes": ("SyntheticScenes", "objects"),
    "finegrained": ("SyntheticFineGrained", "objects"),
    "appearance": ("SyntheticAppearanceActions", "objects"),
    "appearance_xl": ("SyntheticAppearanceActionsXL", "objects"),
    "motion": ("SyntheticMotionActions", "motion"),
    "depth": ("SyntheticDepth", "depth"),
    "pose": ("SyntheticCameraPose", "depth"),
    "point_tracks": ("SyntheticPointTracks", "point_tracks"),
    "box_tracks": ("SyntheticBoxTracks", "point_tracks"),
}
BUDGET_TASKS = ("objects", "motion", "point_tracks")   # one appearance, motion, point tracks
# The analogs of the study's goal (issue #18: above pixels and trivial on depth, pose and both
# tracking analogs), longest probes first: their cells lead the queue, before the budget study
# and the other analogs' cells, so a deadline cuts those first.
GOAL_TASKS = ("point_tracks", "box_tracks", "depth", "pose")
BUDGET_QUEUE = ("point_tracks", "objects", "motion")
BUDGET_TAGS = ("p005", "p010", "p020", "p026", "p050", "p100")
MODELS = {"I-WALT": "image", "V-WALT": "video"}
CONTROL_MODELS = ("pixels", "oracle")
TRACKING = ("point_tracks", "box_tracks")

# Settings of the two scales. 'full': one H200, about 25 minutes of device time (summary.md). 'tiny': the CPU test of every
# stage (32 x 32 x 9 clips, tiny sizes, a few steps): numbers mean nothing, paths all run.
SCALES = {
    "full": dict(
        # Features stay on the host: 14 workers each holding their splits on the GPU (10-16 GB
        # each) ran an H200 out of memory (results/base_study/logs/probes_first_attempt_oom.log).
        # Tracking heads run eager: under CUDA graphs ('reduce-overhead', worth 8x for the
        # MooG head's chains of small kernels) each captured shape keeps its own memory pool,
        # and run 3's matcher probes reached 28 GB each and ran the GPU out of memory with 8
        # workers (run3/tables.md). The matcher is a few large einsums; --compile_tracking 1
        # restores the graphs.
        pretrain=[], probe=["Probe.feature_residence = 'host'"], grid_blocks=[4, 8, 12], grid_t=[0, 200],
        seeds=[0, 1], budget_seeds=[0], workers=10, compile_tracking=False, render_device="cpu",
        walt_export="walt_40m_{variant}",
        recipes={"geo": ["STEPS = 1000", "PaperOptimizer.lr = 3e-3", "PaperOptimizer.warmup = 100"]},
        # The controls need no pretrained model: they run beside the pretraining, in the data
        # stage's background process, once the analogs are rendered (this many workers).
        early_controls=4),
    "tiny": dict(
        pretrain=["NUM_CLIPS = 12", "NUM_VAL_CLIPS = 4", "IMAGE_SIZE = 32", "NUM_FRAMES = 9",
                  "SyntheticClips.workers = 0", "Pretrain.steps = 4", "Pretrain.batch_size = 2",
                  "Pretrain.warmup = 1", "Pretrain.compile = False", "Pretrain.precision = 'fp32'",
                  "Pretrain.stats_clips = 4", "Pretrain.eval_clips = 4", "Pretrain.sample_steps = 2",
                  "Pretrain.num_samples = 1", "Pretrain.log_every = 1", "Run.device = 'cpu'"],
        pretrain_tok=["Pretrain.tokenizer_size = 'tiny'"],
        pretrain_walt=["Pretrain.walt_size = 'tiny'",
                       "Pretrain.fractions = (0.05, 0.1, 0.2, 0.26, 0.5, 1.0)"],
        probe=["BACKBONE_SIZE = 'tiny'", "TOKENIZER = 'tiny'", "IMAGE_SIZE = 32", "NUM_FRAMES = 9", "NUM_IMAGES = 24", "NUM_IMAGES_EVAL = 8",
               "NUM_CLIPS = 16", "NUM_CLIPS_EVAL = 8", "STEPS = 3", "Probe.batch_size = 8",
               "Probe.eval_batch_size = 8", "PaperOptimizer.warmup = 1", "Run.device = 'cpu'",
               "Backbone.dtype = 'float32'",
               "ATTENTIVE = {'width': 32, 'num_heads': 2}",
               "DEPTH_HEAD = {'qkv_size': 32, 'num_heads': 2, 'mlp_size': 32, 'token_position_bases': 8}",
               "TRACK_HEAD = {'readout': 'matching', 'key_dim': 8, 'hidden': 16, 'window': 0, 'locality': 0.2}"],
        grid_blocks=[0, 2, 4], grid_t=[0, 200], seeds=[0, 1], workers=2, compile_tracking=False,
        render_device="cpu", walt_export="walt_tiny_{variant}",
        recipes={"geo": ["STEPS = 4", "PaperOptimizer.lr = 3e-3"]}, early_controls=0),
}
# 'smoke': the tiny scale on the GPU with the GPU code paths on (compile, CUDA graphs, workers).
SCALES["smoke"] = dict(
    SCALES["tiny"], workers=4, compile_tracking=True,
    pretrain=[b for b in SCALES["tiny"]["pretrain"] if not b.startswith(("Pretrain.compile", "Pretrain.precision", "Run.device"))]
    + ["Pretrain.steps = 20"],
    probe=[b for b in SCALES["tiny"]["probe"] if not b.startswith(("Run.device", "Backbone.dtype"))])


# ----------------------------------------------------------------------------- plumbing

class Study:
    def __init__(self, root: Path, scale: str, workers: int | None, deadline_s: float | None):
        self.root, self.scale = root.resolve(), scale
        self.s = dict(SCALES[scale], analogs=list(ANALOGS), control_models=list(CONTROL_MODELS))
        if workers:
            self.s["workers"] = workers
        self.t0 = time.time()
        self.deadline_s = deadline_s
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / "results").mkdir(exist_ok=True)
        self.log_path = self.root / "study.log"

    def log(self, msg: str) -> None:
        line = f"[{time.strftime('%H:%M:%S')} +{time.time() - self.t0:7.1f}s] {msg}"
        print(line, flush=True)
        with open(self.log_path, "a") as fh:
            fh.write(line + "\n")

    def done(self, stage: str) -> bool:
        return (self.root / "done" / stage).is_file()

    def mark(self, stage: str, seconds: float) -> None:
        (self.root / "done").mkdir(exist_ok=True)
        (self.root / "done" / stage).write_text(f"{seconds:.1f}\n")
        timing_path = self.root / "timing.json"
        timing = json.loads(timing_path.read_text()) if timing_path.is_file() else {}
        timing[stage] = round(seconds, 1)
        write_json(timing_path, timing)

    def out_of_time(self) -> bool:
        return self.deadline_s is not None and time.time() - self.t0 > self.deadline_s

    # --- paths
    def tokenizer_path(self) -> Path:
        return self.root / "tokenizer" / "export" / "tokenizer.safetensors"

    def walt_path(self, model: str, tag: str) -> Path:
        variant = MODELS[model]
        name = self.s["walt_export"].format(variant=variant)
        run = self.root / ("iwalt" if variant == "image" else "vwalt")
        return run / "export" / (f"{name}.safetensors" if tag == "final" else f"{name}_{tag}.safetensors")

    def env(self) -> dict:
        return {**os.environ, "PYTHONUNBUFFERED": "1",
                "WALT_PROBE_SYNTHETIC_CACHE": str(self.root / "synthetic"),
                "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}


def write_json(path: Path, obj) -> None:
    """Atomic JSON write (temp file in the same folder + os.replace)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(obj, indent=1, default=str))
    os.replace(tmp, path)


# ----------------------------------------------------------------------------- pretraining

def pretrain(st: Study, stage: str) -> None:
    """One `walt-probe pretrain` run through the real CLI (resumed if it has checkpoints)."""
    from pretraining.loop import latest_checkpoint
    run_dir = st.root / stage
    if stage == "tokenizer":
        gin_file, extra = "experiments/base_study/pretrain_tokenizer.gin", st.s.get("pretrain_tok", [])
    else:
        gin_file = "experiments/base_study/pretrain_walt.gin"
        variant = "image" if stage == "iwalt" else "video"
        extra = [f"VARIANT = '{variant}'", f"TOKENIZER_CHECKPOINT = '{st.tokenizer_path()}'",
                 *st.s.get("pretrain_walt", [])]
    bindings = [*st.s["pretrain"], *extra, f"Run.output_dir = '{run_dir}'",
                f"SyntheticClips.cache_dir = '{st.root / 'pool'}'"]
    cmd = [sys.executable, "-m", "runners.cli", "pretrain", f"--gin_file={gin_file}"]
    cmd += [f"--gin_bindings={b}" for b in bindings]
    for attempt in ("as configured", "eager (Pretrain.compile = False)"):
        run_cmd = list(cmd)
        if attempt.startswith("eager"):
            run_cmd.append("--gin_bindings=Pretrain.compile = False")
        if latest_checkpoint(run_dir) is not None:
            run_cmd.append("--resume")
        st.log("$ " + " ".join(run_cmd))
        with open(st.root / f"{stage}.log", "a") as fh:
            proc = subprocess.run(run_cmd, cwd=REPO, stdout=fh, stderr=subprocess.STDOUT, env=st.env())
        if not proc.returncode:
            break
        # A compilation failure must not cost the study: the same run, resumed, without it.
        st.log(f"{stage}: failed {attempt} (exit {proc.returncode}); last lines of its log:\n"
               + "".join(open(st.root / f"{stage}.log").readlines()[-15:]))
    if proc.returncode:
        raise SystemExit(f"study: pretraining stage '{stage}' failed (exit {proc.returncode}); see "
                         f"{st.root / (stage + '.log')}")
    rec = json.loads((run_dir / "run.json").read_text())
    st.log(f"{stage}: {rec['step']} steps, {rec['throughput']['steps_per_s']:.2f} steps/s, "
           f"final loss {rec['final_loss_mean_last_100']}, evals {rec['evals'][-1] if rec['evals'] else None}")


def measure_peak(st: Study) -> None:
    """The GPU's dense bf16 matmul rate (benchmarks/pretrain_throughput.py), the MFU denominator."""
    import torch
    if not torch.cuda.is_available() or (st.root / "peak.json").is_file():
        return
    sys.path.insert(0, str(REPO / "benchmarks"))
    from pretrain_throughput import measure_bf16_peak
    peak = measure_bf16_peak()
    write_json(st.root / "peak.json", {"bf16_tflops": peak, "device": torch.cuda.get_device_name(),
                                       "torch": torch.__version__})
    st.log(f"measured bf16 matmul peak: {peak:.0f} TFLOP/s")


# ----------------------------------------------------------------------------- probes

def probe_bindings(st: Study, job: dict) -> list[str]:
    """Gin bindings of one probe job (on top of experiments/base_study/probe.gin)."""
    builder = ANALOGS[job["task"]][0]
    b = [*st.s["probe"], f"TASK = @{builder}()", f"BLOCK = {job['block']}", f"TIMESTEP = {job['t']}",
         f"Run.seed = {job['seed']}", f"Probe.cache_dir = '{st.root / 'cache' / group_key(job)}'",
         f"Probe.cache_blocks = {job['cache_blocks']}", f"RENDER_DEVICE = '{st.s['render_device']}'",
         f"TOKENIZER_CHECKPOINT = '{st.tokenizer_path()}'", *st.s["recipes"].get(job.get("recipe", ""), [])]
    for analog in ANALOGS.values():  # synthetic splits rendered once by the data stage
        b.append(f"{analog[0]}.cache_dir = '{st.root / 'synthetic'}'")
    if job["model"] in MODELS:
        b += [f"VARIANT = '{MODELS[job['model']]}'",
              f"WALT_CHECKPOINT = '{st.walt_path(job['model'], job['ckpt'])}'"]
    elif job["model"] == "pixels":
        b += ["Probe.backbone = @PixelsBackbone()", "PixelsBackbone.mode = 'rgb'"]
    elif job["model"] == "oracle":
        b += ["Probe.backbone = @OracleBackbone()", f"OracleBackbone.analog = '{job['task']}'"]
    if job["task"] in TRACKING and st.s["compile_tracking"]:
        # The tracking heads are chains of small kernels: CUDA graphs make them ~8x faster
        # (benchmarks/results/tracking_readout_speed.md); same head, same init.
        b.append("Probe.compile_head = 'reduce-overhead'")
    return b


def job_id(job: dict) -> str:
    recipe = f"_r{job['recipe']}" if job.get("recipe") else ""
    return f"{job['model']}_{job['ckpt']}_{job['task']}_b{job['block']}_t{job['t']}_s{job['seed']}{recipe}"


def group_key(job: dict) -> str:
    """Jobs sharing one feature-cache entry: same backbone, checkpoint, analog and t."""
    return f"{job['model']}_{job['ckpt']}_{job['task']}_t{job['t']}"


def make_jobs(cells: list[tuple]) -> list[dict]:
    """Jobs from (model, ckpt, task, block, t, seed[, recipe]) tuples; each group (one cache
    entry: a readout recipe shares its features with the study's) caches all its blocks."""
    jobs = [dict(model=m, ckpt=c, task=k, block=b, t=t, seed=s, recipe=r[0] if r else "")
            for m, c, k, b, t, s, *r in cells]
    blocks: dict[str, set] = {}
    for j in jobs:
        blocks.setdefault(group_key(j), set()).add(j["block"])
    for j in jobs:
        j["cache_blocks"] = sorted(blocks[group_key(j)])
        j["id"] = job_id(j)
    return jobs


def score_probe(probe, seed: int, device) -> dict:
    """Fits the readout on train (the engine's fit_readout), then scores it on val and on test.

    The engine's `evaluate` reads the source's 'val' entry; for test the source's val entry is
    swapped for the test split's entry of the same cache (same backbone, t, blocks, noise).
    """
    import torch
    from probing import extract
    from probing import probe as engine
    from walt.training import seed_everything

    gen = seed_everything(seed)
    backbone, task = probe.backbone, probe.task
    device = torch.device(device)
    engine.place_backbone(backbone, device)
    info = engine.backbone_info(backbone)
    block = extract.resolve_block(probe.block, info["num_blocks"])
    head = task.make_head(int(backbone.feature_dim)).to(device)
    source = engine.FeatureSource(probe, block, gen)
    model = engine.compiled(head, probe.compile_head)
    t = time.perf_counter()
    status, error, last = engine.fit_readout(probe, model, source, device)
    scores = {"status": status, "error": error, "final_loss": last, "task_name": task.name,
              "metric": task.metric, "higher_is_better": bool(task.higher_is_better),
              "num_blocks": info["num_blocks"], "block_resolved": block,
              "fingerprint": info.get("fingerprint"), "feature_dim": int(backbone.feature_dim),
              "head_params": sum(p.numel() for p in head.parameters())}
    if status == "ok":
        scores["val"] = engine.evaluate(probe, model, source, device)
        blocks = sorted({block, *extract.valid_blocks(probe.cache_blocks, backbone.num_blocks)})
        test_entry, _ = extract.ensure_probe_entry(probe, "test", blocks)
        source.entries["val"] = test_entry
        source.residence.pop("val", None)
        source.resident.pop("val", None)
        scores["test"] = engine.evaluate(probe, model, source, device)
    scores["readout_s"] = round(time.perf_counter() - t, 2)
    return scores


def run_group(args) -> list[str]:
    """Worker: runs one group's jobs in order (one cache entry), then deletes that cache."""
    root, scale, workers, jobs, deadline = args
    if deadline is not None and time.time() > deadline:
        print(f"probe group {group_key(jobs[0])}: skipped, past the deadline", flush=True)
        return []
    import gin  # noqa: F401
    from runners import configurables  # noqa: F401  registers every gin name
    from runners import gin_setup
    from runners.trial import build_probe

    st = Study(Path(root), scale, workers, None)
    os.environ["WALT_PROBE_SYNTHETIC_CACHE"] = str(st.root / "synthetic")
    # Each worker gets its share of the CPU cores: on the H200 run, 14 workers with torch's
    # default 16 intra-op threads each extracted features at 16 s per batch of 128 clips
    # (results/base_study/summary.md), which points at oversubscribed cores (not yet re-measured).
    import torch
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // max(1, workers)))
    done = []
    for job in jobs:
        out = st.root / "probes" / job["id"]
        if (out / "result.json").is_file():
            continue
        if deadline is not None and time.time() > deadline:   # the group's later probes too
            print(f"probe {job['id']}: skipped, past the deadline", flush=True)
            continue
        t0 = time.time()
        try:
            gin_setup.parse(gin_setup.GinArgs(files=("experiments/base_study/probe.gin",)),
                            probe_bindings(st, job))
            import gin as _gin
            run = _gin.get_configurable("Run")()
            probe = build_probe()
            scores = score_probe(probe, job["seed"], run.torch_device())
        except Exception as err:  # recorded, the study goes on; analyze lists failures
            import traceback
            scores = {"status": "failed", "error": f"{type(err).__name__}: {err}",
                      "traceback": traceback.format_exc()[-3000:]}
        scores.update(job=job, wall_s=round(time.time() - t0, 2))
        write_json(out / "result.json", scores)
        val = scores.get("test", {}).get(scores.get("metric", ""), None)
        print(f"probe {job['id']}: {scores['status']} test {val} ({scores['wall_s']} s)", flush=True)
        done.append(job["id"])
    if jobs:
        shutil.rmtree(st.root / "cache" / group_key(jobs[0]), ignore_errors=True)
    return done


def run_jobs(st: Study, jobs: list[dict], what: str) -> None:
    """Runs the jobs without a result yet, whole groups per worker process (spawned: CUDA)."""
    todo = [j for j in jobs if not (st.root / "probes" / j["id"] / "result.json").is_file()]
    groups: dict[str, list] = {}
    for j in todo:
        groups.setdefault(group_key(j), []).append(j)
    # In submission order (the stages' priority); each group is one cache entry.
    ordered = list(groups.values())
    st.log(f"{what}: {len(todo)} of {len(jobs)} probes to run in {len(ordered)} groups, "
           f"{st.s['workers']} workers")
    if not ordered:
        return
    deadline = None if st.deadline_s is None else st.t0 + st.deadline_s
    workers = st.s["workers"]
    run_pool(st, ordered, workers, deadline)
    # Probes that ran out of device memory while many shared the GPU get one more try with a
    # quarter of the workers (run 3 lost 8 tracking probes to it); the first attempt's record
    # is kept beside the new one (result_attempt1.json).
    again = out_of_memory_groups(st, todo)
    if again and workers > 1:
        for group in again:
            for j in group:
                path = st.root / "probes" / j["id"] / "result.json"
                if path.is_file():
                    os.replace(path, path.with_name("result_attempt1.json"))
        st.log(f"{what}: {sum(map(len, again))} probes in {len(again)} groups ran out of device "
               f"memory; again with {max(1, workers // 4)} workers")
        run_pool(st, again, max(1, workers // 4), deadline)


def run_pool(st: Study, groups: list[list[dict]], workers: int, deadline) -> None:
    """Whole groups per worker process (spawned: CUDA); in this process for one worker."""
    args = [(str(st.root), st.scale, workers, g, deadline) for g in groups]
    if workers <= 1:
        for a in args:
            run_group(a)
        return
    ctx = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(workers, mp_context=ctx) as pool:
        for _ in pool.map(run_group, args):
            pass


OUT_OF_MEMORY = ("out of memory", "OutOfMemoryError")


def out_of_memory_groups(st: Study, jobs: list[dict]) -> list[list[dict]]:
    """The groups (of `jobs`) in which a probe failed for lack of device memory, with their
    failed probes: after an out-of-memory error the same process's later probes can fail in
    other ways (a CUDA-graph pool left broken raises an AssertionError), so every failed
    probe of such a group is retried, and none of a group without one."""
    failed: dict[str, list] = {}
    oom = set()
    for j in jobs:
        path = st.root / "probes" / j["id"] / "result.json"
        if not path.is_file():
            continue
        res = json.loads(path.read_text())
        if res.get("status") == "failed":
            failed.setdefault(group_key(j), []).append(j)
            if any(m in str(res.get("error", "")) for m in OUT_OF_MEMORY):
                oom.add(group_key(j))
    return [failed[g] for g in failed if g in oom]


def load_results(st: Study, jobs: list[dict]) -> list[dict]:
    rows = []
    for j in jobs:
        path = st.root / "probes" / j["id"] / "result.json"
        if path.is_file():
            rows.append(json.loads(path.read_text()))
    return rows


def value(res: dict, split: str):
    if res.get("status") != "ok":
        return None
    return res.get(split, {}).get(res["metric"])


# ----------------------------------------------------------------------------- stages

def data_stage(st: Study) -> None:
    """Renders every analog's splits (cached for the probes) and scores the trivial predictors."""
    from runners import configurables  # noqa: F401
    from runners import gin_setup
    from runners.baseline import task_from_gin
    from tasks import baselines

    os.environ["WALT_PROBE_SYNTHETIC_CACHE"] = str(st.root / "synthetic")
    out = {}
    for name, (builder, _) in ANALOGS.items():
        if name not in st.s["analogs"]:
            continue
        t0 = time.time()
        job = dict(model="I-WALT", ckpt="final", task=name, block=0, t=0, seed=0, cache_blocks=[0])
        bindings = [b for b in probe_bindings(st, job) if not b.startswith(("WALT_CHECKPOINT", "TOKENIZER"))]
        gin_setup.parse(gin_setup.GinArgs(files=("experiments/base_study/probe.gin",)), bindings)
        task = task_from_gin()
        out[name] = {split: baselines.trivial_metrics(task, split=split) for split in ("val", "test")}
        out[name]["sizes"] = {s: len(task.split(s)) for s in ("train", "val", "test")}
        st.log(f"data {name}: {out[name]['sizes']} rendered in {time.time() - t0:.1f} s; trivial "
               f"val {out[name]['val']['value']:.4f} test {out[name]['test']['value']:.4f}")
    write_json(st.root / "data" / "trivial.json", out)


def grid_jobs(st: Study) -> list[dict]:
    return make_jobs([(m, "final", k, b, t, 0) for m in MODELS for k in GRID_TASKS if k in st.s["analogs"]
                      for t in st.s["grid_t"] for b in st.s["grid_blocks"]])


def select_cells(st: Study) -> dict:
    """{model: {grid analog: (block, t)}}: the best val cell of each grid analog, per model."""
    best: dict = {}
    for r in load_results(st, grid_jobs(st)):
        v = value(r, "val")
        if v is None:
            continue
        j = r["job"]
        key = (j["model"], j["task"])
        sign = 1 if r["higher_is_better"] else -1
        if key not in best or sign * v > sign * best[key][0]:
            best[key] = (v, j["block"], j["t"])
    cells = {m: {k: list(best[(m, k)][1:]) for k in GRID_TASKS if (m, k) in best} for m in MODELS}
    write_json(st.root / "results" / "selected_cells.json", cells)
    return cells


def cells_from(st: Study, path: Path) -> dict:
    """The cells an earlier run selected on its val grid (--cells_from), checked and copied to
    results/selected_cells.json with their source named in results/cells_source.json."""
    if not path.is_file():
        raise SystemExit(f"study: --cells_from {path}: no such file (an earlier run's "
                         "results/selected_cells.json)")
    cells = json.loads(path.read_text())
    bad = [f"{m}/{k}: {c!r}" for m, per in cells.items() for k, c in per.items()
           if m not in MODELS or k not in GRID_TASKS or not (isinstance(c, list) and len(c) == 2)]
    if bad or not cells:
        raise SystemExit(f"study: --cells_from {path}: not a selected_cells.json ({', '.join(bad) or 'empty'}); "
                         f"expected {{model: {{grid analog: [block, t]}}}} for models {list(MODELS)}")
    write_json(st.root / "results" / "selected_cells.json", cells)
    write_json(st.root / "results" / "cells_source.json",
               {"cells_from": str(path.resolve()), "sha256": hashlib.sha256(path.read_bytes()).hexdigest()})
    return cells


def cells_jobs(st: Study, cells: dict) -> list[dict]:
    rows = []
    for m in MODELS:
        for name, (_, family) in ANALOGS.items():
            if family in cells.get(m, {}) and name in st.s["analogs"]:
                b, t = cells[m][family]
                rows += [(m, "final", name, b, t, s) for s in st.s["seeds"]]
                rows += [(m, "final", name, b, t, s, r) for r, tasks in RECIPE_TASKS.items()
                         if name in tasks for s in st.s["seeds"]]
    return make_jobs(rows)


def budget_jobs(st: Study, cells: dict) -> list[dict]:
    rows = []
    for m in MODELS:
        for name in BUDGET_TASKS:
            if name in cells.get(m, {}):
                b, t = cells[m][name]
                # A run too short for distinct fraction steps (the tiny scale) lacks some tags.
                # Analysis away from the checkpoints (results copied off the GPU machine) keeps
                # the tags that were probed there.
                roots = [st.root, *([Path(st.s["probes_from"])] if st.s.get("probes_from") else [])]
                tags = [tag for tag in BUDGET_TAGS if tag == "p100" or st.walt_path(m, tag).is_file()
                        or any(any((r / "probes").glob(f"{m}_{tag}_{name}_*/result.json")) for r in roots)]
                rows += [(m, "final" if tag == "p100" else tag, name, b, t, s)
                         for tag in tags for s in st.s.get("budget_seeds", st.s["seeds"])]
    return make_jobs(rows)


def queue_order(stage_jobs: dict[str, list[dict]], measured: frozenset[str] = frozenset()) -> list[dict]:
    """One queue for the stages after the grid, in priority order: the goal analogs' cells
    (longest first, the two models alternating), the budget study (by task, the models
    alternating), the other cells, the controls; a job listed twice (the budget's 100 % checkpoint is a cell) keeps its first place.
    `measured`: ids an earlier run already measured (--replicates_last); those go after every
    other job, in the same order among themselves, so a deadline cuts replicates first."""
    cells = stage_jobs.get("cells", [])
    goal = sorted((j for j in cells if j["task"] in GOAL_TASKS),
                  key=lambda j: (GOAL_TASKS.index(j["task"]), j["seed"], j["recipe"], j["model"]))
    rest = [j for j in cells if j["task"] not in GOAL_TASKS]
    # The budget curves task by task (point tracks, the one that moved in run 5, first), each
    # checkpoint for both models before the next: a deadline leaves whole I / V pairs.
    budget = sorted(stage_jobs.get("budget", []), key=lambda j: (
        BUDGET_QUEUE.index(j["task"]), j["ckpt"] == "final", j["ckpt"], j["seed"], j["model"]))
    jobs = goal + budget + rest + stage_jobs.get("controls", [])
    queue = list({j["id"]: j for j in jobs}.values())
    return [j for j in queue if j["id"] not in measured] + [j for j in queue if j["id"] in measured]


def checkpoint_digest_file(root: Path) -> Path | None:
    """A run's checkpoint digests (device_session.sh pack writes them at the root; a committed
    run keeps them in logs/)."""
    for path in (root / "checkpoints_sha256_device.txt", root / "logs" / "checkpoints_sha256_device.txt"):
        if path.is_file():
            return path
    return None


def checkpoint_digests_of(root: Path) -> dict[str, str]:
    """{path under the run's root: sha256} from its digest file ({} without one)."""
    path = checkpoint_digest_file(root)
    if path is None:
        return {}
    return {name: digest for digest, name in (line.split(None, 1) for line in
                                              path.read_text().split("\n") if line.strip())}


def measured_ids(root: Path) -> frozenset[str]:
    """The probe ids an earlier run (its root: probes/<id>/result.json) measured with status ok."""
    if not (root / "probes").is_dir():
        raise SystemExit(f"study: --replicates_last {root}: no probes/ folder there "
                         "(give the root of an earlier run, e.g. results/base_study/run5)")
    ok = set()
    for path in (root / "probes").glob("*/result.json"):
        if json.loads(path.read_text()).get("status") == "ok":
            ok.add(path.parent.name)
    return frozenset(ok)


def controls_jobs(st: Study, every: bool = False) -> list[dict]:
    """The controls' probes (pixels, oracle) this run's settings name; `every`: all of them."""
    models = CONTROL_MODELS if every else st.s["control_models"]
    analogs = list(ANALOGS) if every else [a for a in st.s["analogs"] if a in st.s.get("control_analogs", ANALOGS)]
    rows = [(m, "none", name, 0, 0, s) for m in models for name in ANALOGS if name in analogs
            for s in st.s["seeds"]]
    rows += [(m, "none", name, 0, 0, s, r) for m in models for r, tasks in RECIPE_TASKS.items()
             for name in tasks if name in analogs for s in st.s["seeds"]]
    return make_jobs(rows)


# ----------------------------------------------------------------------------- analysis

def analyze(st: Study) -> None:
    import analysis
    analysis.write_all(st)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", default="runs/base_study", help="folder of everything the study writes")
    ap.add_argument("--tiny", action="store_true", help="the CPU test scale (every stage, minutes)")
    ap.add_argument("--smoke", action="store_true", help="the tiny scale on the GPU (compile paths on)")
    ap.add_argument("--only", nargs="*", choices=STAGES, help="run only these stages (in study order)")
    ap.add_argument("--workers", type=int, default=None, help="probe worker processes")
    ap.add_argument("--deadline_s", type=float, default=None,
                    help="start no probe stage after this many seconds (analyze always runs)")
    ap.add_argument("--grid_blocks", type=int, nargs="*", default=None)
    ap.add_argument("--grid_t", type=int, nargs="*", default=None)
    ap.add_argument("--parallel_pretrain", type=int, default=1,
                    help="1: pretrain I-WALT and V-WALT as two processes at once (one device)")
    ap.add_argument("--compile_tracking", type=int, default=None,
                    help="1/0: CUDA-graph the tracking heads or not (default: the scale's setting)")
    ap.add_argument("--analogs", nargs="*", choices=list(ANALOGS), default=None,
                    help="only these analogs in every stage (default: all ten)")
    ap.add_argument("--control_models", nargs="*", choices=CONTROL_MODELS, default=None,
                    help="only these control backbones (default: both)")
    ap.add_argument("--control_analogs", nargs="*", choices=list(ANALOGS), default=None,
                    help="only these analogs in the controls stage (default: --analogs)")
    ap.add_argument("--seeds", type=int, nargs="*", default=None, help="readout seeds of cells and controls")
    ap.add_argument("--cells_from", default=None,
                    help="selected_cells.json of an earlier run of the same recipes: probe cells and "
                         "budget there instead of selecting on this run's grid (which then need not run)")
    ap.add_argument("--controls_from", nargs="+", default=None,
                    help="earlier runs' roots (their probes/): analyze shows their control rows "
                         "(pixels, oracle) where this run has none, the first run with an ok "
                         "result winning; marked and named in tables.md")
    ap.add_argument("--probes_from", default=None,
                    help="an earlier run's root: analyze shows its WALT probes this run lacks where "
                         "the backbone is byte-identical (tokenizer and WALT checkpoint sha256 equal "
                         "in both runs' checkpoints_sha256_device.txt), marked and named in tables.md")
    ap.add_argument("--replicates_last", default=None,
                    help="an earlier run's root (its probes/): probes it measured (same id) go to "
                         "the end of the queue, so new measurements come first and a deadline "
                         "cuts the replicates (a second pretraining of the same cells)")
    ap.add_argument("--early_controls", type=int, default=None,
                    help="workers of the controls run beside the pretraining (0: after the cells; "
                         "default: the scale's setting)")
    ap.add_argument("--probe_binding", action="append", default=[],
                    help="extra gin binding for every probe (e.g. 'STEPS = 500')")
    ap.add_argument("--pretrain_binding", action="append", default=[],
                    help="extra gin binding for every pretraining run (e.g. 'Pretrain.steps = 100')")
    args = ap.parse_args(argv)
    scale = "tiny" if args.tiny else "smoke" if args.smoke else "full"
    st = Study(Path(args.root), scale, args.workers, args.deadline_s)
    if args.grid_blocks:
        st.s["grid_blocks"] = args.grid_blocks
    if args.grid_t:
        st.s["grid_t"] = args.grid_t
    st.s["analogs"] = args.analogs or list(ANALOGS)
    st.s["control_models"] = args.control_models or list(CONTROL_MODELS)
    st.s["control_analogs"] = args.control_analogs or list(ANALOGS)
    if args.seeds:
        st.s["seeds"] = args.seeds
    for root in args.controls_from or []:
        if not (Path(root) / "probes").is_dir():
            raise SystemExit(f"study: --controls_from {root}: no probes/ folder there "
                             "(give the root of an earlier run, e.g. results/base_study/run4)")
    if args.controls_from:
        st.s["controls_from"] = [str(root) for root in args.controls_from]
    if args.probes_from:
        for root in (Path(args.probes_from), st.root):
            if not checkpoint_digest_file(root):
                raise SystemExit(f"study: --probes_from: no checkpoints_sha256_device.txt in {root} "
                                 "(nor in its logs/): without both runs' digests no probe can be "
                                 "shown to read the same backbone")
        st.s["probes_from"] = str(args.probes_from)
    if args.replicates_last:
        measured_ids(Path(args.replicates_last))   # a wrong path fails now, not after the pretraining
    if args.early_controls is not None:
        st.s["early_controls"] = args.early_controls
    if args.compile_tracking is not None:
        st.s["compile_tracking"] = bool(args.compile_tracking)
    st.s["probe"] = [*st.s["probe"], *args.probe_binding]
    st.s["pretrain"] = [*st.s["pretrain"], *args.pretrain_binding]
    write_json(st.root / "settings.json", {"argv": sys.argv, "scale": st.scale, "settings": st.s})
    stages = [s for s in STAGES if not args.only or s in args.only]
    st.log(f"study ({st.scale}) stages {stages} under {st.root}")
    os.environ["WALT_PROBE_SYNTHETIC_CACHE"] = str(st.root / "synthetic")
    if args.only and "data" in args.only and set(args.only) <= {"data", "controls"}:
        # The background process of a whole-study run (or by hand): the analogs, then the
        # controls (pixel floor, oracle), which need no pretrained model.
        if not st.done("data"):
            t0 = time.time()
            data_stage(st)
            st.mark("data", time.time() - t0)
        if "controls" in args.only and not st.done("controls"):
            t0 = time.time()
            run_jobs(st, controls_jobs(st), "controls (beside the pretraining)")
            st.mark("controls", time.time() - t0)
            st.log(f"controls: done in {time.time() - t0:.1f} s")
        return 0

    # The analogs render on the CPUs while the GPU pretrains (a separate process); with
    # early_controls > 0 the same process then runs the controls on the GPU beside it.
    data_proc, background = None, ["data"]
    if "data" in stages and not st.done("data"):
        if st.s["early_controls"] and "controls" in stages and not st.done("controls"):
            background.append("controls")
        cmd = [sys.executable, __file__, "--root", str(st.root), "--only", *background]
        cmd += ["--tiny"] if args.tiny else ["--smoke"] if args.smoke else []
        cmd += [f"--probe_binding={b}" for b in args.probe_binding]
        for flag in ("analogs", "control_models", "control_analogs", "seeds"):
            if getattr(args, flag):
                cmd += [f"--{flag}", *map(str, getattr(args, flag))]
        if "controls" in background:
            cmd += ["--workers", str(st.s["early_controls"])]
        data_proc = subprocess.Popen(cmd, cwd=REPO, env=st.env(), stdout=open(st.root / "data.log", "a"),
                                     stderr=subprocess.STDOUT)
        st.log(f"{' + '.join(background)}: in the background (pid {data_proc.pid}, log data.log)")
    measure_peak(st)
    def pretrain_stage(stage):
        t0 = time.time()
        pretrain(st, stage)
        st.mark(stage, time.time() - t0)

    if "tokenizer" in stages and not st.done("tokenizer"):
        pretrain_stage("tokenizer")
    walts = [s for s in ("iwalt", "vwalt") if s in stages and not st.done(s)]
    if args.parallel_pretrain and len(walts) == 2:
        # Two processes on one GPU: their torch.compile runs (CPU, ~150 s each at 40m) overlap,
        # and each model's data, order, steps, batch and seeds stay its own run's (run.json).
        st.log("iwalt and vwalt: pretraining side by side on one device")
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            for f in [pool.submit(pretrain_stage, s) for s in walts]:
                f.result()
    else:
        for stage in walts:
            pretrain_stage(stage)
    def wait_background(marker: str) -> None:
        """Until the background process has marked `marker` done (or exited: then it failed)."""
        while data_proc is not None and not st.done(marker) and data_proc.poll() is None:
            time.sleep(2)
        if data_proc is not None and not st.done(marker):
            raise SystemExit(f"study: the background stage '{marker}' failed (exit "
                             f"{data_proc.wait()}); see {st.root / 'data.log'}")

    if data_proc is not None:
        wait_background("data")
        st.log("data: done")

    if "grid" in stages and not st.done("grid"):
        t0 = time.time()
        run_jobs(st, grid_jobs(st), "grid")
        st.mark("grid", time.time() - t0)
        st.log(f"grid: done in {time.time() - t0:.1f} s")
    # cells, budget and controls in one pool (no idle tail between stages); in that order in
    # the queue, so a deadline cuts the oracle's groups (the last) first.
    later = [s for s in ("cells", "budget", "controls") if s in stages and not st.done(s)
             and not (s in background[1:] and data_proc is not None)]
    if later and st.out_of_time():
        st.log(f"{later}: skipped, past --deadline_s {st.deadline_s}")
    elif later:
        t0 = time.time()
        if args.cells_from:
            cells = cells_from(st, Path(args.cells_from))
            st.log(f"cells from {args.cells_from} (selected on val of that run's grid): {cells}")
        else:
            cells = select_cells(st)
            st.log(f"selected cells (best val, seed 0): {cells}")
        make = {"cells": lambda: cells_jobs(st, cells), "controls": lambda: controls_jobs(st),
                "budget": lambda: budget_jobs(st, cells)}
        measured = measured_ids(Path(args.replicates_last)) if args.replicates_last else frozenset()
        queue = queue_order({s: make[s]() for s in later}, measured)
        if measured:
            st.log(f"replicates last: {sum(j['id'] in measured for j in queue)} of {len(queue)} "
                   f"probes were measured in {args.replicates_last}")
        run_jobs(st, queue, "+".join(later))
        for s in later:
            st.mark(s, time.time() - t0)
        st.log(f"{'+'.join(later)}: done in {time.time() - t0:.1f} s")
    if data_proc is not None and len(background) > 1:
        wait_background(background[-1])
        data_proc.wait()
    if "analyze" in stages:
        t0 = time.time()
        analyze(st)
        st.log(f"analyze: done in {time.time() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))  # analysis.py beside this file
    sys.exit(main())

"""Where the base study's probe stage spends its time, on the study's own components.

The H200 run of 2026-12-01 extracted features at ~12 s per batch of 128 clips per worker
(summary.md), about 50x slower than the ~20 TFLOP of such a batch should take. This script
times each part of one probe with random weights at the study's shapes (40m WALT, 'study'
tokenizer, 64 x 64 x 17, bf16), device synchronised around each part:

  render   the analog's train split (the data stage's job; cached on disk afterwards)
  load     one batch of items from the rendered split (DataLoader, as extraction reads it)
  encode   the tokenizer (route 'frames' for I-WALT, 'clip' for V-WALT)
  walt     the transformer up to the deepest of blocks 4, 8, 12
  write    the cache writer (device -> host float16, serialise, hash, write)
  extract  the whole `ensure_entry` of the train split (clips/s)
  readout  `fit_readout` steps of the task's study head from the cache (ms/step)

and then the same extraction in P concurrent processes (the study's worker layout), to see
whether processes sharing the GPU slow each other down beyond their share.

  python results/base_study/probe_speed.py --out /tmp/probe_speed.md [--clips 256] [--procs 4]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))


def sync():
    import torch
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def build(task: str, variant: str, clips: int, root: Path, extra=()):
    """The study's probe for `task` / `variant` with random weights and `clips` train clips."""
    from runners import configurables  # noqa: F401
    from runners import gin_setup
    from runners.trial import build_probe
    os.environ["WALT_PROBE_SYNTHETIC_CACHE"] = str(root / "synthetic")
    b = [f"NUM_CLIPS = {clips}", f"NUM_CLIPS_EVAL = {max(8, clips // 4)}", f"NUM_IMAGES = {clips}",
         f"NUM_IMAGES_EVAL = {max(8, clips // 4)}", f"TASK = @{task}()", "BLOCK = 8", "TIMESTEP = 200",
         f"Probe.cache_dir = '{root / 'cache' / (task + variant)}'", "Probe.cache_blocks = [4, 8, 12]",
         "TOKENIZER_CHECKPOINT = None", "WALT_CHECKPOINT = None", f"VARIANT = '{variant}'",
         "STEPS = 100", "PaperOptimizer.warmup = 10", *extra]
    if task in ("SyntheticPointTracks", "SyntheticBoxTracks"):
        b.append("Probe.compile_head = 'reduce-overhead'")
    gin_setup.parse(gin_setup.GinArgs(files=("experiments/base_study/probe.gin",)), b)
    return build_probe()


def time_parts(task: str, variant: str, clips: int, root: Path, benchmark_cudnn: bool) -> dict:
    import torch
    from torch.utils.data import DataLoader
    from probing import extract
    from probing import probe as engine
    from walt.training import seed_everything

    torch.backends.cudnn.benchmark = benchmark_cudnn
    row = {"task": task, "variant": variant, "cudnn_benchmark": benchmark_cudnn, "clips": clips}
    t = time.perf_counter()
    probe = build(task, variant, clips, root)
    ds = probe.task.split("train")
    for s in ("val", "test"):
        probe.task.split(s)
    row["render_s"] = round(time.perf_counter() - t, 2)
    bb = probe.backbone
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    engine.place_backbone(bb, device)
    bs = probe.eval_batch_size
    loader = DataLoader(ds, batch_size=bs, shuffle=False)
    t = time.perf_counter()
    batch = next(iter(loader))
    row["load_ms"] = round(1e3 * (time.perf_counter() - t), 1)
    video = batch["video"].to(device)
    seeds = extract.noise_seeds(batch, 0).to(device)
    enc, walt = [], []
    for i in range(4):
        sync(); t = time.perf_counter()
        bb.encode(video)
        sync(); enc.append(time.perf_counter() - t)
        t = time.perf_counter()
        bb.features(video, 200, [4, 8, 12], seeds=seeds)
        sync(); walt.append(time.perf_counter() - t - enc[-1])
    row["batch"] = int(video.shape[0])
    row["encode_ms"] = round(1e3 * statistics.median(enc[1:]), 1)
    row["walt_ms"] = round(1e3 * statistics.median(walt[1:]), 1)
    row["encode_first_ms"] = round(1e3 * enc[0], 1)
    t = time.perf_counter()
    entry, _ = extract.ensure_probe_entry(probe, "train", [4, 8, 12])
    for s in ("val", "test"):
        extract.ensure_probe_entry(probe, s, [4, 8, 12])
    sync()
    row["extract_s"] = round(time.perf_counter() - t, 2)
    n = len(ds) + len(probe.task.split("val")) + len(probe.task.split("test"))
    row["extract_clips_per_s"] = round(n / row["extract_s"], 1)
    gen = seed_everything(0)
    head = probe.task.make_head(int(bb.feature_dim)).to(device)
    source = engine.FeatureSource(probe, 8, gen)
    model = engine.compiled(head, probe.compile_head)
    timings: list = []
    t = time.perf_counter()
    engine.fit_readout(probe, model, source, device, timings=timings)
    row["readout_total_s"] = round(time.perf_counter() - t, 2)
    steady = timings[len(timings) // 2:]
    row["readout_wait_ms"] = round(1e3 * statistics.median(w for w, _ in steady), 2)
    row["readout_step_ms"] = round(1e3 * statistics.median(s for _, s in steady), 2)
    t = time.perf_counter()
    engine.evaluate(probe, model, source, device)
    row["evaluate_s"] = round(time.perf_counter() - t, 2)
    return row


def _one_proc(args) -> float:
    task, variant, clips, root, threads = args
    import torch
    torch.set_num_threads(threads)
    from probing import extract
    probe = build(task, variant, clips, Path(root))
    for s in ("train", "val", "test"):
        probe.task.split(s)
    from probing import probe as engine
    engine.place_backbone(probe.backbone, torch.device("cuda" if torch.cuda.is_available() else "cpu"))
    sync()
    t = time.perf_counter()
    extract.ensure_probe_entry(probe, "train", [4, 8, 12])
    sync()
    return time.perf_counter() - t


def concurrent(task: str, variant: str, clips: int, root: Path, procs: int) -> dict:
    """`procs` processes (spawned, as the study's workers) each extracting its own train split."""
    threads = max(1, (os.cpu_count() or 1) // procs)
    # Render once (shared on disk), then each process extracts into its own cache folder.
    args = [(task, variant, clips, str(root / f"proc{i}"), threads) for i in range(procs)]
    for i in range(procs):
        (root / f"proc{i}").mkdir(parents=True, exist_ok=True)
        os.symlink(root / "synthetic", root / f"proc{i}" / "synthetic")
    ctx = multiprocessing.get_context("spawn")
    t = time.perf_counter()
    with ctx.Pool(procs) as pool:
        per = pool.map(_one_proc, args)
    wall = time.perf_counter() - t
    return {"task": task, "variant": variant, "procs": procs, "threads_each": threads,
            "extract_s_each": [round(x, 2) for x in per],
            "aggregate_clips_per_s": round(procs * clips / max(per), 1), "wall_s": round(wall, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True)
    ap.add_argument("--clips", type=int, default=256)
    ap.add_argument("--procs", type=int, default=4)
    ap.add_argument("--tasks", nargs="*", default=["SyntheticDepth", "SyntheticPointTracks", "SyntheticObjects"])
    args = ap.parse_args()
    import torch
    rows, conc = [], []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for task in args.tasks:
            for variant in ("image", "video"):
                for bench in ((False, True) if task == args.tasks[0] else (True,)):
                    r = time_parts(task, variant, args.clips, root / f"b{int(bench)}", bench)
                    print(json.dumps(r), flush=True)
                    rows.append(r)
        if args.procs > 1:
            c = concurrent(args.tasks[0], "image", args.clips, root / "b1", args.procs)
            print(json.dumps(c), flush=True)
            conc.append(c)
    dev = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
    cols = list(rows[0])
    lines = [f"# Probe stage timing ({dev}, torch {torch.__version__}, {os.cpu_count()} CPUs)", "",
             f"`python results/base_study/probe_speed.py --clips {args.clips} --procs {args.procs}`", "",
             "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(str(r.get(c)) for c in cols) + " |" for r in rows]
    lines += ["", "Concurrent extraction (spawned processes, each its own cache):", ""]
    lines += [f"- {json.dumps(c)}" for c in conc]
    Path(args.out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()

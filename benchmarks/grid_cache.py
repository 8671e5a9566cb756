"""What the feature cache buys: one block x timestep grid of probes, with the cache and without.

  python benchmarks/grid_cache.py [--out benchmarks/results/grid_cache.md]      # CPU, as committed
  python benchmarks/grid_cache.py --size 284m --device cuda --budget_s 240 --out OUT_DIR  # GPU

The default run (no --size) is the committed CPU table below. With --size, the scaled grid
(`scaled_main`): every block 0..L x timesteps {0,100,200,500,900} on the motion task at 17 x 128
x 128 (see scaled_main's docstring).

Runs the same 6 block specs x 3 timesteps = 18 probe trials twice in one process (imports paid
once, trials sequential, so the two wall times compare like for like): first reading
activations from the cache (`Probe.use_cache = True`, one extraction per timestep and split,
shared by every block), then running the backbone on the fly for every batch. Backbone forward
calls are counted by wrapping `WALTBackbone.features`; a *pass* is one sweep over a split, so the
cached grid must cost exactly one pass per timestep and split. Writes a markdown table.

Backbone: `tiny` (random init) on 17-frame 64 x 64 clips of the synthetic motion task
(gin/experiments/smoke_tiny.gin with the clip size set back to the probe's real input). `tiny` has blocks 0..4, so the sixth block spec, the depth
fraction 0.5, resolves to block 2 again; that trial gets its own readout seed.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import gin
import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from probing import probe as engine  # noqa: E402
from runners import gin_setup, trial  # noqa: E402
from backbones.walt import WALTBackbone  # noqa: E402

BLOCKS = [0, 1, 2, 3, 4, 0.5]
TIMESTEPS = [0, 200, 500]
# The probe's real input: 17-frame 64 x 64 clips (latents 5 x 8 x 8), as in the mini-study.
SETTINGS = ["IMAGE_SIZE = 64", "NUM_FRAMES = 17", "SyntheticMotionActions.image_size = 64",
            "SyntheticMotionActions.num_frames = 17", "SyntheticMotionActions.num_train = 16",
            "SyntheticMotionActions.num_val = 8", "STEPS = 10", "Probe.batch_size = 8",
            "Probe.eval_batch_size = 8"]


class CountingFeatures:
    """Counts backbone forward calls and the examples they saw (wraps WALTBackbone.features)."""

    def __init__(self):
        self.calls = 0
        self.examples = 0
        self.inner = WALTBackbone.features

    def __enter__(self):
        counter = self

        def features(backbone, video, t, blocks, seeds=None):
            counter.calls += 1
            counter.examples += int(video.shape[0])
            return counter.inner(backbone, video, t, blocks, seeds=seeds)

        WALTBackbone.features = features
        return self

    def __exit__(self, *exc):
        WALTBackbone.features = self.inner
        return False


def run_grid(use_cache: bool, work: Path) -> dict:
    """All trials of the grid; wall time, forward calls, examples through the backbone, metrics."""
    gin_args = gin_setup.GinArgs(files=(str(gin_setup.DEFAULT_SEARCH_PATH / "experiments" / "smoke_tiny.gin"),))
    values = []
    with CountingFeatures() as count:
        t0 = time.perf_counter()
        for t in TIMESTEPS:
            for i, block in enumerate(BLOCKS):
                m = trial.run_probe(gin_args, [
                    *SETTINGS, f"Probe.block = {block!r}", f"Probe.timestep = {t}", f"Run.seed = {i}",
                    f"Probe.use_cache = {use_cache}", f"Probe.cache_dir = '{work / 'cache'}'",
                    f"Probe.cache_blocks = {BLOCKS!r}",
                    f"Run.output_dir = '{work / ('cached' if use_cache else 'live') / f'b{block}_t{t}'}'"])
                values.append(m.value)
        wall = time.perf_counter() - t0
    return {"wall_s": wall, "calls": count.calls, "examples": count.examples, "values": values,
            "trials": len(values)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=None, help="table file (default benchmarks/results/"
                        "grid_cache.md); with --size a folder that receives grid_cache.md")
    add_scaled_arguments(parser)
    args = parser.parse_args(argv)
    if args.size is not None:
        return scaled_main(args)
    args.out = args.out or str(REPO / "benchmarks" / "results" / "grid_cache.md")
    os.environ.setdefault("WALT_PROBE_SYNTHETIC_CACHE", tempfile.mkdtemp(prefix="walt-synthetic-"))
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        # Render the data and pay imports before timing (both grids then start equal).
        gin_setup.parse(gin_setup.GinArgs(files=(str(gin_setup.DEFAULT_SEARCH_PATH / "experiments" / "smoke_tiny.gin"),)),
                        SETTINGS)
        probe = trial.build_probe()
        n_train, n_val = len(probe.task.split("train")), len(probe.task.split("val"))
        cached = run_grid(True, work)
        live = run_grid(False, work)
    examples_per_pass = n_train + n_val  # one pass = every example of both splits once
    passes = cached["examples"] / examples_per_pass
    ratio = live["wall_s"] / cached["wall_s"]
    same = all((a is None and b is None) or (a is not None and b is not None and math.isfinite(a))
               for a, b in zip(cached["values"], live["values"]))
    lines = [
        "# Feature cache: block x timestep grid with and without the cache",
        "",
        f"Command: `python benchmarks/grid_cache.py` ({time.strftime('%Y-%m-%d')}, {platform.node()}, "
        f"{os.cpu_count()} CPUs visible, torch threads {__import__('torch').get_num_threads()}, "
        f"load average at the end {os.getloadavg()[0]:.1f}).",
        "",
        f"Grid: block specs {BLOCKS} x timesteps {TIMESTEPS} = {cached['trials']} probe trials, `tiny` WALT "
        f"(random init, blocks 0..4; the spec 0.5 is block 2 again with another readout seed), synthetic motion "
        f"task at 17 x 64 x 64, {n_train} train + {n_val} val clips, 10 readout steps of batch 8, one process, "
        f"trials in sequence.",
        "",
        "| | wall time (s) | backbone forward calls | examples through the backbone | passes over train+val |",
        "|---|---|---|---|---|",
        f"| with cache | {cached['wall_s']:.1f} | {cached['calls']} | {cached['examples']} | {passes:g} |",
        f"| without cache | {live['wall_s']:.1f} | {live['calls']} | {live['examples']} | "
        f"{live['examples'] / examples_per_pass:g} |",
        "",
        f"Speed-up: **{ratio:.1f}x** (target >= 4x). Backbone passes with the cache: **{passes:g}** "
        f"(= number of timesteps, {len(TIMESTEPS)}: one extraction per timestep and split serves all "
        f"{len(BLOCKS)} block specs). Every trial finished in both runs: {same}.",
        "",
        "Raw: " + json.dumps({"cached": cached, "live": live}),
        "",
    ]
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    gin_setup.write_text_atomic(Path(args.out), "\n".join(lines))
    print("\n".join(lines[:12]))
    return 0 if ratio >= 4 and passes == len(TIMESTEPS) else 1


# ----------------------------------------------------------------------------- the scaled grid

SCALED_TIMESTEPS = [0, 100, 200, 500, 900]
FEATURE_BYTES = 2  # float16 cache


def add_scaled_arguments(parser) -> None:
    g = parser.add_argument_group("scaled grid (--size)")
    g.add_argument("--size", default=None, help="WALT size with random weights (tiny, small, 284m, ...)")
    g.add_argument("--tokenizer", default=None, help="tokenizer size (default: the size's gin file)")
    g.add_argument("--device", default="auto")
    g.add_argument("--dtype", default="bfloat16")
    g.add_argument("--image_size", type=int, default=128)
    g.add_argument("--num_frames", type=int, default=17)
    g.add_argument("--timesteps", type=int, nargs="+", default=SCALED_TIMESTEPS)
    g.add_argument("--head", choices=["narrow", "paper"], default="narrow")
    g.add_argument("--batch", type=int, default=32, help="readout batch size (eval/extract: 2x)")
    g.add_argument("--budget_s", type=float, default=240.0, help="the whole benchmark's target time")
    g.add_argument("--clips", type=int, default=None, help="train+val clips (default: from the budget)")
    g.add_argument("--steps", type=int, default=None, help="readout steps (default: from the budget)")
    g.add_argument("--naive_trials", type=int, default=None,
                   help="naive trials measured, the rest extrapolated (default: from the budget)")
    g.add_argument("--max_cache_gb", type=float, default=20.0, help="disk cap of one grid's cache")
    g.add_argument("--compile", default="False", help="Backbone.compile (False, True, walt, ...)")


def _scaled_setup(args, work: Path):
    """(gin files, base bindings) of one probe of the scaled grid (every trial adds its point)."""
    gin_dir = gin_setup.DEFAULT_SEARCH_PATH
    files = [str(gin_dir / "backbones" / f"{args.size}.gin"),
             str(gin_dir / "tasks" / "synthetic" / "motion_ssv2.gin"),
             str(gin_dir / "experiments" / "probe_base.gin")]
    if args.head == "narrow":
        files.append(str(gin_dir / "experiments" / "cpu_heads.gin"))
    compile_value = args.compile if args.compile in ("True", "False") else repr(args.compile)
    bindings = ["WALT_CHECKPOINT = None", "TOKENIZER_CHECKPOINT = None",
                f"IMAGE_SIZE = {args.image_size}", f"NUM_FRAMES = {args.num_frames}",
                f"SyntheticMotionActions.image_size = {args.image_size}",
                f"SyntheticMotionActions.num_frames = {args.num_frames}",
                f"Backbone.dtype = '{args.dtype}'", f"Backbone.device = '{args.device}'",
                f"Backbone.compile = {compile_value}", f"Run.device = '{args.device}'",
                f"Probe.batch_size = {args.batch}", f"Probe.eval_batch_size = {2 * args.batch}",
                "Probe.log_every = 50"]
    if args.tokenizer:
        bindings.append(f"TOKENIZER = '{args.tokenizer}'")
    return files, bindings


def _calibrate(args, files, bindings) -> dict:
    """Per-clip backbone pass time (all blocks captured) and per-step readout time, on random
    inputs (no data needed), plus the model's shape: what sizes the run to the budget."""
    gin_setup.parse(gin_setup.GinArgs(files=tuple(files)), [*bindings, "SyntheticMotionActions.num_train = 1",
                                                           "SyntheticMotionActions.num_val = 1"])
    t0 = time.perf_counter()
    backbone = gin.get_configurable("Backbone")()
    build_s = time.perf_counter() - t0
    device = gin.get_configurable("Run")().torch_device()
    trial.place_backbone(backbone, device)
    L, D = int(backbone.num_blocks), int(backbone.feature_dim)
    b = 2 * args.batch
    video = torch.randint(0, 256, (b, args.num_frames, args.image_size, args.image_size, 3), dtype=torch.uint8)
    blocks = list(range(L + 1))
    feats = backbone.features(video, 200, blocks, seeds=torch.arange(b))  # warm-up (and compile)
    shape = tuple(feats[0].shape[1:])
    del feats
    engine._sync(device)
    t0 = time.perf_counter()
    feats = backbone.features(video, 200, blocks, seeds=torch.arange(b))
    {k: v.to("cpu", torch.float16) for k, v in feats.items()}  # the cache's copy to the host
    engine._sync(device)
    pass_s = (time.perf_counter() - t0) / b
    del feats
    # Readout steps on random features of the real shape.
    task = gin.get_configurable("SyntheticMotionActions")()
    task_head = task.make_head(D).to(device)
    opt = torch.optim.AdamW(task_head.parameters(), lr=1e-4)
    x = torch.randn(args.batch, *shape, device=device)
    batch = {"label": torch.zeros(args.batch, dtype=torch.long, device=device)}
    for i in range(13):
        if i == 3:
            engine._sync(device)
            t0 = time.perf_counter()
        loss = task.loss(task_head(*task.head_inputs(x, batch)), batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
    engine._sync(device)
    step_s = (time.perf_counter() - t0) / 10
    return {"build_s": build_s, "pass_s": pass_s, "step_s": step_s, "L": L, "D": D, "shape": shape,
            "clip_bytes": FEATURE_BYTES * math.prod(shape)}


def _size_run(args, cal: dict, elapsed: float) -> tuple[int, int, int]:
    """(clips, steps, naive trials, naive steps) so the remaining benchmark fits args.budget_s.

    The run does: T passes twice (alone, then inside the grid), N = (L+1) x T readouts, k naive
    trials (each: steps x batch + val clips through the backbone, plus the readout). Shares of
    the remaining time: 30 % passes, 35 % readouts, 25 % naive, 10 % per-trial overhead. A naive
    trial at 284m costs minutes, so naive trials may run fewer steps (naive steps); their time is
    then scaled to the grid's steps linearly (see scaled_main). Clips are capped by
    --max_cache_gb (every block is cached: (L+1) x T x clips x t x h x w x D x 2 bytes).
    """
    T, N = len(args.timesteps), (cal["L"] + 1) * len(args.timesteps)
    left = max(args.budget_s - elapsed, 30.0)
    clips = args.clips or int(0.30 * left / (2 * T * cal["pass_s"]))
    cap = int(args.max_cache_gb * 2**30 / (T * (cal["L"] + 1) * cal["clip_bytes"]))
    clips = max(2 * args.batch, min(clips, cap, 2000)) if not args.clips else clips
    steps = args.steps or max(20, min(300, int(0.35 * left / (N * cal["step_s"]))))
    n_val = max(clips // 5, 1)
    naive_step = args.batch * cal["pass_s"] + cal["step_s"]
    naive_steps = max(5, min(steps, int(0.25 * left / 2 / naive_step - n_val * cal["pass_s"])))
    naive_one = naive_steps * naive_step + n_val * cal["pass_s"] + 1.0
    naive = args.naive_trials or max(1, min(N, int(0.25 * left / naive_one)))
    return clips, steps, naive, naive_steps


def scaled_main(args) -> int:
    """Every block 0..L x timesteps on the motion task (17 x 128 x 128 by default), random weights.

    Measures, in one process (trials in sequence, as the committed CPU grid):
      (i)   the T extraction passes alone: ensure_entry for train and val at each t, all blocks;
      (ii)  each readout alone on cached features: training + evaluation of every grid trial
            (metrics.json `readout_s`, device synchronised);
      (iii) the whole grid with the cache (wall), from an empty cache: its own T passes included;
      (iv)  the naive way on `naive_trials` trials (backbone run for every batch), extrapolated to
            the grid per trial when fewer than all trials are run (stated in the table).
    Backbone forward calls are counted; a pass is one sweep over train + val.
    """
    import shutil

    t_start = time.perf_counter()
    os.environ.setdefault("WALT_PROBE_SYNTHETIC_CACHE", str(Path(tempfile.gettempdir()) / "walt_probe_synthetic"))
    out_dir = Path(args.out or REPO / "runs" / "grid_cache")
    out_dir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="walt-grid-", dir=out_dir))
    files, bindings = _scaled_setup(args, work)
    cal = _calibrate(args, files, bindings)
    clips, steps, naive_k, naive_steps = _size_run(args, cal, time.perf_counter() - t_start)
    n_val = max(clips // 5, 1)
    n_train = clips - n_val
    L, T = cal["L"], len(args.timesteps)
    blocks = list(range(L + 1))
    bindings += [f"SyntheticMotionActions.num_train = {n_train}", f"SyntheticMotionActions.num_val = {n_val}",
                 f"STEPS = {steps}", f"Probe.cache_blocks = {blocks!r}", "PaperOptimizer.warmup = 10"]
    print(f"calibration: build {cal['build_s']:.1f} s, pass {1e3 * cal['pass_s']:.2f} ms/clip (all "
          f"{L + 1} blocks), readout step {1e3 * cal['step_s']:.2f} ms -> {n_train}+{n_val} clips, "
          f"{steps} steps, {naive_k} naive trials of {naive_steps} steps", flush=True)
    gin_args = gin_setup.GinArgs(files=tuple(files))

    # Render the data once, outside the timed parts.
    t0 = time.perf_counter()
    gin_setup.parse(gin_args, bindings)
    probe = trial.build_probe()
    for split in ("train", "val"):
        probe.task.split(split)
    render_s = time.perf_counter() - t0
    device = gin.get_configurable("Run")().torch_device()
    trial.place_backbone(probe.backbone, device)

    # (i) T passes alone.
    from probing import extract
    alone = work / "cache_alone"
    with CountingFeatures() as count:
        t0 = time.perf_counter()
        for t in args.timesteps:
            for split in ("train", "val"):
                extract.ensure_entry(probe.backbone, probe.task, split, t, blocks, alone,
                                     probe.cache_dtype, 0, batch_size=probe.eval_batch_size)
        engine._sync(device)
        passes_s = time.perf_counter() - t0
    passes_alone = count.examples / clips
    shutil.rmtree(alone, ignore_errors=True)
    del probe

    def grid(use_cache: bool, limit: int | None, more=()):
        rows = []
        with CountingFeatures() as c:
            t0 = time.perf_counter()
            for t in args.timesteps:
                for block in blocks:
                    if limit is not None and len(rows) >= limit:
                        break
                    m = trial.run_probe(gin_args, [
                        *bindings, f"Probe.block = {block}", f"Probe.timestep = {t}",
                        f"Probe.use_cache = {use_cache}", f"Probe.cache_dir = '{work / 'cache'}'",
                        f"Run.output_dir = '{work / ('cached' if use_cache else 'naive') / f'b{block}_t{t}'}'",
                        *more])
                    rows.append(m.to_dict())  # a ProbeResult (probing/result.py)
            return time.perf_counter() - t0, c.calls, c.examples, rows

    # (iii) + (ii): the grid from an empty cache.
    wall, calls, examples, rows = grid(True, None)
    readouts_s = sum(m["readout_s"] for m in rows)
    grid_passes = examples / clips
    shutil.rmtree(work / "cache", ignore_errors=True)
    # (iv) naive, on naive_k trials.
    naive_wall, naive_calls, naive_examples, naive_rows = grid(False, naive_k, [f"STEPS = {naive_steps}"])
    N = len(rows)
    # Per naive trial at the grid's steps: its wall plus the missing steps at its own training
    # cost per step (readout_s less the evaluation's backbone pass over the val clips).
    per_step = [(m["readout_s"] - n_val * cal["pass_s"]) / naive_steps for m in naive_rows]
    per_trial = [m["wall_s"] + (steps - naive_steps) * ps for m, ps in zip(naive_rows, per_step)]
    naive_total = sum(per_trial) / len(per_trial) * N
    extrapolated = len(naive_rows) < N or naive_steps < steps
    ok = [m for m in rows if m["status"] == trial.STATUS_OK]
    ratio = wall / (passes_s + readouts_s)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    lines = [
        f"# Block x timestep grid with the feature cache vs the naive way ({args.size})",
        "",
        f"Device {device} ({name}), torch {torch.__version__}, {time.strftime('%Y-%m-%d %H:%M')}, "
        f"{os.cpu_count()} CPUs. `{args.size}` random weights in {args.dtype}, tokenizer "
        f"{args.tokenizer or 'of the size file'}, Backbone.compile = {args.compile}; motion task at "
        f"{args.num_frames} x {args.image_size} x {args.image_size}, {n_train} train + {n_val} val clips; "
        f"blocks 0..{L} ({L + 1}) x timesteps {args.timesteps} = {N} trials ({len(ok)} ok), "
        f"{args.head} head, {steps} steps of batch {args.batch}; one process, trials in sequence.",
        f"Sized for --budget_s {args.budget_s:g} from a calibration: {1e3 * cal['pass_s']:.2f} ms per clip "
        f"and pass (all blocks), {1e3 * cal['step_s']:.2f} ms per readout step. Data rendering "
        f"{render_s:.1f} s (not counted).",
        "",
        "| quantity | value | target |",
        "|---|---|---|",
        f"| grid wall with the cache (iii) | {wall:.1f} s | |",
        f"| T extraction passes alone (i) | {passes_s:.1f} s ({passes_alone:g} passes) | |",
        f"| sum of readout trainings (ii) | {readouts_s:.1f} s ({N} trials, "
        f"{1e3 * readouts_s / max(N * steps, 1):.2f} ms/step incl. eval) | |",
        f"| wall / (passes + readouts) | **{ratio:.2f}** | <= 1.3 |",
        f"| backbone passes in the grid | **{grid_passes:g}** ({calls} forward calls) | == T = {T} |",
        f"| naive wall | {naive_total:.1f} s ({'**extrapolated** from ' + str(len(naive_rows)) + ' of ' + str(N) + f' trials run with {naive_steps} of {steps} steps' if extrapolated else 'measured'}: "
        f"{sum(per_trial) / len(per_trial):.1f} s/trial, measured {naive_wall:.1f} s for {len(naive_rows)}, "
        f"{naive_examples / max(len(naive_rows), 1):.0f} clips through the backbone per measured trial) | |",
        f"| speed-up naive / cached | **{naive_total / wall:.1f}x** | |",
        "",
        f"Whole benchmark: {time.perf_counter() - t_start:.0f} s.",
        "",
        "Command: `python benchmarks/grid_cache.py " + " ".join(sys.argv[1:]) + "`",
        "",
    ]
    text = "\n".join(lines)
    print(text)
    gin_setup.write_text_atomic(out_dir / "grid_cache.md", text)
    shutil.rmtree(work, ignore_errors=True)
    return 0 if grid_passes == T else 1


if __name__ == "__main__":
    sys.exit(main())

"""Is readout training on cached features input-bound? Data wait vs GPU step, and GPU utilisation.

  python benchmarks/readout_util.py [--preset gpu|tiny] [--steps 300] [--out FILE] [gin flags]

Fills the feature cache for one probe (preset `gpu`: 284m random weights in bf16, base
tokenizer, 17 x 128 x 128 synthetic motion clips, 256 train / 64 val, block 5, t = 200, as
benchmarks/gpu_probe.sh; preset `tiny`: the smoke config on the CPU), then trains the task's
readout on the cached block, for the narrow head (experiments/cpu_heads.gin, width 128) and the
paper-size head (the task's own head_kwargs), once per way of serving cached features:

  stream   the shard reader (safetensors read per shard on the training process): the old path
  auto     the block loaded once and kept on the training device when it fits (Probe.feature_residence)

Each (head, features) pair runs twice:
  timed    the device synchronised around (a) waiting for the batch and (b) the step: ms/step of
           each, and the fraction of the step time spent waiting for data;
  free     the training loop as a probe runs it (no extra syncs): ms/step and the median of
           nvidia-smi's utilization.gpu sampled every 100 ms ('n/a' without nvidia-smi).

Extra gin flags (--gin_file, --gin.X=...) are applied after the preset, as in `walt-probe probe`.
Prints a markdown table and writes it to --out if given.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import torch  # noqa: E402

from probing import extract  # noqa: E402
from probing import probe as engine  # noqa: E402
from runners import gin_setup, trial  # noqa: E402

PRESETS = {
    "gpu": (["experiments/probe_motion_small.gin", "backbones/284m.gin"],
            ["WALT_CHECKPOINT = None", "TOKENIZER_CHECKPOINT = None", "Backbone.dtype = 'bfloat16'",
             "SyntheticMotionActions.num_train = 256", "SyntheticMotionActions.num_val = 64",
             "SyntheticMotionActions.num_proc = 8", "Probe.batch_size = 64",
             "Probe.eval_batch_size = 64", "BLOCK = 5", "TIMESTEP = 200"]),
    "tiny": (["experiments/smoke_tiny.gin"],
             ["SyntheticMotionActions.num_train = 32", "SyntheticMotionActions.num_val = 8",
              "Probe.batch_size = 8", "Probe.eval_batch_size = 8"]),
}
HEADS = {"narrow": [], "paper": ["SyntheticMotionActions.head_kwargs = None"]}
SKIP = 10  # warm-up steps left out of the timed statistics


class NullWriter:
    """Stands in for the TensorBoard writer: the benchmark keeps no logs."""

    def add_scalar(self, *args, **kwargs) -> None:
        pass


class UtilSampler:
    """nvidia-smi's utilization.gpu every 100 ms while in the `with` block; `median` or None."""

    def __init__(self, device: torch.device):
        self.device, self.proc, self.samples = device, None, []

    def __enter__(self):
        if self.device.type == "cuda" and shutil.which("nvidia-smi"):
            index = self.device.index if self.device.index is not None else torch.cuda.current_device()
            visible = os.environ.get("CUDA_VISIBLE_DEVICES")
            if visible:  # nvidia-smi numbers physical GPUs
                index = visible.split(",")[index].strip()
            self.proc = subprocess.Popen(
                ["nvidia-smi", "-i", str(index), "--query-gpu=utilization.gpu",
                 "--format=csv,noheader,nounits", "-lms", "100"],
                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        return self

    def __exit__(self, *exc):
        if self.proc is not None:
            self.proc.terminate()
            out, _ = self.proc.communicate(timeout=10)
            self.samples = [float(x) for x in out.split() if x.replace(".", "", 1).isdigit()]
        return False

    @property
    def median(self) -> float | None:
        return statistics.median(self.samples) if self.samples else None


def setup(files, bindings):
    """Parses gin and builds (probe, run, device, block) as `trial.run_probe` does."""
    gin_setup.parse(gin_setup.GinArgs(files=tuple(files), search_paths=(str(gin_setup.DEFAULT_SEARCH_PATH),)),
                    bindings)
    import gin
    run = gin.get_configurable("Run")()
    probe = trial.build_probe()
    device = run.torch_device()
    trial.place_backbone(probe.backbone, device)
    block = extract.resolve_block(probe.block, int(probe.backbone.num_blocks))
    return probe, run, device, block


def train_once(probe, run, device, block, timed: bool) -> dict:
    """One readout training on cached features; timings per step or the free-running wall time."""
    gen = engine.seed_everything(run.seed)
    head = probe.task.make_head(int(probe.backbone.feature_dim)).to(device)
    source = engine.FeatureSource(probe, block, gen)
    next(source.epoch("train", probe.batch_size, train=True))  # load the block before timing
    timings = [] if timed else None
    engine._sync(device)
    with UtilSampler(device) as util:
        t0 = time.perf_counter()
        status, error, _ = engine.fit_readout(probe, head, source, device, NullWriter(), timings)
        engine._sync(device)
        wall = time.perf_counter() - t0
    if status != trial.STATUS_OK:
        raise RuntimeError(f"readout training {status}: {error}")
    out = {"wall_ms": 1e3 * wall / probe.steps, "util": util.median, "util_n": len(util.samples),
           "params": sum(p.numel() for p in head.parameters()),
           "residence": source.residence.get("train", "stream")}
    if timed:
        kept = timings[SKIP:] if len(timings) > 2 * SKIP else timings
        out["wait_ms"] = 1e3 * statistics.mean(w for w, _ in kept)
        out["step_ms"] = 1e3 * statistics.mean(s for _, s in kept)
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", choices=sorted(PRESETS), default="gpu")
    parser.add_argument("--steps", type=int, default=300, help="readout steps per measurement")
    parser.add_argument("--heads", nargs="+", choices=sorted(HEADS), default=["narrow", "paper"])
    parser.add_argument("--residences", nargs="+", choices=list(engine.RESIDENCES),
                        default=["stream", "auto"])
    parser.add_argument("--cache_dir", default=None, help="feature cache (default: a temporary folder)")
    parser.add_argument("--out", default=None, help="also write the table to this file")
    gin_setup.add_gin_flags(parser)
    args = parser.parse_args(gin_setup.rewrite_shorthand(sys.argv[1:] if argv is None else argv))
    os.environ.setdefault("WALT_PROBE_SYNTHETIC_CACHE", str(Path(tempfile.gettempdir()) / "walt_probe_synthetic"))
    tmp = tempfile.TemporaryDirectory(prefix="walt-readout-util-")
    cache = args.cache_dir or tmp.name
    user = gin_setup.gin_args_from(args)
    files = [gin_setup.resolve_gin_file(f, user.search_paths) for f in PRESETS[args.preset][0]] + list(user.files)
    base = [*PRESETS[args.preset][1], "Probe.use_cache = True", f"Probe.cache_dir = '{cache}'",
            f"STEPS = {args.steps}", *user.bindings]

    # 1. Fill the cache (one backbone pass over each split).
    t0 = time.perf_counter()
    probe, run, device, block = setup(files, base)
    build_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    source = engine.FeatureSource(probe, block, torch.Generator())
    engine._sync(device)
    fill_s = time.perf_counter() - t0
    entry = source.entries["train"]
    info = engine.backbone_info(probe.backbone)
    head_text = f"{len(args.heads)} heads"

    rows = []
    for head in args.heads:
        for residence in args.residences:
            probe, run, device, block = setup(files, [*base, *HEADS[head][:],
                                                      f"Probe.feature_residence = '{residence}'"])
            timed = train_once(probe, run, device, block, timed=True)
            free = train_once(probe, run, device, block, timed=False)
            rows.append((head, residence, probe.batch_size, timed, free))
            print(f"{head} / {residence}: wait {timed['wait_ms']:.2f} ms, step {timed['step_ms']:.2f} ms, "
                  f"free {free['wall_ms']:.2f} ms/step, util {free['util']}", flush=True)

    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    lines = [
        "# Readout training on cached features: data wait vs step, GPU utilisation",
        "",
        f"Device: {device} ({gpu}); torch {torch.__version__}; {time.strftime('%Y-%m-%d %H:%M')}; "
        f"{os.cpu_count()} CPUs; preset `{args.preset}`, extra gin: "
        f"{' '.join(user.bindings) or 'none'}.",
        f"Backbone {info['backbone']} ({info['size']}), block {block}, t = {probe.timestep}; "
        f"{entry.num_examples} train clips cached, block {block} = "
        f"{entry.block_bytes(block) / 2**20:.0f} MiB ({entry.manifest['dtype']}); "
        f"build {build_s:.1f} s, cache fill {fill_s:.1f} s ({source.backbone_batches} backbone "
        f"batches); {args.steps} steps per run, {head_text}.",
        "",
        "| head | params | batch | features from | data wait ms/step | step ms/step | wait fraction | "
        "free-running ms/step | GPU util median (samples) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for head, residence, batch, timed, free in rows:
        frac = timed["wait_ms"] / (timed["wait_ms"] + timed["step_ms"])
        util = "n/a" if free["util"] is None else f"{free['util']:.0f} % ({free['util_n']})"
        lines.append(f"| {head} | {timed['params']:,} | {batch} | {residence}: {timed['residence']} | "
                     f"{timed['wait_ms']:.2f} | {timed['step_ms']:.2f} | {100 * frac:.1f} % | "
                     f"{free['wall_ms']:.2f} | {util} |")
    lines += ["", "Command: `python benchmarks/readout_util.py " + " ".join(
        sys.argv[1:] if argv is None else argv) + "`", ""]
    text = "\n".join(lines)
    print(text)
    if args.out:
        gin_setup.write_text_atomic(Path(args.out), text)
    tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())

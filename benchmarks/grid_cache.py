"""What the feature cache buys: one block x timestep grid of probes, with the cache and without.

  python benchmarks/grid_cache.py [--out benchmarks/results/grid_cache.md]

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

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from runners import gin_setup, trial  # noqa: E402
from walt.backbone import WALTBackbone  # noqa: E402

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
                values.append(m["value"])
        wall = time.perf_counter() - t0
    return {"wall_s": wall, "calls": count.calls, "examples": count.examples, "values": values,
            "trials": len(values)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "grid_cache.md"))
    args = parser.parse_args(argv)
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


if __name__ == "__main__":
    sys.exit(main())

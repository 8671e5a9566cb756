"""Rendering speed of the synthetic world: clips / second at 64 x 64 and 128 x 128.

    python benchmarks/render_speed.py [--clips 64] [--sizes 64 128] [--devices cpu cuda]
                                      [--split 2000] [--num_proc N] [--split_device cpu]
                                      [--threads 1] [--out benchmarks/results/render_speed.md]

Measures `analogs.render_items` on the generic moving-scene analog ('depth': 1-8 objects,
moving camera, 17 frames) in batches of 16 with --threads torch threads (one process), and
with --split N the wall time of rendering and saving a whole N-clip training split through
the dataset cache (`builders.analog_datasets`: what a probe's first run pays; --num_proc
left out = the builders' default, one process per usable core). Appends one table row per
measurement to --out with machine, date, the 1-minute load average at the end of the
measurement, and the command.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import sys
import tempfile
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from tasks.synthetic import analogs, builders  # noqa: E402
from tasks.synthetic.dataset import clip_generator, resolve_device, resolve_num_proc  # noqa: E402


def clips_per_second(size: int, clips: int, device: str, analog: str = "depth") -> float:
    a = analogs.get(analog)
    analogs.render_items(a, [clip_generator(analog, "bench", 0, i) for i in range(2)], size, 17, device)
    start = time.perf_counter()
    for s in range(0, clips, 16):
        gens = [clip_generator(analog, "bench", 0, i) for i in range(s, min(clips, s + 16))]
        analogs.render_items(a, gens, size, 17, device)
    if device == "cuda":
        torch.cuda.synchronize()
    return clips / (time.perf_counter() - start)


def split_seconds(count: int, size: int, num_proc: int | None, device: str) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        builders.analog_datasets("depth", cache_dir=tmp, num_train=count, num_val=0,
                                 image_size=size, num_proc=num_proc, device=device)
        return time.perf_counter() - start


def load() -> str:
    try:
        return "load %.1f" % os.getloadavg()[0]
    except OSError:
        return ""


def machine() -> str:
    cpus = os.cpu_count()
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:
        pass
    name = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            name = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{name}, {cpus} cores usable, torch threads {torch.get_num_threads()}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=64)
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 128])
    parser.add_argument("--devices", nargs="+", default=["cpu"])
    parser.add_argument("--split", type=int, default=0, help="also time an N-clip 64 x 64 split")
    parser.add_argument("--num_proc", type=int, default=None, help="split render processes (default: auto)")
    parser.add_argument("--split_device", default="cpu", help="render device of the split: cpu, cuda or auto")
    parser.add_argument("--threads", type=int, default=1, help="torch threads of the clips/s measurement")
    parser.add_argument("--note", default="")
    parser.add_argument("--out", default="benchmarks/results/render_speed.md")
    args = parser.parse_args()
    command = "python " + " ".join(sys.argv)
    date = datetime.date.today().isoformat()
    torch.set_num_threads(args.threads)
    header = ("| machine | device | what | speed | conditions | date | command |\n"
              "| --- | --- | --- | --- | --- | --- | --- |\n")
    if not os.path.exists(args.out):
        with open(args.out, "w") as f:
            f.write("# Synthetic world rendering speed\n\nMade by `benchmarks/render_speed.py`; one row per "
                    "measurement. Target: a 2,000-clip 64 x 64 training split in under 2 minutes on 2 CPU cores.\n\n"
                    + header)

    def emit(row: str) -> None:  # one row at a time, so a long run keeps what it measured
        print(row, flush=True)
        with open(args.out, "a") as f:
            f.write(row + "\n")

    for device in args.devices:
        if device == "cuda" and not torch.cuda.is_available():
            print("cuda: not available, skipped")
            continue
        host = torch.cuda.get_device_name() if device == "cuda" else machine()
        for size in args.sizes:
            rate = clips_per_second(size, args.clips, device)
            emit(f"| {host} | {device} | {size} x {size} x 17 | {rate:.2f} clips/s | "
                 f"{load()} {args.note} | {date} | `{command}` |")
    if args.split:
        device = resolve_device(args.split_device)
        procs = resolve_num_proc(args.num_proc, args.split, device)
        sec = split_seconds(args.split, 64, args.num_proc, device)
        emit(f"| {machine()} | {device}, split, num_proc {procs} | {args.split}-clip split, 64 x 64 x 17 | "
             f"{sec:.1f} s ({args.split / sec:.1f} clips/s) | {load()} {args.note} | {date} | `{command}` |")

if __name__ == "__main__":
    main()

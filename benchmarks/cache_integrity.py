"""What verifying the feature cache's shard digests costs on a 1 GB entry (probing/cache.py).

Writes one ~1 GB entry through CacheWriter (4 blocks, float16, 5 x 8 x 8 x 256 activations per
example and block, 256 examples a shard), then times, best of `--repeats`:

  read, one block     what a probe reads: `load_shard(s, block)` for every shard (safetensors
                      reads only that block's bytes), copied out of the memory map
  read, every block   every tensor of every shard (safetensors load_file), copied likewise
  verify              xxh3-128 over every shard's bytes (`shard_digest`), what `CacheEntry.open`
                      does the first time a process opens the entry
  open, verified      `CacheEntry.open` again in the same process (file state unchanged: no rehash)
  digest while writing  xxh3-128 of the serialised bytes (part of every shard write)

The page cache is warm (the entry was just written; dropping caches needs root and would slow
everyone else on a shared machine), so the read times are memory-speed reads: the worst case for
the verification's share. Cold reads from disk make the share smaller.

  PYTHONPATH=$PWD python benchmarks/cache_integrity.py --out benchmarks/results/cache_integrity.md
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

import torch
import xxhash
from safetensors.torch import load_file
from safetensors.torch import save as serialize

from probing import cache as fc


def _best(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gb", type=float, default=1.0, help="entry size in GB (1e9 bytes)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--dir", default=None, help="where to write the entry (default: a temp folder)")
    ap.add_argument("--out", default=None, help="markdown file for the table")
    args = ap.parse_args()

    blocks, shape, per_shard = (1, 2, 3, 4), (5, 8, 8, 256), 256
    per_example = len(blocks) * 2 * int(torch.tensor(shape).prod())
    n = int(args.gb * 1e9 // per_example)
    root = Path(args.dir or tempfile.mkdtemp(prefix="cache_integrity_"))
    key = fc.CacheKey(backbone="bench", timestep=200, dataset=f"bench/train/n={n}", split="train",
                      preprocessing={"dtype": "float16"}, blocks=blocks)
    try:
        gen = torch.Generator().manual_seed(0)
        t0 = time.perf_counter()
        with fc.CacheWriter(root, key, shard_size=per_shard) as w:
            for s in range(0, n, 64):
                b = min(64, n - s)
                w.add({blk: torch.randn(b, *shape, generator=gen, dtype=torch.float32).half() for blk in blocks},
                      {"index": torch.arange(s, s + b)})
            entry = w.commit()
        write_s = time.perf_counter() - t0
        files = [entry.path / sh["file"] for sh in entry.manifest["shards"]]
        total = sum(f.stat().st_size for f in files)

        # clone(): safetensors maps the file lazily; a read is only done once the bytes are copied.
        read_one = _best(lambda: [entry.load_shard(i, 2)[0].clone() for i in range(len(files))], args.repeats)
        read_all = _best(lambda: [[t.clone() for t in load_file(str(f)).values()] for f in files], args.repeats)
        verify = _best(lambda: [fc.shard_digest(f) for f in files], args.repeats)
        fc._VERIFIED.clear()
        first_open = _best(lambda: (fc._VERIFIED.clear(), fc.CacheEntry.open(root, key)), 1)
        reopen = _best(lambda: fc.CacheEntry.open(root, key), args.repeats)
        sample = serialize(entry.load_shard(0, 1)[1] | {"x": torch.zeros(per_shard, *shape, dtype=torch.float16)})
        hash_write = _best(lambda: xxhash.xxh3_128(sample).hexdigest(), args.repeats) * total / len(sample)

        gbps = lambda s: total / s / 1e9  # noqa: E731
        rows = [
            ("read, one block of 4 (what a probe reads)", read_one, gbps(read_one), "-"),
            ("read, every block", read_all, gbps(read_all), "-"),
            ("verify: xxh3-128 of every shard", verify, gbps(verify),
             f"{verify / read_one:.0%} of one-block read, {verify / read_all:.0%} of full read"),
            ("CacheEntry.open, first in the process (verifies)", first_open, gbps(first_open), "-"),
            ("CacheEntry.open, again (verified once: no rehash)", reopen, float("nan"),
             f"{reopen / read_one:.2%} of one-block read"),
            ("digest while writing (xxh3-128 of the serialised bytes)", hash_write, gbps(hash_write),
             f"{hash_write / write_s:.1%} of the write ({write_s:.1f} s)"),
        ]
        load = os.getloadavg()[0]
        lines = [
            "# Feature cache: what verifying shard digests costs (1 GB entry)",
            "",
            f"Command: `PYTHONPATH=$PWD python benchmarks/cache_integrity.py --out "
            f"benchmarks/results/cache_integrity.md` ({time.strftime('%Y-%m-%d')}, "
            f"{platform.node()}: {os.cpu_count()} CPUs, shared with other jobs, load average "
            f"{load:.1f}; torch {torch.__version__}, xxhash {xxhash.VERSION}).",
            "",
            f"Entry: {total / 1e9:.2f} GB in {len(files)} shards of {per_shard} examples, blocks "
            f"{list(blocks)} float16, activations {shape}. Page cache warm (see the script's "
            f"docstring); best of {args.repeats}.",
            "",
            "| step | seconds | GB/s over the entry | share |",
            "|---|---|---|---|",
            *[f"| {name} | {s:.3f} | {g:.2f} | {share} |" for name, s, g, share in rows],
            "",
        ]
        text = "\n".join(lines)
        print(text)
        if args.out:
            Path(args.out).write_text(text)
    finally:
        if args.dir is None:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()

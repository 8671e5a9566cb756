"""Feature extraction speed against the GPU's measured limits (284m / 724m / 1p9b).

Prints a markdown table (and writes it with --out):
  1. the limits: measured dense bf16 matmul rate and device-to-device copy bandwidth;
  2. per size: WALT forward up to the deepest of 3 captured blocks at 17 x 128 x 128
     (latents 5 x 16 x 16), bf16, batch sizes swept, eager and torch.compile: clips/s,
     ms/batch, peak memory, model FLOP utilisation (MFU) =
     counted FLOPs of that forward / time / measured matmul peak;
  3. the tokenizer encode (base size) on its own line;
  4. (--profile) the top CUDA kernels of one forward of the largest size, to explain the gap.

FLOPs are counted by torch.utils.flop_counter on the real forward (matmuls and attention),
not estimated from the parameter count. Random weights: speed does not depend on them.

  python benchmarks/extract_speed.py --out benchmarks/results/extract_speed.md
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from walt.sizes import WALT_SIZES, TOKENIZER_SIZES
from walt.tokenizer import Tokenizer
from walt.transformer import WALT


def cuda_time_ms(fn, iters: int, warmup: int = 3) -> list[float]:
    """Per-iteration wall times in ms, measured with CUDA events after `warmup` calls."""
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(iters):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end))
    return times


def matmul_peak_tflops(n: int = 8192, iters: int = 20) -> float:
    a = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    ms = statistics.median(cuda_time_ms(lambda: a @ b, iters))
    return 2 * n**3 / (ms * 1e-3) / 1e12


def copy_bandwidth_gbs(nbytes: int = 2 << 30, iters: int = 10) -> float:
    src = torch.empty(nbytes, dtype=torch.uint8, device="cuda")
    dst = torch.empty_like(src)
    ms = statistics.median(cuda_time_ms(lambda: dst.copy_(src), iters))
    return 2 * nbytes / (ms * 1e-3) / 1e9  # read + write


def forward_flops(fn) -> int:
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def bench_walt(size: str, batch_sizes, peak: float, compile_best: bool, iters: int):
    torch.manual_seed(0)
    model = WALT.from_size(size, variant="video", latent_shape=(5, 16, 16)).cuda().to(torch.bfloat16).eval()
    L = model.num_blocks
    blocks = sorted({L // 3, (2 * L) // 3, L})  # 3 captured blocks; the deepest sets the cost
    rows, best = [], None
    for b in batch_sizes:
        z = torch.randn(b, model.latent_channels, 5, 16, 16, device="cuda", dtype=torch.bfloat16)
        t = torch.full((b,), 200, device="cuda", dtype=torch.long)

        def run(m=model):
            with torch.no_grad():
                return m.forward_features(z, t, blocks)
        try:
            torch.cuda.reset_peak_memory_stats()
            flops = forward_flops(run)
            ms = statistics.median(cuda_time_ms(run, iters))
        except torch.OutOfMemoryError:
            rows.append(dict(size=size, mode="eager", batch=b, note="out of memory"))
            torch.cuda.empty_cache()
            break
        row = dict(size=size, mode="eager", batch=b, ms=ms, clips_s=b / ms * 1e3,
                   mem_gb=torch.cuda.max_memory_allocated() / 2**30,
                   mfu=flops / (ms * 1e-3) / (peak * 1e12), gflop=flops / 1e9, blocks=blocks)
        rows.append(row)
        if best is None or row["clips_s"] > best["clips_s"]:
            best = row
    if compile_best and best is not None:
        b = best["batch"]
        z = torch.randn(b, model.latent_channels, 5, 16, 16, device="cuda", dtype=torch.bfloat16)
        t = torch.full((b,), 200, device="cuda", dtype=torch.long)
        compiled = torch.compile(model.forward_features)

        def run_c():
            with torch.no_grad():
                return compiled(z, t, blocks)
        t0 = time.perf_counter()
        run_c()
        torch.cuda.synchronize()
        compile_s = time.perf_counter() - t0
        torch.cuda.reset_peak_memory_stats()
        ms = statistics.median(cuda_time_ms(run_c, iters))
        rows.append(dict(size=size, mode=f"compile ({compile_s:.0f} s)", batch=b, ms=ms,
                         clips_s=b / ms * 1e3, mem_gb=torch.cuda.max_memory_allocated() / 2**30,
                         mfu=best["gflop"] * 1e9 / (ms * 1e-3) / (peak * 1e12),
                         gflop=best["gflop"], blocks=blocks))
    del model
    torch.cuda.empty_cache()
    return rows


def bench_tokenizer(peak: float, batch: int, iters: int):
    tok = Tokenizer(**TOKENIZER_SIZES["base"]).cuda().to(torch.bfloat16).eval()
    video = torch.rand(batch, 3, 17, 128, 128, device="cuda", dtype=torch.bfloat16) * 2 - 1

    def run():
        with torch.no_grad():
            return tok.encode(video)
    torch.cuda.reset_peak_memory_stats()
    flops = forward_flops(run)
    ms = statistics.median(cuda_time_ms(run, iters))
    return dict(size="tokenizer base", mode="eager", batch=batch, ms=ms, clips_s=batch / ms * 1e3,
                mem_gb=torch.cuda.max_memory_allocated() / 2**30,
                mfu=flops / (ms * 1e-3) / (peak * 1e12), gflop=flops / 1e9, blocks="encode")


def profile_top_kernels(size: str, batch: int, n: int = 12) -> str:
    model = WALT.from_size(size, variant="video", latent_shape=(5, 16, 16)).cuda().to(torch.bfloat16).eval()
    z = torch.randn(batch, model.latent_channels, 5, 16, 16, device="cuda", dtype=torch.bfloat16)
    t = torch.full((batch,), 200, device="cuda", dtype=torch.long)
    blocks = [model.num_blocks]
    with torch.no_grad():
        model.forward_features(z, t, blocks)
        torch.cuda.synchronize()
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
            model.forward_features(z, t, blocks)
            torch.cuda.synchronize()
    return prof.key_averages().table(sort_by="cuda_time_total", row_limit=n)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", nargs="+", default=["284m", "724m", "1p9b"], choices=list(WALT_SIZES))
    p.add_argument("--batch-sizes", nargs="+", type=int, default=[8, 16, 32, 64])
    p.add_argument("--iters", type=int, default=10)
    p.add_argument("--no-compile", action="store_true")
    p.add_argument("--profile", default=None, help="size whose top kernels to print")
    p.add_argument("--out", default=None)
    args = p.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = True
    props = torch.cuda.get_device_properties(0)
    peak, bw = matmul_peak_tflops(), copy_bandwidth_gbs()
    lines = [f"GPU: {props.name}; torch {torch.__version__}; {time.strftime('%Y-%m-%d')}",
             "", "| limit | measured |", "|---|---|",
             f"| dense bf16 matmul (8192^3) | {peak:.0f} TFLOP/s |",
             f"| device-to-device copy | {bw:.0f} GB/s |", "",
             "Feature extraction at 17 x 128 x 128 (latents 5 x 16 x 16), bf16, forward up to the "
             "deepest of the captured blocks; MFU against the measured matmul peak.", "",
             "| model | mode | blocks | batch | ms/batch | clips/s | peak mem GiB | GFLOP/batch | MFU |",
             "|---|---|---|---|---|---|---|---|---|"]
    print("\n".join(lines), flush=True)
    rows = []
    for size in args.sizes:
        rows += bench_walt(size, args.batch_sizes, peak, not args.no_compile, args.iters)
    rows.append(bench_tokenizer(peak, 8, args.iters))
    for r in rows:
        if "ms" not in r:
            line = f"| {r['size']} | {r['mode']} | | {r['batch']} | {r['note']} | | | | |"
        else:
            line = (f"| {r['size']} | {r['mode']} | {r['blocks']} | {r['batch']} | {r['ms']:.1f} | "
                    f"{r['clips_s']:.0f} | {r['mem_gb']:.1f} | {r['gflop']:.0f} | {100 * r['mfu']:.1f}% |")
        lines.append(line)
        print(line, flush=True)
    if args.profile:
        table = profile_top_kernels(args.profile, args.batch_sizes[-1])
        lines += ["", f"Top CUDA kernels, one eager forward of {args.profile} (all blocks):", "",
                  "```", table, "```"]
        print(table)
    if args.out:
        with open(args.out, "w") as fh:
            fh.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()

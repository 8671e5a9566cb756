"""Pretraining on one GPU, end to end, with the numbers for benchmarks/results/pretrain.md.

  python benchmarks/pretrain_throughput.py gpu --out DIR [--budget_s 520] [--num_clips 4096]
      1. measures the bf16 matmul peak of the GPU (8192^3 matmuls);
      2. times a few training steps of the tokenizer and of WALT to size the runs to the budget;
      3. runs `walt-probe pretrain` three times through the real CLI: the tokenizer, then I-WALT
         and V-WALT with identical settings (only Pretrain.variant differs);
      4. writes the table (throughput, MFU against the measured peak, time per 1,000 steps,
         final losses) and copies the exports, loss curves and sample sheets to DIR.
  python benchmarks/pretrain_throughput.py table RUN_DIR... [--peak_tflops X]
      the markdown table for finished runs (reads each run's run.json).

MFU = model FLOPs per step (counted once per run with torch's FlopCounterMode: forward +
backward, plus the expected self-conditioning forward) x steps/s / measured peak.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent
GIN_TOKENIZER = "experiments/pretrain_tokenizer_small.gin"
GIN_WALT = "experiments/pretrain_walt_small.gin"


def measure_bf16_peak(n: int = 8192, iters: int = 30) -> float:
    """Dense bf16 matmul throughput in TFLOP/s (best of 3 timed loops)."""
    a = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    for _ in range(5):
        a @ b
    best = 0.0
    for _ in range(3):
        torch.cuda.synchronize()
        t = time.perf_counter()
        for _ in range(iters):
            a @ b
        torch.cuda.synchronize()
        best = max(best, 2 * n ** 3 * iters / (time.perf_counter() - t) / 1e12)
    return best


def time_steps(model, loss_of, steps: int = 20) -> float:
    """Seconds per optimizer step (bf16 autocast, fused AdamW), after 5 warm-up steps."""
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)
    for i in range(steps + 5):
        if i == 5:
            torch.cuda.synchronize()
            t = time.perf_counter()
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = loss_of(i)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    torch.cuda.synchronize()
    return (time.perf_counter() - t) / steps


def calibrate(tok_batch: int, walt_batch: int) -> dict:
    """Seconds per step of the tokenizer and of V-WALT (the slower variant) on random data."""
    from walt.noise import NoiseSchedule
    from walt.tokenizer import Tokenizer
    from walt.training import Reconstruct, diffusion_loss, tokenizer_loss
    from walt.transformer import WALT

    dev = torch.device("cuda")
    tok = Reconstruct(Tokenizer.from_size("tiny")).to(dev)
    video = torch.rand(tok_batch, 3, 17, 64, 64, device=dev) * 2 - 1
    s_tok = time_steps(tok, lambda i: tokenizer_loss(tok, video)[0], steps=10)
    model = WALT.from_size("small", variant="video", latent_shape=(5, 8, 8)).to(dev)
    sched = NoiseSchedule("linear", 1000)
    z0 = torch.randn(walt_batch, 8, 5, 8, 8, device=dev)
    flags = torch.rand(walt_batch, device=dev) < 0.25

    def walt_loss(i):
        t = torch.randint(1000, (walt_batch,), device=dev)
        return diffusion_loss(model, sched, z0, t, torch.randn_like(z0), self_condition=i % 2 == 0,
                              independent_frames=flags)[0]
    s_walt = time_steps(model, walt_loss, steps=30)
    del tok, model
    torch.cuda.empty_cache()
    return {"tokenizer_s_per_step": s_tok, "walt_s_per_step": s_walt}


def cli(*args: str, log: Path) -> float:
    """Runs `walt-probe pretrain ARGS` through the real CLI; returns its wall time."""
    t = time.perf_counter()
    cmd = [sys.executable, "-m", "runners.cli", "pretrain", *args]
    with open(log, "a") as fh:
        fh.write("$ " + " ".join(cmd) + "\n")
        fh.flush()
        proc = subprocess.run(cmd, cwd=REPO, stdout=fh, stderr=subprocess.STDOUT,
                              env={**os.environ, "PYTHONUNBUFFERED": "1"})
    if proc.returncode:
        raise SystemExit(f"pretrain failed ({' '.join(args)}); see {log}")
    return time.perf_counter() - t


def table(run_dirs, peak_tflops: float | None) -> str:
    """Markdown rows: one per run, from its run.json."""
    head = ("| run | params | steps | batch (clips) | steps/s | clips/s | s / 1,000 steps | "
            "model TFLOP/step | MFU | final loss (mean of last 100) | held-out |\n"
            "|---|---|---|---|---|---|---|---|---|---|---|\n")
    rows = []
    for d in run_dirs:
        rec = json.loads((Path(d) / "run.json").read_text())
        tp = rec["throughput"]
        sps = tp["steps_per_s"]
        flops = rec["model_flops_per_step"]
        mfu = f"{100 * flops * sps / (peak_tflops * 1e12):.1f}%" if peak_tflops else "n/a"
        ident = rec["identity"]
        name = ident["stage"] if ident["stage"] == "tokenizer" else (
            f"{'V' if ident['variant'] == 'video' else 'I'}-WALT {ident['walt_size']}")
        last = rec["evals"][-1] if rec["evals"] else {}
        held = (f"PSNR {last['val_psnr']:.2f} dB" if "val_psnr" in last else
                f"v-MSE clips {last.get('val_mse_clips', float('nan')):.4f} / images "
                f"{last.get('val_mse_images', float('nan')):.4f}")
        rows.append(f"| {name} | {rec['parameters'] / 1e6:.2f}M | {rec['step']} | {rec['clips_per_step']} | "
                    f"{sps:.2f} | {sps * rec['clips_per_step']:.0f} | {1000 / sps:.1f} | "
                    f"{flops / 1e12:.3f} | {mfu} | {rec['final_loss_mean_last_100']:.4f} | {held} |")
    return head + "\n".join(rows) + "\n"


def gpu(args) -> None:
    t_start = time.perf_counter()
    out, work = Path(args.out), REPO / "runs" / "pretrain_gpu"
    out.mkdir(parents=True, exist_ok=True)
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    log = work / "log.txt"
    facts = {"gpu": torch.cuda.get_device_name(0), "torch": torch.__version__,
             "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    facts["peak_bf16_tflops"] = measure_bf16_peak()
    print(f"peak bf16 matmul: {facts['peak_bf16_tflops']:.0f} TFLOP/s", flush=True)
    facts.update(calibrate(args.tok_batch, args.walt_batch))
    print(json.dumps(facts), flush=True)
    # Size the three runs to what is left of the budget (fixed costs: start-up, data, samples).
    left = args.budget_s - (time.perf_counter() - t_start) - 3 * args.overhead_s
    tok_steps = int(left * args.tokenizer_share / facts["tokenizer_s_per_step"] / 100) * 100
    walt_steps = int(left * (1 - args.tokenizer_share) / 2 / facts["walt_s_per_step"] / 100) * 100
    tok_steps, walt_steps = max(tok_steps, 200), max(walt_steps, 200)
    facts.update(tokenizer_steps=tok_steps, walt_steps=walt_steps)
    print(f"plan: tokenizer {tok_steps} steps, each WALT {walt_steps} steps", flush=True)
    # Checkpoints (with samples) only at the named fractions: saves cost seconds each.
    common = [f"--gin.SyntheticClips.workers={args.workers}", f"--gin.NUM_CLIPS={args.num_clips}",
              "--gin.Pretrain.checkpoint_every=0"]
    tok_dir = work / "tokenizer"
    facts["wall_tokenizer_s"] = cli(f"--gin_file={GIN_TOKENIZER}", *common, f"--gin.Run.output_dir='{tok_dir}'",
                                    f"--gin.Pretrain.steps={tok_steps}",
                                    f"--gin.Pretrain.batch_size={args.tok_batch}", log=log)
    tok_ckpt = tok_dir / "export" / "tokenizer.safetensors"
    walt_dirs = {}
    for variant in ("image", "video"):
        d = work / f"walt_{variant}"
        facts[f"wall_walt_{variant}_s"] = cli(
            f"--gin_file={GIN_WALT}", *common, f"--gin.VARIANT='{variant}'",
            f"--gin.TOKENIZER_CHECKPOINT='{tok_ckpt}'", f"--gin.Run.output_dir='{d}'",
            f"--gin.Pretrain.steps={walt_steps}", f"--gin.Pretrain.batch_size={args.walt_batch}", log=log)
        walt_dirs[variant] = d
    dirs = [tok_dir, walt_dirs["image"], walt_dirs["video"]]
    md = table(dirs, facts["peak_bf16_tflops"])
    facts["total_wall_s"] = time.perf_counter() - t_start
    (work / "facts.json").write_text(json.dumps(facts, indent=2))
    (work / "table.md").write_text(md)
    print(md, flush=True)
    # What comes back: the three final exports (< 16 MiB each) and one archive of the rest.
    shutil.copy(tok_ckpt, out / "tokenizer_small.safetensors")
    for variant, name in (("image", "iwalt_small"), ("video", "vwalt_small")):
        shutil.copy(walt_dirs[variant] / "export" / f"walt_small_{variant}.safetensors", out / f"{name}.safetensors")
    with tarfile.open(out / "pretrain_runs.tar.gz", "w:gz") as tar:
        for d in dirs:
            for f in sorted(d.rglob("*")):
                if f.is_file() and f.suffix in (".json", ".png", ".gin", ".txt"):
                    tar.add(f, arcname=str(f.relative_to(work)))
        for f in (log, work / "facts.json", work / "table.md"):
            tar.add(f, arcname=f.name)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    g = sub.add_parser("gpu")
    g.add_argument("--out", required=True)
    g.add_argument("--budget_s", type=float, default=520)
    g.add_argument("--overhead_s", type=float, default=30)
    g.add_argument("--tokenizer_share", type=float, default=0.3)
    g.add_argument("--num_clips", type=int, default=4096)
    g.add_argument("--tok_batch", type=int, default=32)
    g.add_argument("--walt_batch", type=int, default=64)
    g.add_argument("--workers", type=int, default=8)
    t = sub.add_parser("table")
    t.add_argument("run_dirs", nargs="+")
    t.add_argument("--peak_tflops", type=float, default=None)
    args = p.parse_args()
    if args.cmd == "gpu":
        gpu(args)
    else:
        print(table(args.run_dirs, args.peak_tflops))


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    main()

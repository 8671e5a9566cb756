"""Times one training step of the study's models on the GPU (compiled, bf16, fused AdamW), and
one readout step of each head kind on 40m-sized features: what sizes the study's step counts.

  python results/base_study/calibrate.py --out calib.json [--tok_batch 32 64] [--walt_batch 256]
  python results/base_study/calibrate.py --out small.json --skip_tokenizer --walt_size small \
      --latent_channels 8 --walt_batch 64 512 --compile 1      # the shipped `small` recipe

Per model: seconds per step (after warm-up and compilation), compile time, FLOPs per step
(FlopCounterMode, forward + backward; WALT adds the expected self-conditioning forward) and
MFU against the measured bf16 matmul peak. The compiled graphs land in the inductor cache, so a
study run on the same machine right after does not pay the compilation again.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))


def timed(step, n: int, warm: int = 3) -> tuple[float, float]:
    """(seconds of the first `warm` steps, incl. compilation; seconds per step after)."""
    torch.cuda.synchronize()
    t = time.perf_counter()
    for i in range(warm):
        step(i)
    torch.cuda.synchronize()
    first = time.perf_counter() - t
    t = time.perf_counter()
    for i in range(n):
        step(warm + i)
    torch.cuda.synchronize()
    return first, (time.perf_counter() - t) / n


def train_step(model, loss_of):
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)

    def step(i):
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = loss_of(i)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    return step


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--tok_batch", type=int, nargs="*", default=[32])
    ap.add_argument("--walt_batch", type=int, nargs="*", default=[256])
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--compile", type=int, default=1)
    ap.add_argument("--walt_size", default="40m", help="a WALT size ('small': the shipped recipe's)")
    ap.add_argument("--latent_channels", type=int, default=16, help="16: the 'study' tokenizer; 8: 'small'")
    ap.add_argument("--skip_tokenizer", action="store_true")
    args = ap.parse_args()
    from pretrain_throughput import measure_bf16_peak
    from pretraining.artifacts import count_training_flops
    from walt.noise import NoiseSchedule
    from walt.tokenizer import Tokenizer
    from walt.training import Reconstruct, diffusion_loss, tokenizer_loss
    from walt.transformer import WALT

    dev = torch.device("cuda")
    out = {"gpu": torch.cuda.get_device_name(), "torch": torch.__version__, "peak_bf16_tflops": measure_bf16_peak()}
    peak = out["peak_bf16_tflops"] * 1e12
    print(json.dumps(out), flush=True)
    for bs in [] if args.skip_tokenizer else args.tok_batch:
        torch.manual_seed(0)
        tok = Reconstruct(Tokenizer.from_size("study")).to(dev)
        run = torch.compile(tok) if args.compile else tok
        video = torch.rand(bs, 3, 17, 64, 64, device=dev) * 2 - 1
        with torch.autocast("cuda", dtype=torch.bfloat16):
            flops = count_training_flops(lambda: tokenizer_loss(tok, video)[0])
        tok.zero_grad(set_to_none=True)
        first, s = timed(train_step(tok, lambda i: tokenizer_loss(run, video)[0]), args.steps)
        row = {"model": "tokenizer study", "batch": bs, "first_steps_s": first, "s_per_step": s,
               "tflop_per_step": flops / 1e12, "mfu": flops / s / peak}
        out[f"tokenizer_b{bs}"] = row
        print(json.dumps(row), flush=True)
        del tok, run
        torch.cuda.empty_cache()
    sched = NoiseSchedule("linear", 1000)
    for bs in args.walt_batch:
        torch.manual_seed(0)
        model = WALT.from_size(args.walt_size, variant="video", latent_shape=(5, 8, 8),
                               latent_channels=args.latent_channels).to(dev)
        run = torch.compile(model) if args.compile else model
        z0 = torch.randn(bs, args.latent_channels, 5, 8, 8, device=dev)
        flags = torch.rand(bs, device=dev) < 0.25

        def loss_of(i, m=run, sc=None):
            t = torch.randint(1000, (bs,), device=dev)
            return diffusion_loss(m, sched, z0, t, torch.randn_like(z0),
                                  self_condition=(i % 2 == 0) if sc is None else sc,
                                  independent_frames=flags)[0]
        with torch.autocast("cuda", dtype=torch.bfloat16):
            flops = count_training_flops(lambda: loss_of(1, model, False)) * (1 + 0.5 / 3)
        model.zero_grad(set_to_none=True)
        first, s = timed(train_step(model, loss_of), args.steps)
        row = {"model": f"WALT {args.walt_size} video", "compiled": bool(args.compile), "batch": bs, "first_steps_s": first, "s_per_step": s,
               "tflop_per_step": flops / 1e12, "mfu": flops / s / peak}
        out[f"walt_{args.walt_size}_b{bs}_c{args.compile}"] = row
        print(json.dumps(row), flush=True)
        del model, run
        torch.cuda.empty_cache()
    Path(args.out).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()

"""How fast does a tracking readout train, eager vs torch.compile? One head, random features.

  python benchmarks/tracking_readout_speed.py [--steps 100] [--out FILE]

The tracking readout (readouts/tracking.py) is recurrent over the clip's frames: each of the
17 frames runs the corrector's cross-attention blocks, the predictor and the heads, so a
training step is a long chain of small kernels. This measures one training step (forward,
loss, backward, AdamW) of the point and box heads at the mini-study's narrow size
(experiments/cpu_heads.gin) and at the paper's size, on features shaped as the `small`
backbone's at 64 x 64 x 17 (5 latent frames of 8 x 8 x 256, resampled to 17 frames), batch 64,
64 point queries / 25 boxes, in three modes:

  eager            the module as the probe runs it
  compile          torch.compile(head)                      (Inductor, default mode)
  compile-graphs   torch.compile(head, mode='reduce-overhead') (Inductor + CUDA graphs)

ms/step is the median over windows of 10 steps (device synchronised at window ends);
'first step s' is the wall time of the first step (compilation included).
Prints a markdown table and writes it to --out if given.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import torch  # noqa: E402
from einops import rearrange  # noqa: E402

from readouts import losses  # noqa: E402
from readouts.tracking import TrackingReadout  # noqa: E402

SIZES = {"narrow": dict(latent_size=64, qkv_size=64, num_heads=2, mlp_size=128, num_layers=1),
         "paper": {}}
MODES = ("eager", "compile", "compile-graphs")
BATCH, FRAMES, LATENT_FRAMES, SIDE, DIM = 64, 17, 5, 8, 256
QUERIES = {"points": 64, "boxes": 25}


def _inputs(kind: str, device, g: torch.Generator) -> tuple:
    feats = torch.randn(BATCH, FRAMES, SIDE, SIDE, DIM, generator=g).to(device)
    n = QUERIES[kind]
    if kind == "points":
        queries = torch.rand(BATCH, n, 2, generator=g).to(device)
        target = torch.rand(BATCH, n, FRAMES, 2, generator=g).to(device)
        occluded = (torch.rand(BATCH, n, FRAMES, generator=g) < 0.15).to(device)
        return feats, queries, target, occluded
    # Two random corners per box, sorted per coordinate: corner 0 = (x0, y0) <= corner 1 = (x1, y1).
    corners = torch.rand(BATCH, n, FRAMES, 2, 2, generator=g).sort(dim=-2).values
    target = rearrange(corners, "b n t corner xy -> b n t (corner xy)").to(device)  # [x0, y0, x1, y1]
    valid = (torch.rand(BATCH, n, FRAMES, generator=g) < 0.9).to(device)
    return feats, target[:, :, 0], target, valid


def _loss(kind: str, out: dict, target, mask) -> torch.Tensor:
    if kind == "points":
        return losses.point_track_loss(out["values"], out["logits"], target, mask)
    return losses.box_track_loss(out["values"], target, mask)


def measure(kind: str, size: str, mode: str, steps: int, device) -> dict:
    g = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    head = TrackingReadout(DIM, kind, **SIZES[size]).to(device)
    params = sum(p.numel() for p in head.parameters())
    model = head
    if mode == "compile":
        model = torch.compile(head)
    elif mode == "compile-graphs":
        model = torch.compile(head, mode="reduce-overhead")
    opt = torch.optim.AdamW(head.parameters(), lr=1e-4)
    feats, queries, target, mask = _inputs(kind, device, g)

    def step():
        loss = _loss(kind, model(feats, queries), target, mask)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss

    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    t0 = time.perf_counter()
    step()
    sync()
    first = time.perf_counter() - t0
    for _ in range(5):
        step()
    windows = []
    for _ in range(max(1, steps // 10)):
        sync()
        t0 = time.perf_counter()
        for _ in range(10):
            loss = step()
        sync()
        windows.append((time.perf_counter() - t0) / 10 * 1e3)
    return {"kind": kind, "size": size, "mode": mode, "params": params, "first_s": first,
            "ms": statistics.median(windows), "loss": float(loss.detach())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    parser.add_argument("--sizes", nargs="+", default=list(SIZES), choices=list(SIZES))
    parser.add_argument("--out")
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    name = torch.cuda.get_device_name() if device.type == "cuda" else platform.processor() or "cpu"
    rows = []
    for kind in QUERIES:
        for size in args.sizes:
            base = None
            for mode in args.modes:
                try:
                    r = measure(kind, size, mode, args.steps, device)
                except Exception as err:  # noqa: BLE001 - a mode that fails is a result too
                    rows.append(f"| {kind} | {size} | | {mode} | failed: {str(err).splitlines()[0][:80]} | | | |")
                    continue
                base = base or r["ms"]
                rows.append(f"| {kind} | {size} | {r['params']:,} | {mode} | {r['ms']:.2f} | "
                            f"{base / r['ms']:.2f}x | {r['first_s']:.1f} | {r['loss']:.4f} |")
                print(rows[-1], flush=True)
    lines = [f"# Tracking readout training step: eager vs torch.compile", "",
             f"Device: {device.type} ({name}); torch {torch.__version__}; batch {BATCH}, {FRAMES} frames of "
             f"{SIDE} x {SIDE} x {DIM} features; {args.steps} timed steps after 6 warm-up steps.", "",
             "| head | size | params | mode | ms/step (median) | speed-up vs eager | first step s | loss at end |",
             "|---|---|---|---|---|---|---|---|", *rows, "",
             f"Command: `python benchmarks/tracking_readout_speed.py --steps {args.steps}"
             + (f" --out {args.out}`" if args.out else "`")]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        Path(args.out).write_text(text)


if __name__ == "__main__":
    main()

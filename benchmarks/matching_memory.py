"""Memory of the matching tracking readout per step, with and without query chunks.

  python benchmarks/matching_memory.py [--batch 64] [--eval_batch 128] [--configs 0:0 16:1 ...]

The base study's tracking probes ran its H200 out of memory (8 workers, 28 GB in one tracking
probe; results/base_study/summary.md, run 3): the matcher's per-pixel tensors are
(b, q, T, H, W). This measures, at the study's shapes (40m features d = 512 on a 5 x 8 x 8
token grid, 17 clip frames, 64 x 64 pixels; 64 point queries, or 25 boxes x 9 points; the
study's TRACK_HEAD), the peak memory a training step (forward, the tracking loss with its
matching term, backward) and an evaluation forward add on top of the inputs, and the step's
time, for each `query_chunk` and `recompute` (0:0 is the head as run 3 ran it). Each configuration runs in a fresh process on the CPU (peak
resident memory, getrusage); the same tensors live on the GPU there, so the ratios carry over
(CUDA-graph pools come on top and are not measured here).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import resource
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
HEAD = {"key_dim": 32, "hidden": 64, "window": 0, "locality": 0.2}   # the study's TRACK_HEAD


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure(kind: str, chunk: int, recompute: bool, mode: str, batch: int, steps: int, queue) -> None:
    """One process per (kind, chunk, mode): getrusage's peak never goes down."""
    sys.path.insert(0, str(REPO))
    import torch
    from readouts.losses import match_loss
    from readouts.matching import MatchingTrackReadout
    from readouts.resample import time_weights

    torch.manual_seed(0)
    torch.set_num_threads(2)
    num = 64 if kind == "points" else 25
    coords = 2 if kind == "points" else 4
    head = MatchingTrackReadout(512, kind, **HEAD, query_chunk=chunk, recompute=recompute)
    weights = time_weights(5, 17)

    def inputs(b):
        q = torch.rand(b, num, coords) * 0.5
        if kind == "boxes":
            q[..., 2:] += 0.4
        return torch.randn(b, 5, 8, 8, 512), q, torch.rand(b, num, 17, coords)

    x, q, target = inputs(batch)
    base = _peak_mb()
    if mode == "eval":
        head.eval()
        t0 = time.perf_counter()
        with torch.no_grad():
            head(x, q, None, weights)
        queue.put({"mb": _peak_mb() - base, "s": time.perf_counter() - t0})
        return
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        out = head(x, q, None, weights)
        loss = (out["values"] - target).abs().mean()
        if "match_logits" in out:
            loss = loss + match_loss(out["match_logits"], target[:, :, out["match_frames"]],
                                     torch.ones(batch, num, 5, dtype=torch.bool))
        loss.backward()
        head.zero_grad(set_to_none=True)
        del out, loss
        times.append(time.perf_counter() - t0)
    queue.put({"mb": _peak_mb() - base, "s": statistics.median(times)})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--eval_batch", type=int, default=128)
    ap.add_argument("--configs", nargs="*", default=["0:0", "16:0", "16:1", "32:1"],
                    help="query_chunk:recompute pairs (0:0 = the head before chunks)")
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--out", default=None, help="also write the rows as JSON here")
    args = ap.parse_args()
    ctx = multiprocessing.get_context("spawn")
    rows = []
    for kind in ("points", "boxes"):
        for config in args.configs:
            chunk, recompute = (int(v) for v in config.split(":"))
            row = {"kind": kind, "query_chunk": chunk, "recompute": bool(recompute)}
            for mode, batch in (("train", args.batch), ("eval", args.eval_batch)):
                queue = ctx.Queue()
                proc = ctx.Process(target=measure, args=(kind, chunk, bool(recompute), mode, batch, args.steps, queue))
                proc.start()
                got = queue.get()
                proc.join()
                row[f"{mode}_mb"], row[f"{mode}_s"] = round(got["mb"]), round(got["s"], 2)
            rows.append(row)
            print(json.dumps(row), flush=True)
    print(f"\nbatch {args.batch} (train), {args.eval_batch} (eval); CPU, peak resident memory above the inputs\n")
    print("| kind | query_chunk | recompute | train step MB | eval forward MB | train step s | eval forward s |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['kind']} | {r['query_chunk'] or 'all'} | {'yes' if r['recompute'] else 'no'} "
              f"| {r['train_mb']:,} | {r['eval_mb']:,} "
              f"| {r['train_s']} | {r['eval_s']} |")
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()

"""What a noise ensemble costs (Probe.noise_draws = K) and what it changes, on the CPU.

The shipped V-WALT small (checkpoints/) over 8 clips of the synthetic motion analog
(17 x 64 x 64), block 5 at t = 200 and t = 500, batch 8, K in (1, 2, 4), through the engine's
`probing.extract.block_features`. Per K: seconds per clip (median of --repeats), the ratio to
K = 1, and how much noise is left in the features: the relative L2 distance between two
independent K-draw means (noise_seed 0 vs 1), ||f_K - f'_K|| / ||f_K|| over all tokens; for a mean
of independent draws it falls as 1/sqrt(K).

  python benchmarks/noise_draws.py --out benchmarks/results/noise_draws.md
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from backbones.build import build_backbone
from probing import extract
from tasks.synthetic.builders import motion_task


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=None)
    parser.add_argument("--clips", type=int, default=8)
    parser.add_argument("--draws", default="1,2,4")
    parser.add_argument("--timesteps", default="200,500")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(2)
    backbone = build_backbone(variant="video", tokenizer_checkpoint="checkpoints/tokenizer_small.safetensors",
                              walt_checkpoint="checkpoints/vwalt_small.safetensors", image_size=64)
    task = motion_task(num_train=args.clips, num_val=args.clips, image_size=64, num_frames=17)
    batch = torch.utils.data.default_collate([task.split("val")[i] for i in range(args.clips)])
    seeds, other = extract.noise_seeds(batch, 0), extract.noise_seeds(batch, 1)
    rows = []
    for t in (int(v) for v in args.timesteps.split(",")):
        for k in (int(v) for v in args.draws.split(",")):
            with torch.no_grad():
                ref = extract.block_features(backbone, batch["video"], t, [5], other, k)[5]
            times = []
            for _ in range(args.repeats):
                t0 = time.perf_counter()
                with torch.no_grad():
                    feats = torch.cat([extract.block_features(backbone, batch["video"][i:i + 8], t, [5],
                                                              seeds[i:i + 8], k)[5]
                                       for i in range(0, args.clips, 8)])  # batch 8
                times.append(time.perf_counter() - t0)
            per_clip = statistics.median(times) / args.clips
            dist = float((feats.float() - ref).norm() / ref.norm())
            rows.append((t, k, per_clip, dist))
    base = {t: s for t, k, s, _ in rows if k == 1}
    lines = [f"CPU ({torch.get_num_threads()} threads), torch {torch.__version__}; V-WALT small "
             f"(checkpoints/), 17 x 64 x 64 clips, block 5, batch 8, {args.clips} clips, "
             f"{args.repeats} repeats. Command: python benchmarks/noise_draws.py --clips "
             f"{args.clips} --timesteps {args.timesteps} --repeats {args.repeats}", "",
             "| t | K | s / clip | x K = 1 | noise left: rel. L2 between two K-draw means |",
             "|---|---|---|---|---|"]
    lines += [f"| {t} | {k} | {s:.3f} | {s / base[t]:.2f} | {d:.4f} |" for t, k, s, d in rows]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        from walt.checkpoint import write_text_atomic
        write_text_atomic(args.out, "# Noise ensembles: cost and effect (Probe.noise_draws)\n\n"
                          "    python benchmarks/noise_draws.py --out benchmarks/results/noise_draws.md\n\n"
                          + text)


if __name__ == "__main__":
    main()

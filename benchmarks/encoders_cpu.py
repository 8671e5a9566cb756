"""CPU timing of the encoder adapters against the library's own forward: random-weight ViT-S/14
DINOv2 at 224 and ViT-S-shaped VideoMAE on 16 x 224 clips, batch 1, float32, one thread, median
of 5. The adapter's time includes its preprocessing; the library's excludes it (and includes its
final LayerNorm). Prints a markdown table.

  PYTHONPATH=$PWD python benchmarks/encoders_cpu.py
"""

import statistics
import tempfile
import time

import torch
from transformers import Dinov2Config, Dinov2Model, VideoMAEConfig, VideoMAEModel

from backbones.dinov2 import build_dinov2
from backbones.videomae import build_videomae


def median_seconds(fn, repeats: int = 5) -> float:
    fn()                                    # warm-up: allocator, first-call dispatch
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main():
    torch.set_num_threads(1)                # the development VM's cores are shared
    root = tempfile.mkdtemp()
    Dinov2Model(Dinov2Config(hidden_size=384, num_hidden_layers=12, num_attention_heads=6)
                ).save_pretrained(f"{root}/dinov2")
    VideoMAEModel(VideoMAEConfig(hidden_size=384, intermediate_size=1536, num_hidden_layers=12,
                                 num_attention_heads=6)).save_pretrained(f"{root}/videomae")
    cases = [("DINOv2 ViT-S/14, 1 x 224", build_dinov2(f"{root}/dinov2", device="cpu"), 1),
             ("VideoMAE ViT-S, 16 x 224", build_videomae(f"{root}/videomae", device="cpu"), 16)]
    print("| model | library forward ms | adapter block 12 ms | ratio | adapter block 4 ms | "
          "block 4 / block 12 |")
    print("|---|---|---|---|---|---|")
    for name, backbone, frames in cases:
        video = torch.randint(0, 256, (1, frames, 224, 224, 3), dtype=torch.uint8)
        pixels = backbone.preprocess(video)
        with torch.no_grad():
            library = median_seconds(lambda: backbone.model(pixel_values=pixels))
        full = median_seconds(lambda: backbone.features(video, 0, [12]))
        third = median_seconds(lambda: backbone.features(video, 0, [4]))
        print(f"| {name} | {library * 1e3:.0f} | {full * 1e3:.0f} | {full / library:.3f} | "
              f"{third * 1e3:.0f} | {third / full:.3f} |")


if __name__ == "__main__":
    main()

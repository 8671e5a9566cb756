"""The controls table in-process (no gin, no CLI): oracle / pixels / tokenizer latents / trivial
for each task kind, with the mini-study's CPU heads (gin/experiments/cpu_heads.gin sizes) and
the paper's readout settings otherwise (default visibility rule, no token positions).

  PYTHONPATH=$PWD python results/controls/controls_table.py --out results/controls/table_tiny.jsonl \
      [--image_size 32 --num_frames 9 --num_train 48 --num_val 16 --steps 300 --lr 1e-3]

Appends one JSON line per (task, row); batch size 8, AdamW at a constant lr (fit_and_score in
tests/backbones/test_controls.py). Scored on val.
"""

import argparse
import json
import sys
import time

import torch

from backbones.oracle import OracleBackbone
from backbones.pixels import PixelsBackbone
from tasks import baselines
from tasks.synthetic import builders
from tests.backbones.test_controls import fit_and_score

CPU_ATTENTIVE = {"width": 128, "num_heads": 4}
CPU_TRACKING = {"latent_size": 64, "qkv_size": 64, "num_heads": 2, "mlp_size": 128, "num_layers": 1}
# gin/experiments/cpu_heads.gin's CPU_DEPTH: the study's depth head decodes each token's own
# pixels (decoder='unpatchify'; the paper's SRT decoder cannot read the oracle, README.md).
CPU_DEPTH = {"qkv_size": 64, "num_heads": 2, "mlp_size": 128, "decoder": "unpatchify"}
HEADS = {"objects": CPU_ATTENTIVE, "motion": CPU_ATTENTIVE, "depth": CPU_DEPTH, "pose": CPU_ATTENTIVE,
         "point_tracks": CPU_TRACKING, "box_tracks": CPU_TRACKING}


class WaltBlock:
    """A shipped small WALT checkpoint (checkpoints/) seen as a one-block backbone: block 5 of 8
    (the mini-study's, ~2/3 depth) at t = 200, whatever block / t the caller asks for."""

    BLOCK, T = 5, 200

    def __init__(self, variant: str, image_size: int, num_frames: int):
        from backbones.build import build_backbone
        name = {"image": "iwalt", "video": "vwalt"}[variant]
        self.inner = build_backbone(variant=variant, image_size=image_size, num_frames=num_frames,
                                    tokenizer_checkpoint="checkpoints/tokenizer_small.safetensors",
                                    walt_checkpoint=f"checkpoints/{name}_small.safetensors")
        self.feature_dim = self.inner.feature_dim

    def features(self, video, t, blocks, seeds=None):
        feats = self.inner.features(video, self.T, [self.BLOCK], seeds=seeds)[self.BLOCK]
        return {block: feats for block in blocks}


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--out", required=True)
    p.add_argument("--tasks", default="objects,pose,depth,box_tracks,point_tracks")
    p.add_argument("--rows", default="trivial,oracle,pixels,latents")
    p.add_argument("--image_size", type=int, default=32)
    p.add_argument("--num_frames", type=int, default=9)
    p.add_argument("--num_train", type=int, default=48)
    p.add_argument("--num_val", type=int, default=16)
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--schedule", default="constant", help="'constant' or 'paper' (fit_and_score)")
    p.add_argument("--warmup", type=int, default=100, help="warm-up steps of the 'paper' schedule")
    p.add_argument("--seed", type=int, default=0, help="readout seed (the head's initialisation)")
    a = p.parse_args()
    torch.set_num_threads(1)
    for analog in a.tasks.split(","):
        task = builders.BUILDERS[analog](head_kwargs=HEADS[analog], num_train=a.num_train,
                                         num_val=a.num_val, num_test=0, image_size=a.image_size,
                                         num_frames=a.num_frames)
        for row in a.rows.split(","):
            t0 = time.time()
            if row == "trivial":
                result = baselines.trivial_metrics(task, batch_size=8)
                value, metrics = result["value"], result["metrics"]
            else:
                backbone = {"oracle": lambda: OracleBackbone(analog, image_size=a.image_size,
                                                             num_frames=a.num_frames),
                            "pixels": lambda: PixelsBackbone("rgb"),
                            "latents": lambda: PixelsBackbone(
                                "latents", tokenizer_checkpoint="checkpoints/tokenizer_small.safetensors"),
                            "iwalt": lambda: WaltBlock("image", a.image_size, a.num_frames),
                            "vwalt": lambda: WaltBlock("video", a.image_size, a.num_frames),
                            }[row]()
                metrics = fit_and_score(task, backbone, a.steps, a.lr, all_metrics=True,
                                        schedule=a.schedule, warmup=a.warmup, seed=a.seed)
                value = metrics[task.metric]
            record = {"task": analog, "row": row, "metric": task.metric, "value": value,
                      "metrics": {k: float(v) for k, v in metrics.items()},
                      "seconds": round(time.time() - t0, 1), "scale": vars(a)}
            with open(a.out, "a") as f:
                f.write(json.dumps(record) + "\n")
            print(f"{analog:13s} {row:8s} {task.metric} = {value:.4f} ({record['seconds']} s)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

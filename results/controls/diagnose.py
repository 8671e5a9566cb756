"""Readout diagnosis on the oracle at tiny scale (in-process, no gin): each line changes one
readout setting and prints the oracle's headline metric next to the trivial predictor's.

  PYTHONPATH=$PWD python results/controls/diagnose.py [--image_size 32 --num_frames 9 ...]
"""

import argparse
import json
import sys
import time

import torch

from backbones.oracle import OracleBackbone
from tasks import baselines
from tasks.synthetic import builders
from tests.backbones.test_controls import ATTENTIVE, DEPTH, TRACKING, fit_and_score

VARIANTS = [  # name, analog, head kwargs, task kwargs, steps, lr, time grid
    ("depth", "depth", DEPTH, {}, 300, 3e-3, "latent"),
    ("depth+token_pos", "depth", {**DEPTH, "token_position_bases": 8}, {}, 300, 3e-3, "latent"),
    ("pose", "pose", ATTENTIVE, {}, 300, 1e-3, "latent"),
    ("points certainty", "point_tracks", TRACKING, {}, 300, 3e-3, "latent"),
    ("points visibility", "point_tracks", TRACKING, {"visibility_rule": "visibility"}, 300, 3e-3, "latent"),
    ("points vis+token_pos", "point_tracks", {**TRACKING, "token_position_bases": 8},
     {"visibility_rule": "visibility"}, 300, 3e-3, "latent"),
    ("points vis frames", "point_tracks", TRACKING, {"visibility_rule": "visibility"}, 300, 3e-3, "frames"),
    ("boxes", "box_tracks", TRACKING, {}, 300, 3e-3, "latent"),
    ("boxes+token_pos", "box_tracks", {**TRACKING, "token_position_bases": 8}, {}, 300, 3e-3, "latent"),
]


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--image_size", type=int, default=32)
    p.add_argument("--num_frames", type=int, default=9)
    p.add_argument("--num_train", type=int, default=48)
    p.add_argument("--num_val", type=int, default=16)
    p.add_argument("--only", default="")
    p.add_argument("--cache_dir", default=None)
    a = p.parse_args()
    torch.set_num_threads(1)
    for name, analog, head, task_kwargs, steps, lr, grid in VARIANTS:
        if a.only and a.only not in name:
            continue
        t0 = time.time()
        task = builders.BUILDERS[analog](cache_dir=a.cache_dir, head_kwargs=head, task_kwargs=task_kwargs,
                                         num_train=a.num_train, num_val=a.num_val, num_test=0,
                                         image_size=a.image_size, num_frames=a.num_frames)
        oracle = OracleBackbone(analog, image_size=a.image_size, num_frames=a.num_frames, time_grid=grid)
        trivial = baselines.trivial_metrics(task, batch_size=8)
        metrics = fit_and_score(task, oracle, steps, lr, all_metrics=True)
        print(json.dumps({"variant": name, "metric": task.metric, "oracle": metrics[task.metric],
                          "trivial": trivial["value"], "steps": steps, "lr": lr, "time_grid": grid,
                          "other": {k: round(v, 3) for k, v in metrics.items()
                                    if k in ("occlusion_accuracy", "average_pts_within_thresh")},
                          "seconds": round(time.time() - t0)}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

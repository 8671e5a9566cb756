"""Ceilings of TAP-Vid average Jaccard at a small raster (closed form, no learning): the val
split's ground-truth tracks snapped to a grid of `cell` pixels, scored with the true occlusion.

  PYTHONPATH=$PWD python results/controls/track_ceiling.py --image_size 32 --num_frames 9

cell 1 is a tracker exact to the pixel (the oracle's xy channels hold pixel centres); cell 8 one
exact to the token. Prints one JSON line per cell.
"""

import argparse
import json
import sys

import numpy as np
import torch

from readouts.tapvid import compute_tapvid_metrics, query_to_raster, to_raster
from tasks import baselines
from tasks.synthetic import builders


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--image_size", type=int, default=32)
    p.add_argument("--num_frames", type=int, default=9)
    p.add_argument("--num_train", type=int, default=48)
    p.add_argument("--num_val", type=int, default=16)
    p.add_argument("--cache_dir", default=None)
    a = p.parse_args()
    torch.set_num_threads(1)
    size = (a.image_size, a.image_size)
    task = builders.BUILDERS["point_tracks"](cache_dir=a.cache_dir, num_train=a.num_train,
                                             num_val=a.num_val, num_test=0,
                                             image_size=a.image_size, num_frames=a.num_frames)
    for cell in (0, 1, 2, 4, 8):
        per_batch = []
        for batch in baselines.batches(task.split("val"), 8):
            gt = batch["target_points"].float().numpy()
            # Snap to the centre of the cell the point falls in (cell 0: exact).
            pred = gt if cell == 0 else (np.floor(gt / cell) + 0.5) * cell
            occluded = batch["occluded"].numpy().astype(bool)
            m = compute_tapvid_metrics(query_to_raster(batch["query_points"], size), occluded,
                                       to_raster(gt, size), occluded, to_raster(pred, size), "first")
            per_batch.append({k: float(np.mean(v)) for k, v in m.items()})
        print(json.dumps({"image_size": a.image_size, "num_frames": a.num_frames, "cell": cell,
                          **{k: round(float(np.mean([r[k] for r in per_batch])), 3)
                             for k in ("average_jaccard", "average_pts_within_thresh")}}))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The Task contract: data + head + loss + metric + how activations become head input.

A probe run needs nothing else from a task. Real datasets (`tasks/real/`) and the synthetic
world (`tasks/synthetic/`) produce items with the same keys; a task *kind*
(`tasks/kinds.py`: classification, depth, camera pose, point tracks, box tracks) binds those
keys to a readout head, its loss and its metric.

Item keys (one example; a batch adds a leading `b`). Coordinates are spelled out because
they are where probing code silently goes wrong:

  video          uint8 (T, H, W, 3). Clips: T = 17. Images: T = 1 (the backbone decides whether
                 to tile it over 17 frames; V-WALT does by default, paper App. D.1).
  index          int64 ()  position of the example in its split; seeds the evaluation noise, so
                 features are reproducible and cacheable.
  label          int64 ()  class index in [0, num_classes)                       (classification)
  depth          float32 (T, H, W) metric depth in metres along the optical axis; 0 = invalid (depth)
  intrinsics     float32 (3, 3) pixel-unit K of the clip raster                  (depth, pose; optional)
  pose           float32 (3, 4) [R | t] relative pose of the LAST frame w.r.t. the FIRST:
                 maps points from last-camera coordinates into first-camera coordinates,
                 i.e. inv(cam_to_world_first) @ cam_to_world_last; t in metres.   (camera pose)
  query_points   float32 (Q, 3) [t, y, x]: frame index, then pixel row / column in the clip
                 raster (TAP-Vid convention).                                     (point tracks)
  target_points  float32 (Q, T, 2) [x, y] pixel coordinates per frame (TAP-Vid convention).
  occluded       bool (Q, T) True where the point is hidden or outside the frame.
  boxes          float32 (N, T, 4) [x0, y0, x1, y1] in [0, 1] of the frame width/height,
                 padded to N = 25 tracks                                          (box tracks)
  box_valid      bool (N, T) True where track n has a box in frame t.

Pixel coordinates: x to the right, y down, the centre of the top-left pixel at (0.5, 0.5).

Keys the probe engine adds (never a dataset):
  feature_spans  float32 (t', 2) [start, stop) of the clip frames each feature frame covers
                 (backbones/base.py frame_spans); task kinds resample time on it.
  view           int64 ()  which cached augmented view of the example (feature cache only).

A dataset whose items are drawn at random on each access (random crops, flips, temporal
windows: the real readers' train splits) says so with `augments = True`; the feature cache
then stores K views per example (Probe.cache_views) or refuses (probing/extract.py).

Multi-clip evaluation (Probe.eval_clips): a video dataset may offer `clip(i, view, num_views)`,
item i seen through the view-th of num_views evenly spaced temporal windows (same keys, same
index); `ClipView` presents one view as a dataset.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping, Protocol

import torch
from torch import nn

Batch = Mapping[str, torch.Tensor]


class Accumulator(Protocol):
    """Turns per-batch predictions into the dataset metric with the reference's reduction."""

    def update(self, preds: Any, batch: Batch) -> None: ...

    def result(self) -> dict[str, float]: ...


@dataclasses.dataclass
class Task:
    """One probing task, complete. Built by a task kind from a dataset pair.

    name: short name ('objects', 'k400', 'point_tracks', ...), used in results tables.
    datasets: split name ('train', 'val') -> torch-style dataset of items (keys above).
    make_head: feature_dim D -> a fresh readout head (readouts/).
    head_inputs: (activations (b, t, h, w, D) of one block, batch) -> positional args of the head.
    loss: (head output, batch) -> scalar loss.
    new_accumulator: () -> a fresh Accumulator for evaluation.
    metric: the headline key of Accumulator.result().
    higher_is_better: direction of `metric`.
    image_task: True when items are single images (T = 1).
    """

    name: str
    datasets: Mapping[str, Any]
    make_head: Callable[[int], nn.Module]
    head_inputs: Callable[[torch.Tensor, Batch], tuple]
    loss: Callable[[Any, Batch], torch.Tensor]
    new_accumulator: Callable[[], Accumulator]
    metric: str
    higher_is_better: bool
    image_task: bool = False

    def split(self, name: str):
        """The dataset of split `name`, or a KeyError naming the splits that exist."""
        if name not in self.datasets:
            raise KeyError(f"task '{self.name}' has no split '{name}'; it has: "
                           f"{', '.join(sorted(self.datasets))}")
        return self.datasets[name]


class ClipView:
    """Dataset of view `view` of `num_views` evenly spaced clips of every video of `dataset`
    (its `clip(i, view, num_views)`); item i keeps index i, so the views of one video share
    their evaluation noise and are averaged by index."""

    def __init__(self, dataset, view: int, num_views: int):
        if not callable(getattr(dataset, "clip", None)):
            raise ValueError(f"{type(dataset).__name__} has no clip(i, view, num_views): it offers "
                             f"one clip per example, so Probe.eval_clips must stay 1 for it")
        self.dataset, self.view, self.num_views = dataset, int(view), int(num_views)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int):
        return self.dataset.clip(i, self.view, self.num_views)

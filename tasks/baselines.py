"""Trivial predictors: what a task scores without looking at the input.

A probe result means something only next to the score of a predictor that ignores the
features. `trivial_metrics(task)` fits the obvious input-free predictor of the task's kind on
the TRAIN split and scores it on the VAL split with the task's own accumulator
(`task.new_accumulator()`, the metric code every probe uses), so the numbers are directly
comparable with probe results:

  classification  the majority class of train (ties: the lowest class index, as argmax).
  depth           the per-pixel AbsRel-optimal constant map of train: at each pixel, the
                  median of the training depths weighted by 1 / depth (pooled over frames).
                  AbsRel = mean |p - d| / d is an L1 loss with weights 1 / d, whose minimiser
                  over a constant p is exactly that weighted median; the per-pixel mean map
                  (the 'mean depth' baseline of Eigen et al. 2014, optimal for squared error)
                  is reported as an alternative.
  camera pose     the mean training relative pose: the mean rotation matrix projected onto
                  SO(3) (chordal L2 mean) with the mean translation. The identity pose
                  ('the camera did not move') is reported as an alternative.
  point tracks    zero motion (TAP-Vid's standard trivial baseline): every point stays at its
                  query position and is always visible. Nothing is fitted.
  box tracks      each frame-0 (query) box copied to every frame. Nothing is fitted.

Predictions are fed to the accumulator in the shape the kind's readout head returns
(tasks/kinds.py): logits (b, k); {"depth", "rows", "cols"}; {"pose"}; {"values", "logits"};
{"values"}. The kind is read from the task's headline metric.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Iterator

import roma
import torch
from einops import rearrange, repeat

from tasks.task import Batch, Task
from walt_probe.errors import ConfigurationError

KIND_OF_METRIC = {"top1": "classification", "abs_rel": "depth", "pose_error": "camera_pose",
                  "average_jaccard": "point_tracks", "mean_iou": "box_tracks"}
# Logit that makes a tracked point certainly visible: sigmoid(12)^2 > 0.5 by a wide margin.
VISIBLE_LOGIT = 12.0


def task_kind(task: Task) -> str:
    """The task kind (tasks/kinds.py) behind the task's headline metric."""
    if task.metric not in KIND_OF_METRIC:
        raise ConfigurationError(f"task '{task.name}' has headline metric '{task.metric}', which has no "
                                 f"trivial predictor; known metrics: {', '.join(KIND_OF_METRIC)}")
    return KIND_OF_METRIC[task.metric]


def batches(dataset, batch_size: int = 32) -> Iterator[dict[str, torch.Tensor]]:
    """Collated batches of a torch-style dataset of items, in order, in this process."""
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=False,
                                         num_workers=0)
    yield from loader


def evaluate(task: Task, predict: Callable[[Batch], Any], split: str = "val",
             batch_size: int = 32) -> dict[str, float]:
    """Scores `predict` (batch -> head-shaped predictions) on a split with the task's accumulator."""
    acc = task.new_accumulator()
    for batch in batches(task.split(split), batch_size):
        acc.update(predict(batch), batch)
    return acc.result()


# ---- classification -------------------------------------------------------------------------

def fit_majority(task: Task, batch_size: int = 32) -> tuple[int, float]:
    """(majority class of train, its frequency in train)."""
    labels = torch.cat([rearrange(b["label"].long(), "... -> (...)")
                        for b in batches(task.split("train"), batch_size)])
    if labels.numel() == 0:
        raise ConfigurationError(f"task '{task.name}': the train split is empty; nothing to fit")
    counts = torch.bincount(labels)
    majority = int(counts.argmax())  # ties -> the lowest index, as top1's argmax
    return majority, float(counts[majority]) / labels.numel()


def majority_logits(batch: Batch, majority: int) -> torch.Tensor:
    """(b, k = majority + 1) one-hot logits: argmax is the majority class for every example."""
    size = len(batch["label"])
    logits = torch.zeros(size, majority + 1)
    logits[:, majority] = 1.0
    return logits


# ---- depth ----------------------------------------------------------------------------------

def weighted_median(values: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Per-column weighted median. values, weights: (n, p), weights >= 0 -> (p,).

    The smallest value v with sum_{values <= v} w >= sum w / 2, i.e. a minimiser of
    sum_i w_i |v - values_i|. Columns with zero total weight give NaN.
    """
    order = values.argsort(dim=0)
    sorted_values, sorted_weights = values.gather(0, order), weights.gather(0, order)
    cumulative = sorted_weights.cumsum(dim=0)
    total = cumulative[-1]
    first = (cumulative >= total / 2).float().argmax(dim=0)       # first index reaching half
    out = sorted_values.gather(0, first[None])[0]
    return torch.where(total > 0, out, torch.full_like(out, float("nan")))


def fit_depth_maps(task: Task, batch_size: int = 32,
                   max_maps: int = 4096) -> dict[str, torch.Tensor]:
    """{"median": (H, W) 1/depth-weighted median map, "mean": (H, W) mean map} of train depth.

    Pixels pool over every frame of every training clip; 0 (no measurement) is ignored. The
    mean is exact over the split; the weighted median uses at most `max_maps` frame maps taken
    at an even stride (memory: max_maps x H x W floats). A pixel never measured in train gets
    the value of all its measured pixels pooled.
    """
    train = task.split("train")
    total_maps, stride, seen = None, 1, 0
    total = count = None
    kept = []
    for batch in batches(train, batch_size):
        depth = rearrange(batch["depth"].float(), "b t y x -> (b t) y x")
        if total_maps is None:
            total_maps = len(train) * batch["depth"].shape[1]
            stride = max(1, math.ceil(total_maps / max_maps))
            total, count = torch.zeros(depth.shape[1:], dtype=torch.float64), torch.zeros(depth.shape[1:])
        valid = depth > 0
        total += torch.where(valid, depth, 0).sum(0, dtype=torch.float64)
        count += valid.sum(0)
        picked = (torch.arange(seen, seen + len(depth)) % stride) == 0
        kept.append(depth[picked])
        seen += len(depth)
    if total is None or count.sum() == 0:
        raise ConfigurationError(f"task '{task.name}': the train split has no valid depth pixel")
    mean = (total / count.clamp(min=1)).float()
    mean = torch.where(count > 0, mean, (total.sum() / count.sum()).float())
    maps = rearrange(torch.cat(kept), "n y x -> n (y x)")
    weights = torch.where(maps > 0, 1.0 / maps.clamp(min=1e-12), torch.zeros_like(maps))
    median = weighted_median(maps, weights)
    pooled = weighted_median(rearrange(maps, "n p -> (n p) 1"), rearrange(weights, "n p -> (n p) 1"))
    median = rearrange(torch.where(median.isnan(), pooled, median), "(y x) -> y x", y=mean.shape[0])
    return {"median": median, "mean": mean}


def constant_depth(batch: Batch, depth_map: torch.Tensor) -> dict[str, torch.Tensor]:
    """The DepthReadout eval output for a constant (H, W) map: every frame, every pixel."""
    frames, height, width = batch["depth"].shape[1:]
    if (height, width) != tuple(depth_map.shape):
        raise ConfigurationError(f"val depth maps are {height} x {width} but the train ones are "
                                 f"{tuple(depth_map.shape)}; both splits must share one raster")
    return {"depth": repeat(depth_map, "y x -> b t y x", b=len(batch["depth"]), t=frames),
            "rows": torch.arange(height), "cols": torch.arange(width)}


# ---- camera pose ----------------------------------------------------------------------------

def fit_mean_pose(task: Task, batch_size: int = 32) -> torch.Tensor:
    """(3, 4) mean training pose: mean rotation projected onto SO(3), mean translation."""
    poses = torch.cat([b["pose"].double() for b in batches(task.split("train"), batch_size)])
    if len(poses) == 0:
        raise ConfigurationError(f"task '{task.name}': the train split is empty; nothing to fit")
    mean = poses.mean(dim=0)
    # The closest rotation (Frobenius) to the mean matrix: the chordal L2 mean of the rotations.
    rotation = roma.special_procrustes(mean[:, :3])
    return torch.cat([rotation, mean[:, 3:]], dim=1).float()


def identity_pose() -> torch.Tensor:
    """(3, 4) [I | 0]: the last camera sits where the first one was."""
    return torch.cat([torch.eye(3), torch.zeros(3, 1)], dim=1)


def constant_pose(batch: Batch, pose: torch.Tensor) -> dict[str, torch.Tensor]:
    return {"pose": repeat(pose, "i j -> b i j", b=len(batch["pose"]))}


# ---- point and box tracks -------------------------------------------------------------------

def zero_motion_points(batch: Batch) -> dict[str, torch.Tensor]:
    """TrackingReadout output for points that never move and are always visible.

    query_points (b, q, [t, y, x]) pixels -> values (b, q, T, [x, y]) normalised by the frame
    width / height (the head's convention; the frame size is read from the clip), logits
    (b, q, T, 2) certainly visible.
    """
    if "video" not in batch:
        raise ConfigurationError("the zero-motion point baseline reads the frame size from 'video'; "
                                 "the items have no 'video'")
    height, width = batch["video"].shape[2:4]
    frames = batch["target_points"].shape[2]
    query = batch["query_points"].float()
    xy = torch.stack([query[..., 2] / width, query[..., 1] / height], dim=-1)
    values = repeat(xy, "b q c -> b q t c", t=frames)
    return {"values": values, "logits": torch.full((*values.shape[:3], 2), VISIBLE_LOGIT)}


def first_box_everywhere(batch: Batch) -> dict[str, torch.Tensor]:
    """TrackingReadout output copying each frame-0 box (b, n, 4) to every frame: (b, n, T, 4)."""
    boxes = batch["boxes"].float()
    first = boxes[:, :, 0]
    if "box_valid" in batch:
        # Padded tracks are never scored, but an all-zero box against an all-zero target is
        # 0 / 0 in the IoU; the whole frame keeps their (masked) IoU finite.
        whole = first.new_tensor([0.0, 0.0, 1.0, 1.0])
        first = torch.where(batch["box_valid"][:, :, :1].bool(), first, whole)
    return {"values": repeat(first, "b n c -> b n t c", t=boxes.shape[2])}


# ---- the entry point ------------------------------------------------------------------------

def _scored(task: Task, predictor: str, metrics: dict[str, float], fit: dict) -> dict:
    return {"predictor": predictor, "value": metrics.get(task.metric, float("nan")),
            "metrics": metrics, "fit": fit}


def trivial_metrics(task: Task, batch_size: int = 32, max_depth_maps: int = 4096,
                    split: str = "val") -> dict:
    """Fits the kind's trivial predictor on train, scores it on `split` (default val; the
    module docstring), e.g. 'test' for a study that selects on val and reports on test.

    Returns {task, kind, metric, higher_is_better, value, metrics, predictor, fit, num_train,
    num_val, alternatives}: value = metrics[metric] of the primary predictor, metrics = its
    accumulator result, predictor = one line saying what it predicts, fit = its fitted
    numbers (JSON-ready), alternatives = {name: {predictor, value, metrics, fit}} of the
    secondary predictors (depth: the mean map; camera pose: the identity).
    """
    kind = task_kind(task)
    run = lambda predict: evaluate(task, predict, split, batch_size)  # noqa: E731
    alternatives = {}
    if kind == "classification":
        majority, freq = fit_majority(task, batch_size)
        primary = _scored(task, f"majority class {majority} of train ({freq:.1%} of train labels)",
                          run(lambda b: majority_logits(b, majority)),
                          {"class": majority, "train_frequency": freq})
    elif kind == "depth":
        maps = fit_depth_maps(task, batch_size, max_depth_maps)
        primary = _scored(task, "per-pixel 1/depth-weighted median of train depth (AbsRel-optimal "
                                "constant map)",
                          run(lambda b: constant_depth(b, maps["median"])),
                          {"median_of_map_m": float(maps["median"].median())})
        alternatives["mean_map"] = _scored(task, "per-pixel mean of train depth",
                                           run(lambda b: constant_depth(b, maps["mean"])),
                                           {"median_of_map_m": float(maps["mean"].median())})
    elif kind == "camera_pose":
        mean = fit_mean_pose(task, batch_size)
        primary = _scored(task, "mean relative pose of train (chordal mean rotation, mean "
                                "translation)", run(lambda b: constant_pose(b, mean)),
                          {"pose": mean.tolist()})
        alternatives["identity"] = _scored(task, "identity pose (the camera did not move)",
                                           run(lambda b: constant_pose(b, identity_pose())),
                                           {"pose": identity_pose().tolist()})
    elif kind == "point_tracks":
        primary = _scored(task, "zero motion: every point stays at its query position, always "
                                "visible", run(zero_motion_points), {})
    else:
        primary = _scored(task, "each frame-0 box copied to every frame", run(first_box_everywhere), {})
    return {"task": task.name, "kind": kind, "metric": task.metric,
            "higher_is_better": task.higher_is_better, **primary,
            "num_train": len(task.split("train")), "num_val": len(task.split("val")),
            "split": split, "num_scored": len(task.split(split)), "alternatives": alternatives}

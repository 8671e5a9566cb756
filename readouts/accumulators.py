"""Accumulators: per-batch metric terms -> the dataset metric with the reference reduction.

Each has `update(...)` taking the arrays of one batch and `result() -> dict[str, float]`. They
know nothing of item keys; `tasks/kinds.py` adapts them to (preds, batch).

Reductions (documented choices where the references leave one open):
  top1             correct / examples over the split.
  abs_rel          pooled over every valid pixel of the split (the formula's 1/|V| taken over
                   the whole split); NaN if the split has no valid pixel.
  pose_error       mean over examples of the per-example cube end-point error.
  TAP-Vid          per video (compute_tapvid_metrics), then mean over videos (tapnet's
                   reduction), skipping videos whose value is NaN (no scored visible point).
  mean_iou         pooled over every scored (track, frame) pair of the split.
"""

from __future__ import annotations

import numpy as np
import torch

from readouts import metrics, tapvid


def _ratio(total: float, count: float) -> float:
    return total / count if count > 0 else float("nan")


class Top1Accumulator:
    """Top-1 accuracy. update(logits (b, k), labels (b,)). Result key: top1."""

    def __init__(self):
        self.correct, self.count = 0, 0

    def update(self, logits: torch.Tensor, labels: torch.Tensor) -> None:
        hits = metrics.top1_correct(logits.detach(), labels)
        self.correct += int(hits.sum())
        self.count += hits.numel()

    def result(self) -> dict[str, float]:
        return {"top1": _ratio(self.correct, self.count), "num_examples": float(self.count)}


class AbsRelAccumulator:
    """AbsRel over valid pixels. update(pred, target, valid) all (...). Result key: abs_rel."""

    def __init__(self):
        self.total, self.count = 0.0, 0

    def update(self, pred: torch.Tensor, target: torch.Tensor,
               valid: torch.Tensor | None = None) -> None:
        total, count = metrics.abs_rel_terms(pred.detach().double(), target.double(), valid)
        self.total += float(total)
        self.count += int(count)

    def result(self) -> dict[str, float]:
        return {"abs_rel": _ratio(self.total, self.count), "num_pixels": float(self.count)}


class PoseErrorAccumulator:
    """Cube end-point error. update(pred (b, 3, 4), target (b, 3, 4)). Result key: pose_error."""

    def __init__(self):
        self.total, self.count = 0.0, 0

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        errors = metrics.pose_endpoint_error(pred.detach().double(), target.double())
        self.total += float(errors.sum())
        self.count += errors.numel()

    def result(self) -> dict[str, float]:
        return {"pose_error": _ratio(self.total, self.count), "num_examples": float(self.count)}


class TapVidAccumulator:
    """TAP-Vid metrics per video, mean over videos.

    update(query_points, gt_occluded, gt_tracks, pred_occluded, pred_tracks): the arguments of
    compute_tapvid_metrics (256 x 256 raster). Result keys: every compute_tapvid_metrics key
    (average_jaccard is the headline) plus num_videos.
    """

    def __init__(self, query_mode: str = "first"):
        self.query_mode = query_mode
        self.values: dict[str, list[np.ndarray]] = {}

    def update(self, query_points, gt_occluded, gt_tracks, pred_occluded, pred_tracks) -> None:
        per_video = tapvid.compute_tapvid_metrics(query_points, gt_occluded, gt_tracks,
                                                  pred_occluded, pred_tracks, self.query_mode)
        for key, value in per_video.items():
            self.values.setdefault(key, []).append(np.asarray(value, dtype=np.float64))

    def result(self) -> dict[str, float]:
        out = {}
        for key, chunks in self.values.items():
            values = np.concatenate(chunks)
            finite = values[~np.isnan(values)]
            out[key] = float(finite.mean()) if finite.size else float("nan")
        out["num_videos"] = float(sum(len(c) for c in self.values.get("average_jaccard", [])))
        return out


class BoxIoUAccumulator:
    """Mean IoU excluding frame 0. update(pred, target (b, n, T, 4), valid (b, n, T)).

    Result key: mean_iou.
    """

    def __init__(self):
        self.total, self.count = 0.0, 0

    def update(self, pred: torch.Tensor, target: torch.Tensor, valid: torch.Tensor) -> None:
        total, count = metrics.box_iou_terms(pred.detach(), target, valid)
        self.total += float(total)
        self.count += int(count)

    def result(self) -> dict[str, float]:
        return {"mean_iou": _ratio(self.total, self.count), "num_boxes": float(self.count)}

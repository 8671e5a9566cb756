"""TAP-Vid point-tracking metrics with the contract of tapnet's `compute_tapvid_metrics`.

Same argument order, shapes, conventions and keys as the public reference, so numbers are
comparable with published ones (the paper reports AJ as in MooG):
  query points [t, y, x]; tracks [x, y]; pixels of a 256 x 256 raster; per-video values.
"""

from __future__ import annotations

import numpy as np

THRESHOLDS = (1, 2, 4, 8, 16)
RASTER = 256


def _array(x) -> np.ndarray:
    """numpy view of an array-like or (possibly CUDA) torch tensor."""
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def compute_tapvid_metrics(query_points, gt_occluded, gt_tracks, pred_occluded, pred_tracks,
                           query_mode: str, get_trackwise_metrics: bool = False
                           ) -> dict[str, np.ndarray]:
    """TAP-Vid metrics, per video (or per track).

    query_points: (b, n, 3) [t, y, x], t a frame index, y/x pixels of the 256 x 256 raster.
    gt_occluded: (b, n, T) bool.  gt_tracks: (b, n, T, 2) [x, y] pixels of the raster.
    pred_occluded: (b, n, T) bool.  pred_tracks: (b, n, T, 2) [x, y].
    query_mode: 'first' scores frames strictly after each query frame (the query is the
      track's first visible point); 'strided' scores every frame except the query frame.
    get_trackwise_metrics: return (b, n) values instead of (b,).

    With E the scored entries, V = E and GT visible, P = E and predicted visible,
    W_d = squared distance < d^2, for d in {1, 2, 4, 8, 16} pixels:
      occlusion_accuracy = |E and (pred_occluded == gt_occluded)| / |E|
      pts_within_d       = |V and W_d| / |V|
      jaccard_d          = |V and W_d and P| / (|V| + |P and (GT occluded or not W_d)|)
      average_jaccard    = mean_d jaccard_d;  average_pts_within_thresh = mean_d pts_within_d
    Keys: occlusion_accuracy, pts_within_{d}, jaccard_{d}, average_jaccard,
    average_pts_within_thresh; each (b,) (or (b, n)). As in the reference, a video (track) with
    no scored visible point gets NaN for pts_within_* (0 / 0), and NaN for jaccard_* unless it
    predicts some point visible (then 0); the benchmark reduction skips such NaNs
    (TapVidAccumulator).
    """
    query_points, gt_tracks, pred_tracks = map(_array, (query_points, gt_tracks, pred_tracks))
    gt_occluded, pred_occluded = _array(gt_occluded).astype(bool), _array(pred_occluded).astype(bool)
    if query_mode not in ("first", "strided"):
        raise ValueError(f"unknown query_mode '{query_mode}'; use 'first' or 'strided'")
    if gt_tracks.ndim != 4 or gt_tracks.shape[-1] != 2 or query_points.shape[-1] != 3:
        raise ValueError(f"expected query_points (b, n, 3) and gt_tracks (b, n, T, 2); received "
                         f"{query_points.shape} and {gt_tracks.shape}")
    axes = (2,) if get_trackwise_metrics else (1, 2)
    num_frames = gt_tracks.shape[2]

    # Scored entries from each track's (rounded) query frame.
    query_frame = np.round(query_points[..., 0]).astype(np.int64)[..., None]   # (b, n, 1)
    frames = np.arange(num_frames)
    scored = frames > query_frame if query_mode == "first" else frames != query_frame

    visible, pred_visible = ~gt_occluded, ~pred_occluded
    metrics: dict[str, np.ndarray] = {}
    with np.errstate(divide="ignore", invalid="ignore"):
        metrics["occlusion_accuracy"] = (
            np.sum((pred_occluded == gt_occluded) & scored, axis=axes) / np.sum(scored, axis=axes))
        num_visible = np.sum(visible & scored, axis=axes)
        sq_dist = np.sum(np.square(pred_tracks - gt_tracks), axis=-1)
        jaccards, fractions = [], []
        for d in THRESHOLDS:
            within = sq_dist < d * d
            correct = within & visible
            fractions.append(np.sum(correct & scored, axis=axes) / num_visible)
            true_pos = np.sum(correct & pred_visible & scored, axis=axes)
            false_pos = np.sum(pred_visible & (~visible | ~within) & scored, axis=axes)
            jaccards.append(true_pos / (num_visible + false_pos))
            metrics[f"pts_within_{d}"] = fractions[-1]
            metrics[f"jaccard_{d}"] = jaccards[-1]
    metrics["average_jaccard"] = np.mean(np.stack(jaccards, axis=-1), axis=-1)
    metrics["average_pts_within_thresh"] = np.mean(np.stack(fractions, axis=-1), axis=-1)
    return metrics


def to_raster(xy, image_size: tuple[int, int], raster: int = RASTER):
    """[x, y] pixels of an (H, W) frame -> [x, y] pixels of the raster (TAP-Vid's 256)."""
    height, width = image_size
    return _array(xy) * np.asarray([raster / width, raster / height], dtype=np.float32)


def query_to_raster(query_points, image_size: tuple[int, int], raster: int = RASTER):
    """[t, y, x] with y/x pixels of an (H, W) frame -> [t, y, x] on the raster."""
    height, width = image_size
    return _array(query_points) * np.asarray([1.0, raster / height, raster / width], dtype=np.float32)

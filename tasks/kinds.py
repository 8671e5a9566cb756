"""Task kinds: bind item keys (tasks/task.py) to a readout head, its loss, its metric, and the
feature handling that turns one block's activations into the head's input.

Feature handling (paper App. D; probing_spec.md, section 6):
  classification  image tasks average the activations over time when t > 1 (V-WALT sees the
                  image tiled over the clip; App. D.1) unless time_pool="none"; then time is
                  resampled to num_frames (17), the length the readout's temporal embedding has.
  depth           time resampled to the clip's frame count; the head decodes every frame alone
                  (a pixel subsample while training, every pixel once in eval mode).
  camera pose     first and last latent frames concatenated along channels.
  point / box     time resampled to the clip's frame count (App. D.5-D.6); for the matching
                  readout the features keep t' frames and the head resamples its tracks
                  with the same (T, t') weights (readouts/matching.py).
Time is resampled on the backbone's own temporal layout: the probe engine puts the frame spans
each feature frame covers into the batch as `feature_spans` (b, t', 2) [start, stop)
(backbones/base.py frame_spans; WALT's causal latents: [0, 1), [1, 5), ...; I-WALT on route
'frames': one frame each, so nothing is resampled); a batch without it is resampled uniformly.
Headline metrics: top1 (up), abs_rel (down), pose_error (down), average_jaccard (up),
mean_iou (up).

Heads: every kind takes `make_head`, a factory called with the kind's output spec; None keeps
the paper's head, sized by `head_kwargs` (a bound factory brings its own settings):
  classification  make_head(D, num_classes, num_frames=T) -> logits (b, k)   [AttentiveReadout]
  depth           make_head(D, output_size) -> depth dict as DepthReadout     [DepthReadout]
  camera pose     make_head(D) -> pose dict as PoseReadout                    [PoseReadout]
  point / box     make_head(D, 'points' | 'boxes') -> dict as TrackingReadout [TrackingReadout];
                  head_kwargs {'readout': 'matching', ...} picks MatchingTrackReadout instead

Every function bound into a Task is a module-level function (through functools.partial) so a
Task pickles, e.g. into a worker process.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Mapping

import torch
from einops import reduce

from readouts import losses
from readouts.accumulators import (AbsRelAccumulator, BoxIoUAccumulator, PoseErrorAccumulator,
                                   TapVidAccumulator, Top1Accumulator)
from readouts.attentive import AttentiveReadout
from readouts.depth import DepthReadout
from readouts.layers import image_hw
from readouts.pose import PoseReadout, first_last_frames
from readouts.resample import resize_time, time_weights
from readouts.tapvid import RASTER, query_to_raster, to_raster
from readouts.matching import RESAMPLE as MATCHING_RESAMPLE, MatchingTrackReadout
from readouts.tracking import VISIBILITY_RULES, TrackingReadout, predicted_visible
from tasks.task import Batch, Task

TIME_POOLS = ("mean", "none")


class BatchAccumulator:
    """Adapts a readouts accumulator to the Task contract: update(preds, batch)."""

    def __init__(self, inner, unpack: Callable[[Any, Batch], tuple]):
        self.inner, self.unpack = inner, unpack

    def update(self, preds: Any, batch: Batch) -> None:
        self.inner.update(*self.unpack(preds, batch))

    def result(self) -> dict[str, float]:
        return self.inner.result()


def _new_accumulator(factory: Callable[[], Any], unpack: Callable) -> BatchAccumulator:
    return BatchAccumulator(factory(), unpack)


def _frames(batch: Batch, key: str, axis: int, default: int) -> int:
    """The clip's frame count read from a target (features may come from a cache without video)."""
    return int(batch[key].shape[axis]) if key in batch else default


def _features(x: torch.Tensor) -> torch.Tensor:
    """Heads run in float32; cached activations may be stored in half precision."""
    return x.float()


def _target(batch: Batch, key: str, like: torch.Tensor) -> torch.Tensor:
    return torch.as_tensor(batch[key]).to(like.device)


def _spans(batch: Batch) -> torch.Tensor | None:
    """The batch's `feature_spans` (t', 2) (one layout per batch: its clips share a length)."""
    spans = batch.get("feature_spans") if hasattr(batch, "get") else None
    if spans is not None:
        # One small copy to the host (a batch on the GPU brings its spans along); the check and
        # the resampling weights then read host numbers only.
        spans = torch.as_tensor(spans).detach().cpu()
        if not bool((spans == spans[:1]).all()):
            raise ValueError("examples of one batch have different feature_spans; batch clips of "
                             "one length together")
        spans = spans[0]
    return spans


def _resample(x: torch.Tensor, batch: Batch, num_frames: int) -> torch.Tensor:
    """(b, t', h, w, D) -> (b, num_frames, h, w, D) on the batch's `feature_spans`, uniformly
    when the batch has none."""
    return resize_time(x, num_frames, _spans(batch))


def _track_features(x: torch.Tensor, batch: Batch, num_frames: int, resample: str) -> tuple:
    """Tracking heads' features: resampled to num_frames (resample 'features'), or left at t'
    frames with the (num_frames, t') time weights for a head that resamples its tracks
    ('tracks': MatchingTrackReadout)."""
    x = _features(x)
    if resample == "features":
        return (_resample(x, batch, num_frames),)
    return x, time_weights(x.shape[1], num_frames, _spans(batch), dtype=x.dtype, device=x.device)


def _track_resampling(head_kwargs: dict | None, make_head: Callable | None) -> str:
    """'tracks' when the head is the matching readout resampling its tracks, else 'features'."""
    kwargs = dict(head_kwargs or {})
    if make_head is None and kwargs.get("readout") == "matching":
        return kwargs.get("resample", MATCHING_RESAMPLE)
    return "features"


# ---- classification -----------------------------------------------------------------------

def _classification_inputs(x: torch.Tensor, batch: Batch, *, image_task: bool,
                           time_pool: str, num_frames: int) -> tuple:
    x = _features(x)
    if image_task and time_pool == "mean" and x.shape[1] > 1:
        x = reduce(x, "b t h w d -> b 1 h w d", "mean")
        return (resize_time(x, num_frames),)                          # one frame: repeated
    return (_resample(x, batch, num_frames),)


def _classification_loss(logits: torch.Tensor, batch: Batch) -> torch.Tensor:
    return losses.classification_loss(logits, _target(batch, "label", logits))


def _classification_unpack(logits, batch):
    return logits, _target(batch, "label", logits)


def classification(name: str, datasets: Mapping[str, Any], num_classes: int, *,
                   image_task: bool, num_frames: int = 17, time_pool: str = "mean",
                   head_kwargs: dict | None = None, make_head: Callable | None = None) -> Task:
    """Classification; metric top1 (higher is better).

    make_head(feature_dim, num_classes, *, num_frames) -> a module mapping activations
      (b, num_frames, h, w, D) to logits (b, num_classes); None = AttentiveReadout
      (readouts/attentive.py) sized by head_kwargs; e.g. LinearReadout (readouts/linear.py) for
      a linear probe. A bound factory takes its own settings (gin: LinearReadout.pool = ...).
    head_kwargs: the default head's sizes (width, num_heads, num_queries; P = 768).
    """
    if time_pool not in TIME_POOLS:
        raise ValueError(f"time_pool must be one of {TIME_POOLS}; received '{time_pool}'")
    return Task(
        name=name, datasets=datasets,
        make_head=functools.partial(_make_attentive, num_classes=num_classes,
                                    num_frames=num_frames, head_kwargs=dict(head_kwargs or {}),
                                    make_head=make_head),
        head_inputs=functools.partial(_classification_inputs, image_task=image_task,
                                      time_pool=time_pool, num_frames=num_frames),
        loss=_classification_loss,
        new_accumulator=functools.partial(_new_accumulator, Top1Accumulator,
                                          _classification_unpack),
        metric="top1", higher_is_better=True, image_task=image_task)


def _make_attentive(feature_dim: int, *, num_classes: int, num_frames: int, head_kwargs: dict,
                    make_head: Callable | None = None):
    if make_head is not None:  # a bound factory brings its own settings (gin: Factory.param)
        return make_head(feature_dim, num_classes, num_frames=num_frames)
    return AttentiveReadout(feature_dim, num_classes, num_frames=num_frames, **head_kwargs)


# ---- depth --------------------------------------------------------------------------------

def _depth_inputs(x: torch.Tensor, batch: Batch, *, num_frames: int) -> tuple:
    return (_resample(_features(x), batch, _frames(batch, "depth", 1, num_frames)),)


def _depth_pairs(preds: dict, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
    """Predicted depth and the target at the predicted pixels, both (b, t, H', W')."""
    target = _target(batch, "depth", preds["depth"]).float()
    if target.shape[:2] != preds["depth"].shape[:2]:
        raise ValueError(f"depth target {tuple(target.shape)} and prediction "
                         f"{tuple(preds['depth'].shape)} differ in (b, t)")
    target = target[:, :, preds["rows"]][:, :, :, preds["cols"]]
    return preds["depth"], target


def _depth_valid(target: torch.Tensor, max_depth: float | None) -> torch.Tensor:
    """0 marks a missing measurement; depths beyond max_depth (when set) are not scored."""
    valid = target > 0
    return valid if max_depth is None else valid & (target <= max_depth)


def _depth_loss(preds: dict, batch: Batch, *, max_depth: float | None) -> torch.Tensor:
    pred, target = _depth_pairs(preds, batch)
    return losses.depth_loss(pred, target, _depth_valid(target, max_depth))


def _depth_unpack(preds, batch, *, max_depth: float | None):
    pred, target = _depth_pairs(preds, batch)
    return pred, target, _depth_valid(target, max_depth)


def depth(name: str, datasets: Mapping[str, Any], *, image_size, num_frames: int = 17,
          head_kwargs: dict | None = None, max_depth: float | None = None,
          make_head: Callable | None = None) -> Task:
    """SRT-style per-frame depth; metric abs_rel over valid pixels (lower is better).

    image_size: int or (H, W) of the depth maps. head_kwargs: DepthReadout sizes.
    max_depth: optional cap in metres (10 is common on ScanNet); valid = 0 < depth <= cap.
    """
    return Task(
        name=name, datasets=datasets,
        make_head=functools.partial(_make_depth, output_size=image_hw(image_size),
                                    head_kwargs=dict(head_kwargs or {}),
                                    make_head=make_head),
        head_inputs=functools.partial(_depth_inputs, num_frames=num_frames),
        loss=functools.partial(_depth_loss, max_depth=max_depth),
        new_accumulator=functools.partial(_new_accumulator, AbsRelAccumulator,
                                          functools.partial(_depth_unpack, max_depth=max_depth)),
        metric="abs_rel", higher_is_better=False)


def _make_depth(feature_dim: int, *, output_size, head_kwargs: dict, make_head: Callable | None = None):
    if make_head is not None:
        return make_head(feature_dim, output_size)
    return DepthReadout(feature_dim, output_size, **head_kwargs)


# ---- camera pose --------------------------------------------------------------------------

def _pose_inputs(x: torch.Tensor, batch: Batch) -> tuple:
    return (first_last_frames(_features(x)),)


def _pose_loss(preds: dict, batch: Batch) -> torch.Tensor:
    return losses.pose_loss(preds["pose"], _target(batch, "pose", preds["pose"]).float())


def _pose_unpack(preds, batch):
    return preds["pose"], _target(batch, "pose", preds["pose"])


def camera_pose(name: str, datasets: Mapping[str, Any], *,
                head_kwargs: dict | None = None, make_head: Callable | None = None) -> Task:
    """Relative pose of the last frame w.r.t. the first; metric pose_error (lower is better).

    head_kwargs: PoseReadout sizes (width, num_heads); default P = 256 (the paper's count).
    """
    return Task(
        name=name, datasets=datasets,
        make_head=functools.partial(_make_pose, head_kwargs=dict(head_kwargs or {}),
                                    make_head=make_head),
        head_inputs=_pose_inputs, loss=_pose_loss,
        new_accumulator=functools.partial(_new_accumulator, PoseErrorAccumulator, _pose_unpack),
        metric="pose_error", higher_is_better=False)


def _make_pose(feature_dim: int, *, head_kwargs: dict, make_head: Callable | None = None):
    if make_head is not None:
        return make_head(feature_dim)
    return PoseReadout(feature_dim, **head_kwargs)


# ---- point tracks -------------------------------------------------------------------------

def _point_inputs(x: torch.Tensor, batch: Batch, *, image_size, num_frames: int,
                  resample: str = "features") -> tuple:
    height, width = image_size
    query = _target(batch, "query_points", x).float()                 # (b, q, [t, y, x])
    xy = torch.stack([query[..., 2] / width, query[..., 1] / height], dim=-1)
    frames = _frames(batch, "target_points", 2, num_frames)
    feats, *weights = _track_features(x, batch, frames, resample)
    return (feats, xy, query[..., 0].round().long(), *weights)


def _point_loss(preds: dict, batch: Batch, *, image_size) -> torch.Tensor:
    height, width = image_size
    values = preds["values"]
    target = _target(batch, "target_points", values).float()
    target = target / target.new_tensor([width, height])
    query_frames = _target(batch, "query_points", values)[..., 0].round().long()
    return losses.point_track_loss(values, preds["logits"], target,
                                   _target(batch, "occluded", values).bool(), query_frames,
                                   match_logits=preds.get("match_logits"),
                                   match_frames=preds.get("match_frames"))


def _point_unpack(preds, batch, *, image_size, visibility_rule: str = "certainty"):
    """compute_tapvid_metrics arguments on the 256 x 256 raster."""
    pred_tracks = preds["values"].detach().float().cpu().numpy() * RASTER
    pred_occluded = ~predicted_visible(preds["logits"].detach(), rule=visibility_rule).cpu().numpy()
    query = query_to_raster(batch["query_points"], image_size)
    gt_tracks = to_raster(batch["target_points"], image_size)
    return query, batch["occluded"], gt_tracks, pred_occluded, pred_tracks


def point_tracks(name: str, datasets: Mapping[str, Any], *, image_size, num_frames: int = 17,
                 head_kwargs: dict | None = None, query_mode: str = "first",
                 make_head: Callable | None = None, visibility_rule: str = "certainty") -> Task:
    """MooG point tracking; metric average_jaccard (TAP-Vid; higher is better).

    image_size: int or (H, W) of the clip raster the item coordinates are in.
    head_kwargs: the tracking head's settings: TrackingReadout sizes, or {'readout': 'matching',
    ...} for MatchingTrackReadout (readouts/matching.py). query_mode: TAP-Vid's 'first' (the paper's: queries
    are first visible points, earlier frames discarded) or 'strided'.
    visibility_rule: how predicted occlusion is scored (readouts.tracking.predicted_visible):
    'certainty' (the paper's) or 'visibility'.
    """
    if visibility_rule not in VISIBILITY_RULES:
        raise ValueError(f"visibility_rule must be one of {VISIBILITY_RULES}; "
                         f"received '{visibility_rule}'")
    size = image_hw(image_size)
    return Task(
        name=name, datasets=datasets,
        make_head=functools.partial(_make_tracking, kind="points",
                                    head_kwargs=dict(head_kwargs or {}),
                                    make_head=make_head),
        head_inputs=functools.partial(_point_inputs, image_size=size, num_frames=num_frames,
                                      resample=_track_resampling(head_kwargs, make_head)),
        loss=functools.partial(_point_loss, image_size=size),
        new_accumulator=functools.partial(
            _new_accumulator, functools.partial(TapVidAccumulator, query_mode),
            functools.partial(_point_unpack, image_size=size, visibility_rule=visibility_rule)),
        metric="average_jaccard", higher_is_better=True)


# Tracking heads head_kwargs['readout'] selects: 'moog' the paper's recurrent head (default),
# 'matching' the study's non-recurrent matcher (readouts/matching.py, results/controls/).
TRACKING_READOUTS = {"moog": TrackingReadout, "matching": MatchingTrackReadout}


def _make_tracking(feature_dim: int, *, kind: str, head_kwargs: dict,
                   make_head: Callable | None = None):
    if make_head is not None:
        return make_head(feature_dim, kind)
    kwargs = dict(head_kwargs)
    readout = kwargs.pop("readout", "moog")
    if readout not in TRACKING_READOUTS:
        raise ValueError(f"head_kwargs['readout'] must be one of {sorted(TRACKING_READOUTS)}; "
                         f"received '{readout}'")
    return TRACKING_READOUTS[readout](feature_dim, kind, **kwargs)


# ---- box tracks ---------------------------------------------------------------------------

def _box_inputs(x: torch.Tensor, batch: Batch, *, num_frames: int,
                resample: str = "features") -> tuple:
    boxes = _target(batch, "boxes", x).float()                        # (b, n, T, 4)
    feats, *weights = _track_features(x, batch, _frames(batch, "boxes", 2, num_frames), resample)
    if weights:
        return feats, boxes[:, :, 0], None, *weights
    return feats, boxes[:, :, 0]


def _box_targets(preds: dict, batch: Batch):
    """Target boxes and the scored mask: tracks need a (query) box in frame 0."""
    boxes = _target(batch, "boxes", preds["values"]).float()
    valid = _target(batch, "box_valid", preds["values"]).bool()
    return boxes, valid & valid[..., :1]


def _box_loss(preds: dict, batch: Batch) -> torch.Tensor:
    boxes, valid = _box_targets(preds, batch)
    return losses.box_track_loss(preds["values"], boxes, valid)


def _box_unpack(preds, batch):
    boxes, valid = _box_targets(preds, batch)
    return preds["values"], boxes, valid


def box_tracks(name: str, datasets: Mapping[str, Any], *, num_frames: int = 17,
               head_kwargs: dict | None = None, make_head: Callable | None = None) -> Task:
    """MooG box tracking from first-frame boxes; metric mean_iou excluding frame 0 (higher is better).

    head_kwargs: as point_tracks ({'readout': 'matching', ...} picks the matching readout).
    """
    return Task(
        name=name, datasets=datasets,
        make_head=functools.partial(_make_tracking, kind="boxes",
                                    head_kwargs=dict(head_kwargs or {}),
                                    make_head=make_head),
        head_inputs=functools.partial(_box_inputs, num_frames=num_frames,
                                      resample=_track_resampling(head_kwargs, make_head)),
        loss=_box_loss,
        new_accumulator=functools.partial(_new_accumulator, BoxIoUAccumulator, _box_unpack),
        metric="mean_iou", higher_is_better=True)

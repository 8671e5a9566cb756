"""Training losses of the readouts (paper 3.4, App. D): pure functions of predictions and targets.

Every loss returns a scalar that stays finite (and differentiable) when its mask is empty, so a
batch without valid pixels or visible points does not stop training.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """mean of values over mask (broadcast); 0 (with a gradient path) when the mask is empty."""
    mask = mask.to(values.dtype).expand_as(values)
    return (values * mask).sum() / mask.sum().clamp(min=1.0)


def classification_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Softmax cross-entropy. logits: (b, k); labels: (b,) long in [0, k). Mean over b."""
    return F.cross_entropy(logits, labels.long())


def depth_loss(pred: torch.Tensor, target: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """L2 on valid pixels: mean over valid of (pred - target)^2. All (b, t, H, W); valid bool."""
    return _masked_mean((pred - target).square(), valid)


def pose_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """L2 on the pose matrix: mean over b and the 12 entries of ([R|t]_pred - [R|t]_gt)^2.

    pred, target: (b, 3, 4); pred's R is already on SO(3) (special Procrustes).
    """
    return (pred - target).square().mean()


def huber_distance(error: torch.Tensor, delta: float) -> torch.Tensor:
    """TAPIR's Huber on the Euclidean norm of error (..., 2): d^2/2 below delta, else linear."""
    sq = error.square().sum(-1)
    dist = torch.sqrt(sq + 1e-12)
    return torch.where(dist < delta, sq / 2, delta * (dist - delta / 2))


def point_track_loss(values: torch.Tensor, logits: torch.Tensor, target: torch.Tensor,
                     occluded: torch.Tensor, query_frames: torch.Tensor | None = None, *,
                     raster: float = 256.0, huber_delta: float = 4.0,
                     position_weight: float = 0.05,
                     certainty_threshold: float = 6.0, match_logits: torch.Tensor | None = None,
                     match_frames: torch.Tensor | None = None,
                     match_weight: float = 1.0) -> torch.Tensor:
    """MooG / TAPIR point-tracking loss.

    values: (b, q, T, 2) predicted (x, y) in [0, 1]; logits: (b, q, T, 2) [visibility, certainty];
    target: (b, q, T, 2) ground-truth (x, y) in [0, 1]; occluded: (b, q, T) bool;
    query_frames: (b, q) long, frames before a track's query frame are ignored (None: none).
    Positions are compared in pixels of a `raster` x `raster` frame (TAP-Vid's 256):
      position_weight * Huber_delta(|p - g|)           on GT-visible entries
      + BCE(visibility logit, GT visible)              on all entries (points that left the
                                                       scene contribute only this term)
      + BCE(certainty logit, 1[|sg(p) - g| <= thr])    on GT-visible entries
    each a mean over its entries; a matching head (readouts/matching.py) adds
      + match_weight * match_loss(match_logits, g at match_frames)  on GT-visible entries
    with match_logits (b, q, t', H, W) its scores in the feature frames and match_frames (t',)
    long the clip frame each feature frame is scored against.
    """
    frames = torch.arange(values.shape[2], device=values.device)
    evaluated = torch.ones_like(occluded, dtype=torch.bool)
    if query_frames is not None:
        evaluated = frames >= query_frames[..., None]
    visible = ~occluded.bool() & evaluated
    error = (values - target) * raster
    position = _masked_mean(huber_distance(error, huber_delta), visible)
    visibility = _masked_mean(F.binary_cross_entropy_with_logits(
        logits[..., 0], visible.to(logits.dtype), reduction="none"), evaluated)
    close = (error.detach().norm(dim=-1) <= certainty_threshold).to(logits.dtype)
    certainty = _masked_mean(F.binary_cross_entropy_with_logits(
        logits[..., 1], close, reduction="none"), visible)
    total = position_weight * position + visibility + certainty
    if match_logits is not None:
        total = total + match_weight * match_loss(match_logits, target[:, :, match_frames],
                                                  visible[:, :, match_frames])
    return total


def match_loss(match_logits: torch.Tensor, target: torch.Tensor,
               valid: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of a per-pixel match distribution against the ground-truth pixel.

    match_logits: (b, q, t, H, W) scores of every pixel of frame t for track q (softmax over
    the H x W pixels); target: (b, q, t, 2) ground-truth (x, y) in [0, 1] (pixel j spans
    [j, j + 1) / W); valid: (b, q, t) bool, the entries scored (GT visible). Mean over valid.
    A TAP-style matcher's soft-argmax position gets no gradient toward a far-away true match;
    this term does (as a contrastive / InfoNCE objective would).
    """
    height, width = match_logits.shape[-2:]
    col = (target[..., 0] * width).floor().long().clamp(0, width - 1)
    row = (target[..., 1] * height).floor().long().clamp(0, height - 1)
    flat = match_logits.flatten(-2)
    nll = torch.logsumexp(flat, dim=-1) - flat.gather(-1, (row * width + col)[..., None])[..., 0]
    return _masked_mean(nll, valid)


def box_track_loss(values: torch.Tensor, target: torch.Tensor,
                   valid: torch.Tensor) -> torch.Tensor:
    """L2 on normalised box coordinates: mean over valid (track, frame) entries and the 4 coords.

    values, target: (b, n, T, 4) (x0, y0, x1, y1) in [0, 1]; valid: (b, n, T) bool.
    """
    return _masked_mean((values - target).square(), valid[..., None])

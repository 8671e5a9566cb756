"""Non-recurrent matching readout for point and box tracks (not the paper's head).

Why it exists (results/controls/README.md, "Matching readout"): on the oracle backbone, whose
tokens hold each pixel's surface id and surface coordinates, the paper's recurrent MooG head
(tracking.TrackingReadout) fits its training clips but never beats "nothing moves" on val: it
has to learn correspondence from scratch through a recurrent state. This head builds
correspondence into its structure, as TAP-style trackers do, and learns only the descriptor:

  1. keys      per-pixel keys: LayerNorm, then a linear unpatchify of each token to its
               patch x patch pixels (pixel shuffle, as depth.DepthReadout 'unpatchify'), then a
               per-pixel MLP refine (residual); L2-normalised.          (b, T, H', W', c)
  2. queries   the query descriptor = the keys bilinearly sampled at the query point in the
               query frame.                                             (b, q, c)
  3. matching  per frame: scaled cosine similarity to every pixel key (learned temperature),
               plus a Gaussian log-prior around the query point (learned width `locality`;
               trackers search near the last position), softmax over the frame (or over a
               `window` of pixels around the best match), soft-argmax -> (x, y) in [0, 1].
                                                                        (b, q, T, 2)
  4. logits    [visibility, certainty] from a small MLP on (descriptor * matched key, peak
               similarity): a point that is hidden matches nothing well.  (b, q, T, 2)
  5. boxes     `box_grid`^2 points on a grid inside each query box are tracked as in 2-4; per
               frame the query box moves by the points' weighted mean shift (box_scale: a
               weighted least-squares fit of scale and shift per axis); weights: the points'
               predicted visibility times a learned per-point weight, so points off the
               object, e.g. a box corner on the background, can be discounted. (b, n, T, 4)

Time (resample 'tracks', the default): the keys stay on the t' feature frames; a query in clip
frame f reads its descriptor from sum_k W[f, k] keys_k, every feature frame is matched, and the
tracks and logits are carried to the T clip frames by the same weights W (T, t') the features
would have been resampled with (readouts.resample.time_weights on the batch's `feature_spans`,
passed by the task). Resampling features instead ('features', as the MooG head) blends two
positions of a moving surface into one ghostly key per pixel (on the oracle at 32 x 32 x 9 a
closed-form matcher reaches pts-within 0.39 on resampled latent-grid features, 0.68 on every
frame); moving the tracks keeps each match sharp and matches t' frames instead of T.

Training: the task's point loss (losses.point_track_loss: Huber on positions of visible points,
BCE on visibility and certainty) plus, from the scores this head returns in training mode,
a cross-entropy of the match distribution at the ground-truth pixel (losses.match_loss): the
soft-argmax alone gives no gradient toward a far-away true match. Boxes train on the box loss.

The whole clip is matched at once (one einsum over frames; no per-frame Python loop). H' = h p,
W' = w p (the token grid times the patch): positions are normalised, so H' need not equal the
clip raster. Key positions follow the items' convention: pixel column j of H' x W' spans
[j, j + 1) / W', its centre at (j + 0.5) / W'.

Parameters: LayerNorm 2 D, unpatchify p^2 c (D + 1), refine 2 c m + m + c, visibility
(c + 1) m + 3 m + 2, temperature and locality 2; boxes add c + 1. At D = 512, p = 8, c = 32,
m = 64: 1,058,148 (points), 1,058,181 (boxes); the MooG head at the study's sizes (latent 128,
qkv 256, 1 layer) has 535,300. Decision: the library default stays the paper's MooG head
(tracking.TrackingReadout); the synthetic study selects this one by head_kwargs
{'readout': 'matching', ...} (tasks/kinds.py; gin/tasks/synthetic/point_tracks_movi_e.gin).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
import torch.utils.checkpoint
from einops import einsum, rearrange, repeat
from torch import nn

from readouts.layers import LN_EPS, Mlp, check_activations, lecun_init_
from readouts.tracking import COORDS, check_queries

# Where the 5 -> 17 (t' -> T) time resampling happens: 'tracks' matches on the t' feature frames
# and resamples the tracks and logits (the task passes the time weights; see the module
# docstring); 'features' takes features already resampled to T frames, as TrackingReadout.
RESAMPLES = ("tracks", "features")
RESAMPLE = "tracks"


# ---- pure helpers ---------------------------------------------------------------------------

def pixel_centres(height: int, width: int, *, like: torch.Tensor) -> torch.Tensor:
    """(height, width, 2) [x, y] centres of an H x W raster, normalised to [0, 1]."""
    ys = (torch.arange(height, device=like.device, dtype=like.dtype) + 0.5) / height
    xs = (torch.arange(width, device=like.device, dtype=like.dtype) + 0.5) / width
    return torch.stack(torch.meshgrid(xs, ys, indexing="xy"), dim=-1)


def sample_keys(keys: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """Bilinear read of keys at the same points in every frame.

    keys: (b, T, H, W, c); points: (b, q, 2) [x, y] in [0, 1] (pixel j centred at (j + 0.5) / W).
    Returns (b, q, T, c). Borders are clamped (padding 'border').
    """
    grid = repeat(points * 2 - 1, "b q xy -> (b T) q 1 xy", T=keys.shape[1])
    # align_corners=False: -1 / +1 are the raster's outer edges, matching the [0, 1] convention.
    sampled = F.grid_sample(rearrange(keys, "b T H W c -> (b T) c H W"), grid, mode="bilinear",
                            padding_mode="border", align_corners=False)
    return rearrange(sampled, "(b T) c q 1 -> b q T c", b=keys.shape[0])


def sample_descriptors(keys: torch.Tensor, points: torch.Tensor, frames: torch.Tensor,
                       weights: torch.Tensor | None = None) -> torch.Tensor:
    """Bilinear read of keys at points in their (query) frames.

    keys: (b, t, H, W, c); points: (b, q, 2) [x, y] in [0, 1]; frames: (b, q) long in [0, T).
    weights: None (T = t: frames index the keys' own frames) or (T, t) time weights (clip frame
    f reads sum_k weights[f, k] keys[k], readouts.resample.time_weights). Returns (b, q, c).
    """
    num_frames = keys.shape[1] if weights is None else weights.shape[0]
    if bool((frames < 0).any()) or bool((frames >= num_frames).any()):
        raise ValueError(f"query frames must lie in [0, {num_frames}); received "
                         f"{frames.min().item()}..{frames.max().item()}")
    sampled = sample_keys(keys, points)                                     # (b, q, t, c)
    if weights is None:
        weights = torch.eye(keys.shape[1], dtype=keys.dtype, device=keys.device)
    return einsum(weights[frames], sampled, "b q t, b q t c -> b q c")


def soft_argmax(logits: torch.Tensor, window: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Expected position under softmax(logits) over an H x W raster.

    logits: (..., H, W). window: r > 0 restricts the softmax to the (2r + 1)^2 pixels around
    the arg-max (robust to a second mode far away); 0 = the whole raster.
    Returns xy (..., 2) [x, y] in [0, 1] (pixel centres as pixel_centres) and the weights
    (..., H, W) (zero outside the window).
    """
    height, width = logits.shape[-2:]
    flat = rearrange(logits, "... H W -> ... (H W)")
    if window > 0:
        best = flat.argmax(dim=-1, keepdim=True)                                # (..., 1)
        rows = torch.arange(height, device=logits.device).repeat_interleave(width)
        cols = torch.arange(width, device=logits.device).repeat(height)
        near = (((rows - best // width).abs() <= window)
                & ((cols - best % width).abs() <= window))
        flat = flat.masked_fill(~near, float("-inf"))
    weights = flat.softmax(dim=-1)
    centres = rearrange(pixel_centres(height, width, like=logits), "H W xy -> (H W) xy")
    xy = weights @ centres
    return xy, weights.reshape(logits.shape)


def match(keys: torch.Tensor, descriptors: torch.Tensor, scale: torch.Tensor | float,
          window: int = 0, prior: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """Matches each descriptor against every pixel key of every frame.

    keys: (b, T, H, W, c) and descriptors: (b, q, c), both L2-normalised; scale: the inverse
    softmax temperature on cosine similarity; prior: None or (b, q, H, W) log-prior added to
    every frame's scores (the locality prior of MatchingTrackReadout). Returns
      xy      (b, q, T, 2) [x, y] in [0, 1]: soft-argmax position (`soft_argmax`, window)
      peak    (b, q, T)    the best cosine similarity in the frame
      matched (b, q, T, c) the keys averaged under the soft-argmax weights
      logits  (b, q, T, H, W) the scaled similarities
    """
    cosine = einsum(descriptors, keys, "b q c, b T H W c -> b q T H W")
    logits = cosine * scale
    if prior is not None:
        logits = logits + prior[:, :, None]
    xy, weights = soft_argmax(logits, window)
    matched = einsum(weights, keys, "b q T H W, b T H W c -> b q T c")
    peak = rearrange(cosine, "b q T H W -> b q T (H W)").amax(dim=-1)
    return {"xy": xy, "peak": peak, "matched": matched, "logits": logits}


def match_in_chunks(keys: torch.Tensor, descriptors: torch.Tensor, scale: torch.Tensor | float,
                    window: int = 0, prior: torch.Tensor | None = None, *, chunk: int = 0,
                    recompute: bool = False, keep_logits: bool = True) -> dict[str, torch.Tensor]:
    """`match`, `chunk` queries at a time (0: all at once): the same values, less memory.

    The per-pixel tensors of `match` are (b, q, T, H, W): at the base study's shapes (b = 64,
    q = 64 points or up to 25 boxes x 9, T = 5, 64 x 64 pixels) each is 84-295M numbers, and autograd
    keeps several of them per step. With recompute (training), each chunk's intermediates are
    not kept but recomputed in the backward pass (torch.utils.checkpoint), so a step holds one
    chunk's; keep_logits False drops the (b, q, T, H, W) scores from the result (only the
    matching loss reads them).
    """
    num = descriptors.shape[1]
    size = num if chunk <= 0 else chunk
    parts = []
    for start in range(0, num, size):
        part = (keys, descriptors[:, start:start + size], scale, window,
                None if prior is None else prior[:, start:start + size])
        out = (torch.utils.checkpoint.checkpoint(match, *part, use_reentrant=False) if recompute
               else match(*part))
        if not keep_logits:
            out.pop("logits")
        parts.append(out)
    if len(parts) == 1:
        return parts[0]
    return {name: torch.cat([p[name] for p in parts], dim=1) for name in parts[0]}


def box_points(boxes: torch.Tensor, grid: int) -> torch.Tensor:
    """(b, n, 4) [x0, y0, x1, y1] -> (b, n, grid * grid, 2) points at the centres of a
    grid x grid tiling of each box, row-major ([x, y])."""
    steps = (torch.arange(grid, device=boxes.device, dtype=boxes.dtype) + 0.5) / grid
    fy, fx = torch.meshgrid(steps, steps, indexing="ij")
    fractions = rearrange(torch.stack([fx, fy], dim=-1), "gy gx xy -> (gy gx) xy")
    low, high = boxes[..., None, :2], boxes[..., None, 2:]
    return low + fractions * (high - low)


def fit_boxes(boxes: torch.Tensor, start: torch.Tensor, tracked: torch.Tensor,
              weights: torch.Tensor, scale: bool = True, min_scale: float = 0.05) -> torch.Tensor:
    """Moves each query box with its tracked points: per frame and axis, the weighted
    least-squares scale s and shift of  tracked = s (start - mean(start)) + mean(tracked)
    (scale False: s = 1, the box moves by the points' weighted mean shift).

    boxes: (b, n, 4) query boxes [x0, y0, x1, y1]; start: (b, n, k, 2) the points in the query
    frame; tracked: (b, n, T, k, 2); weights: (b, n, T, k) >= 0. Returns (b, n, T, 4): the box
    centre carried like a point, its half-sizes scaled by s (at least min_scale).
    """
    w = weights[..., None] / weights.sum(dim=-1, keepdim=True).clamp_min(1e-6)[..., None]
    start = start[:, :, None]                                          # (b, n, 1, k, 2)
    mean0 = (w * start).sum(dim=-2)                                    # (b, n, T, 2)
    mean1 = (w * tracked).sum(dim=-2)
    d0, d1 = start - mean0[..., None, :], tracked - mean1[..., None, :]
    factor = torch.ones_like(mean1)
    if scale:
        factor = (w * d0 * d1).sum(dim=-2) / (w * d0 * d0).sum(dim=-2).clamp_min(1e-8)
        factor = factor.clamp_min(min_scale)
    centre0 = (boxes[..., :2] + boxes[..., 2:])[:, :, None] / 2         # (b, n, 1, 2)
    half0 = (boxes[..., 2:] - boxes[..., :2])[:, :, None] / 2
    centre = mean1 + factor * (centre0 - mean0)
    half = factor * half0
    return torch.cat([centre - half, centre + half], dim=-1)


# ---- the head -------------------------------------------------------------------------------

class MatchingTrackReadout(nn.Module):
    """Tracks queries through (b, T, h, w, D) activations by matching per-pixel keys.

    feature_dim: D. kind: 'points' (queries (x, y)) or 'boxes' (queries (x0, y0, x1, y1)), both
    normalised to [0, 1] of the frame width / height (tracking.TrackingReadout's contract).
    key_dim: c, channels per pixel key. hidden: m, width of the refine and visibility MLPs.
    patch: p, the token's size in pixels (8 = WALT's grid). window: r of the soft-argmax
    (0 = whole frame). temperature: initial softmax temperature on cosine similarity (learned).
    box_grid: g, boxes are tracked through g x g points. box_scale: also fit the boxes' scale
    (False: shift only; on the oracle at 48 clips the noisy scale costs mIoU 0.38 -> 0.29).
    resample: 'tracks' (x holds the t' feature frames and forward takes the (T, t') time
    weights) or 'features' (x already has the clip's T frames; no weights). locality: initial
    width (normalised units, learned) of the Gaussian prior around the query; 0 = no prior.
    query_chunk: match this many tracked points at a time (`match_in_chunks`; 0 = all at once).
    recompute: in training, keep neither the per-pixel keys' intermediates nor each chunk's
    matching tensors for the backward pass but recompute them there (torch.utils.checkpoint).
    Both change memory, not values (benchmarks/results/matching_memory.md).
    forward(x (b, t', h, w, D), queries (b, q, 2|4), query_frames (b, q) long in [0, T) or
    None = all 0, time_weights (T, t') or None) -> {'values': (b, q, T, 2|4) in [0, 1],
    'logits': (b, q, T, 2) [visibility, certainty]} (boxes: the mean logits of the box's points).
    """

    def __init__(self, feature_dim: int, kind: str = "points", *, key_dim: int = 32,
                 hidden: int = 64, patch: int = 8, window: int = 0, temperature: float = 0.05,
                 box_grid: int = 3, box_scale: bool = False, resample: str = RESAMPLE,
                 locality: float = 0.2, query_chunk: int = 16, recompute: bool = True):
        super().__init__()
        if resample not in RESAMPLES:
            raise ValueError(f"resample must be one of {RESAMPLES}; received '{resample}'")
        self.resample = resample
        if kind not in COORDS:
            raise ValueError(f"kind must be one of {sorted(COORDS)}; received '{kind}'")
        if window < 0 or box_grid < 1 or not 0 < temperature:
            raise ValueError(f"need window >= 0, box_grid >= 1, temperature > 0; received "
                             f"window={window}, box_grid={box_grid}, temperature={temperature}")
        self.feature_dim, self.kind, self.patch = feature_dim, kind, patch
        self.window, self.box_grid, self.box_scale = window, box_grid, box_scale
        if query_chunk < 0:
            raise ValueError(f"query_chunk must be >= 0 (0 = all queries at once); received {query_chunk}")
        self.query_chunk, self.recompute = query_chunk, recompute
        # 1. keys
        self.norm_in = nn.LayerNorm(feature_dim, eps=LN_EPS)
        self.unpatchify = nn.Linear(feature_dim, patch * patch * key_dim)
        self.refine = Mlp(key_dim, hidden, key_dim)
        # 3. matching: the inverse temperature, learned in log space
        self.log_scale = nn.Parameter(torch.tensor(math.log(1.0 / temperature)))
        self.locality = locality
        if locality:
            self.log_locality = nn.Parameter(torch.tensor(math.log(locality)))
        # 4. visibility / certainty
        self.logit_head = Mlp(key_dim + 1, hidden, 2)
        # 5. boxes: how much each box point counts, from its descriptor
        if kind == "boxes":
            self.point_weight = nn.Linear(key_dim, 1)
        lecun_init_(self)

    def keys(self, x: torch.Tensor) -> torch.Tensor:
        """(b, T, h, w, D) -> L2-normalised per-pixel keys (b, T, h p, w p, c)."""
        # 1. token -> its p x p pixels (channel order (u v c)), then a per-pixel refine.
        pixels = rearrange(self.unpatchify(self.norm_in(x)), "b T h w (u v c) -> b T (h u) (w v) c",
                           u=self.patch, v=self.patch)
        return F.normalize(pixels + self.refine(pixels), dim=-1)

    def track(self, keys: torch.Tensor, points: torch.Tensor, frames: torch.Tensor,
              time_weights: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """keys (b, t, H, W, c), points (b, q, 2), frames (b, q), time_weights (T, t) or None
        (T = t) -> 'xy' (b, q, T, 2), 'logits' (b, q, T, 2), 'descriptors' (b, q, c)."""
        # 2. descriptors at the query points
        descriptors = F.normalize(sample_descriptors(keys, points, frames, time_weights), dim=-1)
        # 3. soft-argmax match in every frame at once
        prior = None
        if self.locality:
            # Gaussian log-prior around the query point, width learned: tracks start near their
            # query, which is what a tracker searching near the last position assumes.
            centres = pixel_centres(*keys.shape[2:4], like=keys)
            dist2 = (centres[None, None] - points[:, :, None, None]).square().sum(-1)
            prior = -dist2 / (2 * torch.exp(2 * self.log_locality))
        grad = self.training and torch.is_grad_enabled()
        out = match_in_chunks(keys, descriptors, self.log_scale.exp(), self.window, prior,
                              chunk=self.query_chunk, recompute=grad and self.recompute,
                              keep_logits=self.training)
        result = {"descriptors": descriptors}
        if self.training:
            # For the matching loss (losses.match_loss): the scores, and the clip frame each
            # feature frame stands for (the one it weighs most).
            result["match_logits"] = out["logits"]
            result["match_frames"] = (torch.arange(keys.shape[1], device=keys.device)
                                      if time_weights is None else time_weights.argmax(dim=0))
        # 4. a point that is hidden matches nothing well: read agreement and the peak.
        agreement = descriptors[:, :, None] * out["matched"]
        logits = self.logit_head(torch.cat([agreement, out["peak"][..., None]], dim=-1))
        xy = out["xy"]
        if time_weights is not None:
            # Feature frames -> clip frames: the tracks move between the frames they were
            # matched in (cubic weights may overshoot a little: stay on the raster).
            xy = einsum(time_weights, xy, "T t, b q t xy -> b q T xy").clamp(0.0, 1.0)
            logits = einsum(time_weights, logits, "T t, b q t l -> b q T l")
        return {**result, "xy": xy, "logits": logits}

    def forward(self, x: torch.Tensor, queries: torch.Tensor,
                query_frames: torch.Tensor | None = None,
                time_weights: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        check_activations(x, self.feature_dim, head=type(self).__name__)
        if (time_weights is None) != (self.resample == "features"):
            raise ValueError(f"{type(self).__name__}(resample='{self.resample}') needs "
                             f"{'no' if self.resample == 'features' else 'the'} time weights: the "
                             "task must resample features (head_kwargs resample='features') or "
                             "pass (T, t') weights ('tracks')")
        if time_weights is not None and time_weights.shape[1] != x.shape[1]:
            raise ValueError(f"time_weights {tuple(time_weights.shape)} do not map the "
                             f"{x.shape[1]} feature frames; expected (T, {x.shape[1]})")
        query_frames = check_queries(self, x, queries, query_frames)
        queries = queries.to(x.dtype)
        # 1.
        if self.recompute and self.training and torch.is_grad_enabled():
            keys = torch.utils.checkpoint.checkpoint(self.keys, x, use_reentrant=False)
        else:
            keys = self.keys(x)
        if self.kind == "points":
            # 2-4.
            out = self.track(keys, queries, query_frames, time_weights)
            extra = {k: out[k] for k in ("match_logits", "match_frames") if k in out}
            return {"values": out["xy"], "logits": out["logits"], **extra}
        # 5. boxes: track a grid of points inside each box, then fit the box to them.
        num = queries.shape[1]
        start = box_points(queries, self.box_grid)                        # (b, n, k, 2)
        out = self.track(keys, rearrange(start, "b n k xy -> b (n k) xy"),
                         repeat(query_frames, "b n -> b (n k)", k=start.shape[2]), time_weights)
        split = dict(n=num, k=start.shape[2])
        tracked = rearrange(out["xy"], "b (n k) T xy -> b n T k xy", **split)
        logits = rearrange(out["logits"], "b (n k) T l -> b n T k l", **split)
        prior = rearrange(self.point_weight(out["descriptors"]), "b (n k) 1 -> b n 1 k", **split)
        weights = torch.sigmoid(logits[..., 0]) * torch.sigmoid(prior)
        # Boxes stay in the frame, as the targets (tight pixel rectangles) do.
        boxes = fit_boxes(queries, start, tracked, weights, scale=self.box_scale)
        return {"values": boxes.clamp(0.0, 1.0),
                "logits": logits.mean(dim=-2)}

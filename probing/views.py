"""Measured views of a backbone's features (no gin; runners/visualize*.py draws them).

  clip_features(backbone, videos, timestep, blocks) -> {block: (n, t, h, w, D)}
  motion_r2(backbone, train, test, blocks, timesteps) -> rows {block, t, r2}     (Fig. 3)
  brick_wall_auroc(features, moving_mask, frozen_mask) -> AUROC                   (Fig. 4)
  timestep_variance(backbone, videos, blocks, timesteps) -> rows {block, t, explained, cosine}

Noise is fixed per clip (seed = the clip's position, as the probe engine's), so every number
is reproducible; the measures themselves are pure functions in probing/measures.py.
"""

from __future__ import annotations

from typing import Sequence

import torch
from einops import rearrange

from probing import measures


def clip_features(backbone, videos: torch.Tensor, timestep: int, blocks: Sequence[int],
                  batch_size: int = 8) -> dict[int, torch.Tensor]:
    """Features of `videos` (n, T, H, W, 3) uint8 at `timestep`: {block: (n, t, h, w, D) float32}
    on the CPU, noise seeded by the clip's index (0..n-1)."""
    out: dict[int, list[torch.Tensor]] = {b: [] for b in blocks}
    device = getattr(backbone, "device", torch.device("cpu"))
    with torch.no_grad():
        for i in range(0, len(videos), batch_size):
            seeds = torch.arange(i, min(i + batch_size, len(videos)), dtype=torch.long)
            feats = backbone.features(videos[i:i + batch_size].to(device), int(timestep),
                                      list(blocks), seeds=seeds.to(device))
            for b in blocks:
                out[b].append(feats[b].float().cpu())
    return {b: torch.cat(v) for b, v in out.items()}


def _tokens(x: torch.Tensor) -> torch.Tensor:
    return rearrange(x, "n t h w d -> (n t h w) d")


def motion_r2(backbone, train: dict, test: dict, blocks: Sequence[int], timesteps: Sequence[int],
              lams: Sequence[float] = measures.LAMBDAS) -> list[dict]:
    """Fig. 3's number: held-out R^2 of a ridge map from a block's token features to the true
    flow magnitude pooled onto the token grid (measures.ridge_r2, measures.pool_to_grid).

    train, test: {'video': (n, T, H, W, 3) uint8, 'magnitude': (n, T, H, W) pixels per frame}
    (tasks/synthetic/flow.py motion_clip, stacked); the ridge map is fitted on train's tokens
    (penalty chosen among `lams` by 2-fold CV over train's clips, measures.select_lambda) and
    scored on test's. Returns one row per (block, t): {'block', 't', 'r2', 'lam'}.
    """
    rows = []
    for t in timesteps:
        f_train = clip_features(backbone, train["video"], t, blocks)
        f_test = clip_features(backbone, test["video"], t, blocks)
        for b in blocks:
            _, tt, h, w, _ = f_train[b].shape
            y_train = measures.pool_to_grid(train["magnitude"], tt, h, w).reshape(-1)
            y_test = measures.pool_to_grid(test["magnitude"], tt, h, w).reshape(-1)
            x_train = _tokens(f_train[b])
            clip = torch.arange(len(f_train[b]))[:, None].expand(-1, tt * h * w).reshape(-1)
            lam = measures.select_lambda(x_train, y_train, clip, lams)
            r2 = measures.ridge_r2(x_train, y_train, _tokens(f_test[b]), y_test, lam)
            rows.append({"block": int(b), "t": int(t), "r2": r2, "lam": lam})
    return rows


def brick_wall_auroc(features: torch.Tensor, moving_mask: torch.Tensor,
                     frozen_mask: torch.Tensor) -> float:
    """Fig. 4's number: sign-free AUROC (measures.pc1_auroc) of the first principal component of
    the frozen region's tokens for telling the moving subset from the rest of the region.

    features: (t, h, w, D) of one clip; moving_mask, frozen_mask: (H, W) bool pixel masks
    (tasks/synthetic/brick_wall.py). Tokens are assigned by majority of their patch; latent
    frame 0 (the first frame alone, identical inside and outside the subset) is left out.
    """
    t, h, w, _ = features.shape
    moving = measures.mask_to_grid(moving_mask, h, w)
    frozen = measures.mask_to_grid(frozen_mask, h, w) & ~moving
    frames = range(1, t) if t > 1 else range(t)
    x = torch.cat([rearrange(features[i], "h w d -> (h w) d") for i in frames])
    pos = torch.cat([moving.reshape(-1) for _ in frames])
    neg = torch.cat([frozen.reshape(-1) for _ in frames])
    return measures.pc1_auroc(x, pos, neg)


def timestep_variance(backbone, videos: torch.Tensor, blocks: Sequence[int],
                      timesteps: Sequence[int]) -> list[dict]:
    """How much of a block's features at t the clean ones carry: per (block, t), the fraction
    of the variance of the t-features explained by an affine map from the t = 0 features,
    adjusted for the number of features (measures.explained_by), and their mean token cosine
    similarity (measures.mean_cosine), over the tokens of all clips.
    Rows {'block', 't', 'explained', 'cosine'}; t = 0 gives 1 and 1."""
    clean = clip_features(backbone, videos, 0, blocks)
    rows = []
    for t in timesteps:
        noisy = clean if int(t) == 0 else clip_features(backbone, videos, t, blocks)
        for b in blocks:
            x0, xt = _tokens(clean[b]), _tokens(noisy[b])
            rows.append({"block": int(b), "t": int(t), "explained": measures.explained_by(x0, xt),
                         "cosine": measures.mean_cosine(x0, xt)})
    return rows

"""Measures of what features hold, as pure functions (tensors in, numbers out; no models).

  ridge_r2(x_train, y_train, x_test, y_test, lam)      Fig. 3: how linearly the features explain
                                                       a per-token target (flow magnitude)
  select_lambda(x, y, groups)                          its penalty, by 2-fold CV on train rows
  auroc(scores, labels), pc1_auroc(x, positive, negative)
                                                       Fig. 4: does the first principal component
                                                       separate the moving subset from the frozen
  explained_by(x0, xt), mean_cosine(x0, xt)           t-variance: how much of a block's features
                                                       at t the clean (t = 0) features explain
  pool_to_grid(maps, t, h, w), mask_to_grid(mask, h, w)
                                                       pixel maps to a backbone's token grid

Conventions: token features are rows, x: (n, D) float (callers flatten (b, t, h, w, D) with
einops); targets y: (n,). Everything is computed in float64 for the closed forms.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange


def _f64(x) -> torch.Tensor:
    return torch.as_tensor(x).detach().to(torch.float64)


def ridge_fit(x: torch.Tensor, y: torch.Tensor, lam: float = 1e-3) -> tuple[torch.Tensor, torch.Tensor]:
    """Ridge regression y ~ x w + b on standardised features.

    x: (n, D), y: (n,). Features are centred and scaled by their train std (dims with zero
    std are left at 0), then w = (Z^T Z + lam n I)^-1 Z^T (y - mean y) (lam is per example, so
    it does not depend on n), b = mean y. Returns (weights (D,) on the raw features, bias ())
    such that prediction = x @ weights + bias.
    """
    x, y = _f64(x), _f64(y)
    mu, sd = x.mean(0), x.std(0, unbiased=False)
    scale = torch.where(sd > 1e-12, 1.0 / sd.clamp_min(1e-12), torch.zeros_like(sd))
    z = (x - mu) * scale
    n, d = z.shape
    gram = z.T @ z + lam * n * torch.eye(d, dtype=z.dtype)
    w = torch.linalg.solve(gram, z.T @ (y - y.mean()))
    weights = w * scale
    return weights, y.mean() - mu @ weights


def r2_score(y_true: torch.Tensor, y_pred: torch.Tensor) -> float:
    """Coefficient of determination R^2 = 1 - sum (y - yhat)^2 / sum (y - mean y)^2 (mean of the
    evaluated targets). 1 = perfect, 0 = no better than the constant mean, < 0 = worse. NaN when
    the targets are constant."""
    y, p = _f64(y_true).reshape(-1), _f64(y_pred).reshape(-1)
    total = ((y - y.mean()) ** 2).sum()
    if total <= 0:
        return float("nan")
    return float(1 - ((y - p) ** 2).sum() / total)


def ridge_r2(x_train, y_train, x_test, y_test, lam: float = 1e-3) -> float:
    """Held-out R^2 (`r2_score`) of a ridge map (`ridge_fit`) fitted on (x_train, y_train) and
    applied to x_test. x_*: (n, D) features per token, y_*: (n,) targets per token."""
    w, b = ridge_fit(x_train, y_train, lam)
    return r2_score(y_test, _f64(x_test) @ w + b)


LAMBDAS = (1e-3, 1e-2, 1e-1, 1.0, 10.0)


def select_lambda(x, y, groups, lams=LAMBDAS) -> float:
    """The ridge penalty of `lams` with the best mean R^2 over 2 folds of the training rows,
    split by group (e.g. the clip a token comes from: tokens of one clip are not independent,
    so a fold never shares a clip with the other). x: (n, D), y: (n,), groups: (n,) int."""
    g = torch.as_tensor(groups).reshape(-1)
    fold = torch.remainder(torch.unique(g, return_inverse=True)[1], 2).bool()
    if fold.all() or not fold.any():
        return float(lams[len(lams) // 2])
    x, y = _f64(x), _f64(y)

    def score(lam):
        return sum(ridge_r2(x[a], y[a], x[~a], y[~a], lam) for a in (fold, ~fold)) / 2
    return float(max(lams, key=score))


def auroc(scores, labels) -> float:
    """Area under the ROC curve of `scores` (n,) for binary `labels` (n,) (True = positive):
    the probability that a random positive scores above a random negative, ties counting 1/2
    (Mann-Whitney U / (n_pos n_neg), with average ranks for ties). NaN without both classes."""
    s, lab = _f64(scores).reshape(-1), torch.as_tensor(labels).reshape(-1).bool()
    n_pos, n_neg = int(lab.sum()), int((~lab).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = torch.argsort(s)
    sorted_s = s[order]
    ranks = torch.empty_like(s)
    # Average ranks over ties: every member of a run of equal scores gets the run's mean rank.
    _, inverse, counts = torch.unique_consecutive(sorted_s, return_inverse=True, return_counts=True)
    ends = torch.cumsum(counts, 0).to(s.dtype)
    mean_rank = ends - (counts.to(s.dtype) - 1) / 2
    ranks[order] = mean_rank[inverse]
    u = ranks[lab].sum() - n_pos * (n_pos + 1) / 2
    return float(u / (n_pos * n_neg))


def first_component(x) -> torch.Tensor:
    """Scores (n,) of rows x (n, D) on their first principal component (centred, unit direction
    from the SVD; the sign is arbitrary)."""
    x = _f64(x)
    x = x - x.mean(0)
    _, _, vh = torch.linalg.svd(x, full_matrices=False)
    return x @ vh[0]


def pc1_auroc(x, positive, negative) -> float:
    """Fig. 4's number: how well the first principal component of the tokens in positive OR
    negative separates the two sets, sign-free: max(A, 1 - A) with A = auroc(PC1 scores,
    positive) over those tokens. 0.5 = not at all, 1 = perfectly.

    x: (n, D) token features; positive, negative: (n,) bool, disjoint (e.g. the moving subset
    and the frozen region around it).
    """
    pos, neg = torch.as_tensor(positive).bool().reshape(-1), torch.as_tensor(negative).bool().reshape(-1)
    if bool((pos & neg).any()):
        raise ValueError("pc1_auroc: a token is in both the positive and the negative set")
    keep = pos | neg
    a = auroc(first_component(_f64(x)[keep]), pos[keep])
    return max(a, 1 - a)


def explained_by(x0, xt, lam: float = 1e-6) -> float:
    """Fraction of the variance of xt (n, D) explained by an affine map from x0 (n, p), adjusted
    for the number of predictors p (an in-sample fit of p free directions explains about p / n of
    pure noise; a held-out fit at p close to n is unstable instead):
        R^2   = 1 - sum_d ||xt_d - x0 W_d - b_d||^2 / sum_d ||xt_d - mean xt_d||^2
        R^2_a = 1 - (1 - R^2) (n - 1) / (n - p - 1)
    with W, b least squares (ridge lam per example on standardised x0, for numerical safety).
    1 when xt is an affine function of x0 (e.g. t = 0), about 0 when unrelated. Needs n > p + 1
    rows (tokens of several clips); NaN when xt is constant."""
    x0, xt = _f64(x0), _f64(xt)
    n, p = x0.shape
    if n <= p + 1:
        raise ValueError(f"explained_by needs more rows than predictors + 1: {n} rows, {p} "
                         f"features; use more clips")
    mu, sd = x0.mean(0), x0.std(0, unbiased=False).clamp_min(1e-12)
    z = torch.cat([(x0 - mu) / sd, torch.ones(n, 1, dtype=x0.dtype)], dim=1)
    gram = z.T @ z + lam * n * torch.eye(p + 1, dtype=z.dtype)
    fit = z @ torch.linalg.solve(gram, z.T @ xt)
    total = ((xt - xt.mean(0)) ** 2).sum()
    if total <= 0:
        return float("nan")
    r2 = 1 - ((xt - fit) ** 2).sum() / total
    return float(1 - (1 - r2) * (n - 1) / (n - p - 1))


def mean_cosine(x0, xt) -> float:
    """Mean over rows of cos(x0_i, xt_i) = <x0_i, xt_i> / (|x0_i| |xt_i|); x0, xt: (n, D)."""
    return float(F.cosine_similarity(_f64(x0), _f64(xt), dim=-1, eps=1e-12).mean())


def pool_to_grid(maps: torch.Tensor, t: int, h: int, w: int) -> torch.Tensor:
    """Per-pixel maps (b, T, H, W) averaged onto a token grid (b, t, h, w).

    Space: average over each token's H/h x W/w patch (adaptive pooling when not divisible).
    Time: when T = 1 + r (t - 1) for an integer r (WALT's causal tokenizer: frame 0 alone, then
    r frames per latent frame), latent frame 0 is frame 0 and latent i >= 1 averages frames
    r (i - 1) + 1 .. r i; otherwise adaptive average pooling over time.
    """
    maps = _f64(maps)
    b, big_t = maps.shape[:2]
    space = F.adaptive_avg_pool2d(rearrange(maps, "b T H W -> (b T) H W"), (h, w))
    space = rearrange(space, "(b T) h w -> b T h w", b=b)
    if t > 1 and (big_t - 1) % (t - 1) == 0 and big_t > 1:
        r = (big_t - 1) // (t - 1)
        rest = rearrange(space[:, 1:], "b (t r) h w -> b t r h w", r=r).mean(2)
        return torch.cat([space[:, :1], rest], dim=1)
    pooled = F.adaptive_avg_pool1d(rearrange(space, "b T h w -> (b h w) 1 T"), t)
    return rearrange(pooled, "(b h w) 1 t -> b t h w", b=b, h=h, w=w)


def mask_to_grid(mask: torch.Tensor, h: int, w: int, threshold: float = 0.5) -> torch.Tensor:
    """A pixel mask (H, W) bool to the token grid (h, w): a token is in when more than
    `threshold` of its patch is."""
    frac = F.adaptive_avg_pool2d(_f64(mask)[None], (h, w))[0]
    return frac > threshold

"""Window partitioning of the latent token grid (WALT's SW and STW attention windows).

The residual stream is kept as a grid (b, t, h, w, d). A window (wt, wh, ww) tiles it into
nt x nh x nw windows; attention runs inside each window as one batch row of length
wt * wh * ww. SW windows are one whole latent frame (1, h, w); STW windows span every latent
frame and a spatial sub-window (5, 8, 8 in WALT). A window larger than the grid is clipped to
it, so an STW window on a one-frame input is (1, wh, ww).
"""

from __future__ import annotations

from einops import rearrange
from torch import Tensor

_PARTITION = "b (nt wt) (nh wh) (nw ww) d -> (b nt nh nw) (wt wh ww) d"
_MERGE = "(b nt nh nw) (wt wh ww) d -> b (nt wt) (nh wh) (nw ww) d"


def spatial_window(grid: tuple[int, int, int]) -> tuple[int, int, int]:
    """The SW window of a (t, h, w) grid: one whole latent frame."""
    return 1, grid[1], grid[2]


def clip_window(window: tuple[int, int, int], grid: tuple[int, int, int]) -> tuple[int, int, int]:
    """`window` clipped to `grid` (both (t, h, w)); the clipped window must tile the grid."""
    clipped = tuple(min(int(w), int(g)) for w, g in zip(window, grid))
    if any(g % w for w, g in zip(clipped, grid)):
        raise ValueError(f"attention window {tuple(window)} (clipped to {clipped}) does not tile "
                         f"the latent grid {tuple(grid)}; choose a window whose sides divide it")
    return clipped


def partition(x: Tensor, window: tuple[int, int, int]) -> Tensor:
    """x: (b, t, h, w, d) -> windows (b * nt * nh * nw, wt * wh * ww, d).

    Windows are ordered batch-major, then time, height, width; tokens inside a window in
    (wt, wh, ww) order. For SW windows this is a view (no copy).
    """
    wt, wh, ww = window
    return rearrange(x, _PARTITION, wt=wt, wh=wh, ww=ww)


def merge(windows: Tensor, window: tuple[int, int, int], grid: tuple[int, int, int]) -> Tensor:
    """Inverse of `partition`: windows (b * nt * nh * nw, wt * wh * ww, d) -> (b, t, h, w, d)."""
    wt, wh, ww = window
    t, h, w = grid
    return rearrange(windows, _MERGE, wt=wt, wh=wh, ww=ww, nt=t // wt, nh=h // wh, nw=w // ww)


def windows_per_example(window: tuple[int, int, int], grid: tuple[int, int, int]) -> int:
    """nt * nh * nw: how many windows one example's grid holds."""
    return (grid[0] // window[0]) * (grid[1] // window[1]) * (grid[2] // window[2])

"""Causal 3-D convolution and the tokenizer's building blocks (MAGVIT-v2 style).

Causal in time: a kernel of temporal size k_t is padded with k_t - 1 frames on the PAST side
only (replicas of the first frame), so output frame i sees input frames <= i (times the stride)
and frame 0 is encoded on its own: an image is a one-frame video. Normalisation is GroupNorm
applied per frame, because GroupNorm over (c, T, H, W) would let the statistics of future frames
leak into past ones and break causality.

Tensors here are (b, c, T, H, W) (channels first, as Conv3d wants).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn


def _triple(v) -> tuple[int, int, int]:
    return tuple(v) if isinstance(v, (tuple, list)) else (v, v, v)


class CausalConv3d(nn.Module):
    """Conv3d, past-only padding in time, symmetric ('same') padding in space.

    With kernel 3 and temporal stride 2 it maps 1 + 2k frames to 1 + k (17 -> 9 -> 5).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size=3, stride=1,
                 bias: bool = False):
        super().__init__()
        self.kernel_size = _triple(kernel_size)
        self.stride = _triple(stride)
        kt, kh, kw = self.kernel_size
        self.time_pad = kt - 1
        self.conv = nn.Conv3d(in_channels, out_channels, self.kernel_size, self.stride,
                              padding=(0, kh // 2, kw // 2), bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        """x: (b, c, T, H, W) -> (b, c', 1 + (T - 1) // s_t, H // s_h, W // s_w)."""
        if self.time_pad:
            first = x[:, :, :1].expand(-1, -1, self.time_pad, -1, -1)
            x = torch.cat([first, x], dim=2)
        return self.conv(x)


class FrameGroupNorm(nn.GroupNorm):
    """GroupNorm with statistics per frame (keeps the network causal in time)."""

    def __init__(self, channels: int, max_groups: int = 32):
        super().__init__(math.gcd(max_groups, channels), channels, eps=1e-6)

    def forward(self, x: Tensor) -> Tensor:
        b = x.shape[0]
        y = super().forward(rearrange(x, "b c T H W -> (b T) c H W"))
        return rearrange(y, "(b T) c H W -> b c T H W", b=b)


class ResBlock3d(nn.Module):
    """GN -> SiLU -> causal conv3 -> GN -> SiLU -> causal conv3, plus a 1x1x1 shortcut when the
    width changes (MAGVIT's residual block; convolutions without bias)."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.norm1 = FrameGroupNorm(in_channels)
        self.conv1 = CausalConv3d(in_channels, out_channels, 3)
        self.norm2 = FrameGroupNorm(out_channels)
        self.conv2 = CausalConv3d(out_channels, out_channels, 3)
        self.shortcut = (nn.Conv3d(in_channels, out_channels, 1, bias=False)
                         if in_channels != out_channels else nn.Identity())

    def forward(self, x: Tensor) -> Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        return self.shortcut(x) + h


class Downsample(nn.Module):
    """Strided causal conv: 2x in space, and 2x in time when `temporal` (MAGVIT-v2 replaces
    v1's average pooling by strided convolutions)."""

    def __init__(self, channels: int, temporal: bool):
        super().__init__()
        self.conv = CausalConv3d(channels, channels, 3, stride=(2 if temporal else 1, 2, 2))

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(x)


class Upsample(nn.Module):
    """Depth-to-space upsampling (MAGVIT-v2): a causal conv to c * s_t * 2 * 2 channels, a 3-D
    pixel shuffle, then the first s_t - 1 frames are dropped so 1 + k frames become 1 + s_t k
    (the inverse of the causal stride)."""

    def __init__(self, channels: int, temporal: bool):
        super().__init__()
        self.st = 2 if temporal else 1
        self.conv = CausalConv3d(channels, channels * self.st * 4, 3)

    def forward(self, x: Tensor) -> Tensor:
        x = rearrange(self.conv(x), "b (c st sh sw) T H W -> b c (T st) (H sh) (W sw)",
                      st=self.st, sh=2, sw=2)
        return x[:, :, self.st - 1:]

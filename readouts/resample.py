"""Resampling of activations along time (latent frames -> clip frames) as 4DS does it.

4DS's `EncoderToReadout` resizes the time axis with `jax.image.resize(..., "cubic")`: the Keys
cubic kernel with a = -0.5, half-pixel sample centres, the kernel widened by the scale factor
when downsampling (antialiasing), and weights renormalised where the kernel leaves the signal.
PyTorch's bicubic uses a = -0.75 and clamps at the borders, so the weights are built here.
"""

from __future__ import annotations

import torch
from einops import einsum


def keys_cubic(x: torch.Tensor, a: float = -0.5) -> torch.Tensor:
    """Keys cubic convolution kernel k(x) (support |x| < 2)."""
    x = x.abs()
    near = ((a + 2) * x - (a + 3)) * x * x + 1
    far = ((a * x - 5 * a) * x + 8 * a) * x - 4 * a
    return torch.where(x <= 1, near, torch.where(x < 2, far, torch.zeros_like(x)))


def cubic_resize_weights(in_size: int, out_size: int, *, dtype=torch.float32,
                         device=None) -> torch.Tensor:
    """(out_size, in_size) weights W with resized = W @ signal (jax.image.resize 'cubic').

    Output sample i sits at input coordinate s_i = (i + 0.5) * in / out - 0.5; its weights are
    k((j - s_i) / max(in / out, 1)) over input samples j, divided by their sum.
    """
    if in_size < 1 or out_size < 1:
        raise ValueError(f"sizes must be positive; received in={in_size}, out={out_size}")
    inv_scale = in_size / out_size
    kernel_scale = max(inv_scale, 1.0)
    centres = (torch.arange(out_size, dtype=torch.float64) + 0.5) * inv_scale - 0.5
    offsets = torch.arange(in_size, dtype=torch.float64)[None, :] - centres[:, None]
    weights = keys_cubic(offsets / kernel_scale)
    weights = weights / weights.sum(dim=1, keepdim=True)
    return weights.to(dtype=dtype, device=device)


def resize_time(x: torch.Tensor, num_frames: int) -> torch.Tensor:
    """x: (b, t, h, w, d) -> (b, num_frames, h, w, d), cubic in time; identity when t == num_frames.

    A single frame (t = 1) is repeated, a constant signal stays constant.
    """
    if x.ndim != 5:
        raise ValueError(f"resize_time expects (b, t, h, w, d); received {tuple(x.shape)}")
    if x.shape[1] == num_frames:
        return x
    weights = cubic_resize_weights(x.shape[1], num_frames, dtype=x.dtype, device=x.device)
    return einsum(weights, x, "T t, b t h w d -> b T h w d")

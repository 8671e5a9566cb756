"""Resampling of activations along time (latent frames -> clip frames) as 4DS does it.

4DS's `EncoderToReadout` resizes the time axis with `jax.image.resize(..., "cubic")`: the Keys
cubic kernel with a = -0.5, half-pixel sample centres, the kernel widened by the scale factor
when downsampling (antialiasing), and weights renormalised where the kernel leaves the signal.
PyTorch's bicubic uses a = -0.75 and clamps at the borders, so the weights are built here.

4DS's tubelets are uniform in time; WALT's causal tokenizer is not (latent 0 = frame 0, latent k
= frames 4k-3 .. 4k), so the sample positions can follow the frame spans the backbone reports
(`span_positions`); equal spans reproduce the uniform resize exactly.
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


def cubic_weights_at(positions: torch.Tensor, in_size: int, kernel_scale: float = 1.0, *,
                     dtype=torch.float32, device=None) -> torch.Tensor:
    """(out, in_size) Keys-cubic weights sampling a signal of `in_size` samples at `positions`
    (out,) given in sample-index units; kernel widened by kernel_scale, rows renormalised."""
    offsets = torch.arange(in_size, dtype=torch.float64)[None, :] - positions.double()[:, None]
    weights = keys_cubic(offsets / kernel_scale)
    weights = weights / weights.sum(dim=1, keepdim=True)
    return weights.to(dtype=dtype, device=device)


def cubic_resize_weights(in_size: int, out_size: int, *, dtype=torch.float32,
                         device=None) -> torch.Tensor:
    """(out_size, in_size) weights W with resized = W @ signal (jax.image.resize 'cubic').

    Output sample i sits at input coordinate s_i = (i + 0.5) * in / out - 0.5; its weights are
    k((j - s_i) / max(in / out, 1)) over input samples j, divided by their sum.
    """
    if in_size < 1 or out_size < 1:
        raise ValueError(f"sizes must be positive; received in={in_size}, out={out_size}")
    centres = (torch.arange(out_size, dtype=torch.float64) + 0.5) * in_size / out_size - 0.5
    return cubic_weights_at(centres, in_size, max(in_size / out_size, 1.0), dtype=dtype,
                            device=device)


def span_positions(spans: torch.Tensor, num_frames: int) -> torch.Tensor:
    """(num_frames,) float64: where each output frame sits on the feature-frame index axis.

    spans: (t', 2) [start, stop) of the clip frames each feature frame covers, contiguous and
    increasing (backbones/base.py, `frame_spans`). The output frames divide [start_0, stop_-1)
    evenly (normally the clip's own frames); output frame f's centre time tau_f is mapped
    piecewise linearly so that feature frame k's span [start_k, stop_k) becomes [k - 0.5, k + 0.5):
      s_f = k - 0.5 + (tau_f - start_k) / (stop_k - start_k)   for tau_f in span k.
    Each frame thus sits nearest the feature frame that covers it. Equal spans give
    s_f = (f + 0.5) * t' / num_frames - 0.5, jax.image.resize's half-pixel centres.
    """
    # On the host: spans are a few numbers, and they arrive on the features' device in training
    # (searchsorted needs both operands on one device; the checks below read them anyway).
    spans = torch.as_tensor(spans).detach().to("cpu", torch.float64)
    if spans.ndim != 2 or spans.shape[1] != 2 or len(spans) < 1:
        raise ValueError(f"spans must be (t', 2) [start, stop); received {tuple(spans.shape)}")
    starts, stops = spans[:, 0].contiguous(), spans[:, 1].contiguous()
    if bool((stops <= starts).any()) or bool((starts[1:] != stops[:-1]).any()):
        raise ValueError(f"spans must be contiguous and increasing ([start, stop) with each start "
                         f"the previous stop); received {spans.tolist()}")
    t0, t1 = float(starts[0]), float(stops[-1])
    tau = t0 + (torch.arange(num_frames, dtype=torch.float64) + 0.5) * (t1 - t0) / num_frames
    k = (torch.searchsorted(stops, tau, right=True)).clamp(max=len(spans) - 1)
    return k - 0.5 + (tau - starts[k]) / (stops[k] - starts[k])


def time_weights(t: int, num_frames: int, spans: torch.Tensor | None = None, *,
                 dtype=torch.float32, device=None) -> torch.Tensor:
    """(num_frames, t) weights W with resampled = W @ signal along time (`resize_time`'s).

    spans: None (t equal spans: jax.image.resize, 4DS) or (t, 2) [start, stop) of the frames
    each feature frame covers (`span_positions`). Identity when t == num_frames and spans is None.
    """
    if spans is None:
        if t == num_frames:
            return torch.eye(t, dtype=dtype, device=device)
        return cubic_resize_weights(t, num_frames, dtype=dtype, device=device)
    if len(spans) != t:
        raise ValueError(f"{len(spans)} frame spans given for {t} feature frames")
    return cubic_weights_at(span_positions(spans, num_frames), t, max(t / num_frames, 1.0),
                            dtype=dtype, device=device)


def resize_time(x: torch.Tensor, num_frames: int, spans: torch.Tensor | None = None) -> torch.Tensor:
    """x: (b, t, h, w, d) -> (b, num_frames, h, w, d), cubic in time.

    spans: None (t equal spans: jax.image.resize, 4DS) or (t, 2) [start, stop) of the frames
    each feature frame covers (see `span_positions`): WALT's causal latents cover [0, 1),
    [1, 5), [5, 9), ... of a 17-frame clip, and output frame f is read at the latent covering it.
    Identity when t == num_frames and the spans are equal; a single frame is repeated, a
    constant signal stays constant.
    """
    if x.ndim != 5:
        raise ValueError(f"resize_time expects (b, t, h, w, d); received {tuple(x.shape)}")
    if spans is None and x.shape[1] == num_frames:
        return x
    weights = time_weights(x.shape[1], num_frames, spans, dtype=x.dtype, device=x.device)
    return einsum(weights, x, "T t, b t h w d -> b T h w d")

"""Building blocks shared by the readout heads: shape checks, Fourier features, norms, MLPs,
the MooG cross-attention block, and Flax-matching initialisation.

The heads reproduce Flax modules (representations4d `AttentionReadout`, MooG readouts) so that
their parameter counts equal the paper's; the Flax defaults they rely on are kept here
(probing_spec.md, section 1.2): LayerNorm eps 1e-6, scale-only norms in MooG blocks, per-head
RMSNorm on q/k, tanh-GELU, LeCun-normal dense kernels with zero biases.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

LN_EPS = 1e-6


def check_activations(x: torch.Tensor, width: int, *, frames: int | None = None,
                      head: str = "readout") -> None:
    """Raises a ValueError unless x is (b, t, h, w, width) (and t == frames when given)."""
    expected = f"(b, {frames if frames is not None else 't'}, h, w, {width})"
    if x.ndim != 5:
        raise ValueError(f"{head}: activations must be {expected}; received shape "
                         f"{tuple(x.shape)} ({x.ndim} dims). Pass one block's activations "
                         "in the (b, t, h, w, d) grid layout.")
    if x.shape[-1] != width:
        raise ValueError(f"{head}: activations must be {expected}; received shape "
                         f"{tuple(x.shape)}: feature width {x.shape[-1]} != {width}. Build "
                         "the head with the backbone's feature_dim.")
    if frames is not None and x.shape[1] != frames:
        raise ValueError(f"{head}: activations must be {expected}; received shape "
                         f"{tuple(x.shape)}: {x.shape[1]} frames != {frames}. Resample time "
                         "(readouts.resample.resize_time) or build the head for that count.")


def fourier_features(coords: torch.Tensor, num_bases: int = 16) -> torch.Tensor:
    """MooG Fourier encoding. coords: (..., n) -> (..., 2 * n * num_bases).

    Each coordinate c is scaled by pi and multiplied by 2^0 .. 2^(K-1), ordered
    frequency-major ([c1 * 2^0, c2 * 2^0, c1 * 2^1, ...]); the output is [sin(all), cos(all)].
    """
    freqs = 2.0 ** torch.arange(num_bases, device=coords.device, dtype=coords.dtype)
    angles = math.pi * coords[..., None, :] * freqs[:, None]          # (..., K, n)
    angles = rearrange(angles, "... k n -> ... (k n)")
    return torch.cat([torch.sin(angles), torch.cos(angles)], dim=-1)


def with_token_positions(tokens: torch.Tensor, h: int, w: int, num_bases: int) -> torch.Tensor:
    """(f, h * w, D) tokens -> (f, h * w, D + 4K): the Fourier code (K bases) of each token's
    centre (y, x) on pixel_grid(h, w) appended. num_bases = 0 returns the tokens unchanged.

    The paper's heads take keys from the features alone, so a head can place what it reads
    only where the backbone encodes position; appending the code lets it localise features
    that carry none (the oracle's and the pixel floor's; results/controls/).
    """
    if num_bases == 0:
        return tokens
    code = fourier_features(rearrange(pixel_grid(h, w, device=tokens.device), "h w c -> (h w) c"),
                            num_bases).to(tokens.dtype)
    return torch.cat([tokens, code.expand(tokens.shape[0], *code.shape)], dim=-1)


def pixel_grid(height: int, width: int, *, device=None) -> torch.Tensor:
    """(height, width, 2) (y, x) pixel-centre coordinates on linspace(-1, 1) ("ij" order)."""
    ys = torch.linspace(-1.0, 1.0, height, device=device)
    xs = torch.linspace(-1.0, 1.0, width, device=device)
    return torch.stack(torch.meshgrid(ys, xs, indexing="ij"), dim=-1)


def scale_norm(width: int, eps: float = LN_EPS) -> nn.LayerNorm:
    """LayerNorm with a learned scale and no bias (MooG's `use_bias=False`)."""
    return nn.LayerNorm(width, eps=eps, bias=False)


class RMSNorm(nn.Module):
    """RMS normalisation over the last axis with a learned scale (applied per attention head)."""

    def __init__(self, width: int, eps: float = LN_EPS):
        super().__init__()
        self.eps = eps
        self.scale = nn.Parameter(torch.ones(width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.scale


class Mlp(nn.Sequential):
    """Linear -> GELU(tanh) -> Linear, with biases."""

    def __init__(self, in_dim: int, hidden: int, out_dim: int):
        super().__init__(nn.Linear(in_dim, hidden), nn.GELU(approximate="tanh"),
                         nn.Linear(hidden, out_dim))


class CrossAttentionBlock(nn.Module):
    """MooG "ImprovedTransformer" block in cross-attention-only mode (pre-norm, ViT-22B style).

    x: (b, n, width) queries; kv: (b, m, kv_dim) raw (un-normalised) features.
      h = LN_q(x); x = x + Out(Attn(RMS(Q h), RMS(K kv), V kv)); x = x + MLP(LN(x))
    q/k/v projections have no bias; the output projection and the MLP do.
    """

    def __init__(self, width: int, kv_dim: int, *, qkv_size: int, num_heads: int, mlp_size: int):
        super().__init__()
        if qkv_size % num_heads:
            raise ValueError(f"qkv_size {qkv_size} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        head_dim = qkv_size // num_heads
        self.norm_q = scale_norm(width)
        self.q = nn.Linear(width, qkv_size, bias=False)
        self.k = nn.Linear(kv_dim, qkv_size, bias=False)
        self.v = nn.Linear(kv_dim, qkv_size, bias=False)
        self.q_norm = RMSNorm(head_dim)
        self.k_norm = RMSNorm(head_dim)
        self.out = nn.Linear(qkv_size, width)
        self.norm_mlp = scale_norm(width)
        self.mlp = Mlp(width, mlp_size, width)

    def forward(self, x: torch.Tensor, kv: torch.Tensor) -> torch.Tensor:
        heads = dict(h=self.num_heads)
        q = self.q_norm(rearrange(self.q(self.norm_q(x)), "b n (h e) -> b h n e", **heads))
        k = self.k_norm(rearrange(self.k(kv), "b m (h e) -> b h m e", **heads))
        v = rearrange(self.v(kv), "b m (h e) -> b h m e", **heads)
        attended = F.scaled_dot_product_attention(q, k, v)
        x = x + self.out(rearrange(attended, "b h n e -> b n (h e)"))
        return x + self.mlp(self.norm_mlp(x))


def lecun_init_(module: nn.Module) -> None:
    """Flax dense defaults on every nn.Linear: truncated LeCun normal kernel, zero bias."""
    for layer in module.modules():
        if isinstance(layer, nn.Linear):
            # Flax's truncated_normal variance scaling divides by the std of a unit normal
            # truncated at +-2, so the kept samples have variance 1 / fan_in.
            std = math.sqrt(1.0 / layer.in_features) / 0.87962566103423978
            nn.init.trunc_normal_(layer.weight, std=std, a=-2 * std, b=2 * std)
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)


def count_parameters(module: nn.Module) -> int:
    """Number of scalar parameters (works on the meta device)."""
    return sum(p.numel() for p in module.parameters())


def image_hw(size: int | Sequence[int]) -> tuple[int, int]:
    """An image size given as int or (H, W) -> (H, W)."""
    if isinstance(size, int):
        return size, size
    height, width = size
    return int(height), int(width)

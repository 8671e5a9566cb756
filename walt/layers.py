"""The WALT transformer block and its parts: windowed self-attention with qk-norm, text
cross-attention, MLP, timestep embedding, AdaLN-LoRA modulation.

One block (pre-norm, DiT-style adaptive LayerNorm; WALT Sec. 4.3 and Eq. 3):
  x <- x + gate1 * merge(SelfAttn(partition(LN(x) * (1 + scale1) + shift1)))
  x <- x + CrossAttn(LN(x), text)                            (only when built with text)
  x <- x + gate2 * MLP(LN(x) * (1 + scale2) + shift2)
The six modulation vectors come from AdaLN-LoRA: a projection of the conditioning shared by
all blocks plus a rank-r correction per block.

No relative-position bias (Swin-style tables are sized by the window, which differs between
I-WALT and V-WALT, and would break "same parameter tensors"; an additive bias would also keep
SDPA off its flash kernel). Learned absolute embeddings carry position instead.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from walt.windows import merge, partition, windows_per_example


def timestep_features(t: Tensor, dim: int = 256, max_period: float = 10000.0) -> Tensor:
    """Sinusoidal features of integer timesteps (b,) -> (b, dim) float32 (DiT / ADM)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) *
                      torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t.float()[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


class TimestepEmbedder(nn.Module):
    """(b,) long timesteps -> (b, d): sinusoids -> Linear -> SiLU -> Linear."""

    def __init__(self, width: int, freq_dim: int = 256):
        super().__init__()
        self.freq_dim = freq_dim
        self.mlp = nn.Sequential(nn.Linear(freq_dim, width), nn.SiLU(), nn.Linear(width, width))

    def forward(self, t: Tensor) -> Tensor:
        dtype = self.mlp[0].weight.dtype
        return self.mlp(timestep_features(t, self.freq_dim).to(dtype))


def _modulate(x: Tensor, shift: Tensor, scale: Tensor) -> Tensor:
    """x: (b, ..., d); shift, scale: (b, d), broadcast over the token axes."""
    shape = (x.shape[0],) + (1,) * (x.ndim - 2) + (x.shape[-1],)
    return torch.addcmul(shift.view(shape), x, 1 + scale.view(shape))  # one kernel in eager


class WindowSelfAttention(nn.Module):
    """Multi-head self-attention inside windows: fused QKV, LayerNorm on per-head q and k
    (ViT-22B qk-norm), `F.scaled_dot_product_attention`.

    forward(windows (n_win, n, d), identity) -> (n_win, n, d). `identity` True (or a per-window
    bool (n_win,)) gives WALT's identity attention mask: each token attends only to itself, so
    the attention output is its value vector.
    """

    def __init__(self, width: int, num_heads: int):
        super().__init__()
        if width % num_heads:
            raise ValueError(f"width {width} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        head_dim = width // num_heads
        self.qkv = nn.Linear(width, 3 * width)
        self.q_norm = nn.LayerNorm(head_dim, eps=1e-6)
        self.k_norm = nn.LayerNorm(head_dim, eps=1e-6)
        self.proj = nn.Linear(width, width)

    def forward(self, x: Tensor, identity: bool | Tensor = False) -> Tensor:
        q, k, v = rearrange(self.qkv(x), "b n (three heads e) -> three b heads n e",
                            three=3, heads=self.num_heads)
        if identity is True:
            out = v
        else:
            out = F.scaled_dot_product_attention(self.q_norm(q), self.k_norm(k), v)
            if isinstance(identity, Tensor):
                out = torch.where(identity.view(-1, 1, 1, 1), v, out)
        return self.proj(rearrange(out, "b heads n e -> b n (heads e)"))


class CrossAttention(nn.Module):
    """Tokens attend to text tokens (pre-LN, qk-norm, fused KV). Per token, so frames stay
    independent of each other through this layer."""

    def __init__(self, width: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        head_dim = width // num_heads
        self.norm = nn.LayerNorm(width, eps=1e-6)
        self.q = nn.Linear(width, width)
        self.kv = nn.Linear(width, 2 * width)
        self.q_norm = nn.LayerNorm(head_dim, eps=1e-6)
        self.k_norm = nn.LayerNorm(head_dim, eps=1e-6)
        self.proj = nn.Linear(width, width)

    def forward(self, x: Tensor, text: Tensor) -> Tensor:
        """x: (b, n, d) tokens; text: (b, s, d) projected text tokens -> (b, n, d)."""
        q = rearrange(self.q(self.norm(x)), "b n (heads e) -> b heads n e", heads=self.num_heads)
        k, v = rearrange(self.kv(text), "b s (two heads e) -> two b heads s e",
                         two=2, heads=self.num_heads)
        out = F.scaled_dot_product_attention(self.q_norm(q), self.k_norm(k), v)
        return self.proj(rearrange(out, "b heads n e -> b n (heads e)"))


class MLP(nn.Module):
    """Linear -> GELU (tanh) -> Linear."""

    def __init__(self, width: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(width, hidden)
        self.fc2 = nn.Linear(hidden, width)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(F.gelu(self.fc1(x), approximate="tanh"))


class WALTBlock(nn.Module):
    """One transformer layer of WALT: windowed self-attention + (cross-attention) + MLP, with
    AdaLN-LoRA modulation. The window is chosen by the caller (SW or STW), so the same block
    (and the same parameters) serves I-WALT and V-WALT.
    """

    def __init__(self, width: int, num_heads: int, mlp_ratio: float, lora_rank: int,
                 cross_attention: bool):
        super().__init__()
        self.norm1 = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.attn = WindowSelfAttention(width, num_heads)
        self.cross = CrossAttention(width, num_heads) if cross_attention else None
        self.norm2 = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.mlp = MLP(width, int(width * mlp_ratio))
        # AdaLN-LoRA (WALT Eq. 3): A_i = A_shared + W_up^i W_down^i c, rank r.
        self.lora_down = nn.Linear(width, lora_rank, bias=False)
        self.lora_up = nn.Linear(lora_rank, 6 * width, bias=False)

    def forward(self, x: Tensor, cond: Tensor, shared_mod: Tensor, window: tuple[int, int, int],
                identity: bool | Tensor = False, text: Tensor | None = None) -> Tensor:
        """x: (b, t, h, w, d) residual stream; cond: (b, d) SiLU of the conditioning;
        shared_mod: (b, 6d) the shared AdaLN projection; window: (wt, wh, ww) tiling (t, h, w);
        identity: WALT's identity mask (True, or per example (b,) bool); text: (b, s, d) or None.
        Returns the updated residual stream (b, t, h, w, d).
        """
        b, t, h, w, d = x.shape
        grid = (t, h, w)
        mod = shared_mod + self.lora_up(self.lora_down(cond))
        shift1, scale1, gate1, shift2, scale2, gate2 = mod.chunk(6, dim=-1)
        if isinstance(identity, Tensor):
            identity = identity.repeat_interleave(windows_per_example(window, grid))
        # 1. windowed self-attention
        y = partition(_modulate(self.norm1(x), shift1, scale1), window)
        y = merge(self.attn(y, identity), window, grid)
        x = torch.addcmul(x, gate1.view(b, 1, 1, 1, d), y)
        # 2. cross-attention to text (no modulation, as in WALT's text models)
        if self.cross is not None:
            tokens = rearrange(x, "b t h w d -> b (t h w) d")
            x = x + rearrange(self.cross(tokens, text), "b (t h w) d -> b t h w d", t=t, h=h)
        # 3. MLP
        y = self.mlp(_modulate(self.norm2(x), shift2, scale2))
        return torch.addcmul(x, gate2.view(b, 1, 1, 1, d), y)

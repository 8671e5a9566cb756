"""The attentive readout of 4DS / V-JEPA: learned query, one cross-attention over all
space-time tokens, residual MLP, linear head (classification, action recognition, pose).

Architecture (probing_spec.md, section 2.1; representations4d `AttentionReadout`):
  1. x = LN_D(F) + E[t]          learned temporal embedding E (T, D), broadcast over space
  2. x -> (b, T*h*w, D)          all space-time tokens jointly
  3. q: learned (Q, P) in head space (no projection); k, v = Linear(D -> P)(x)
  4. o = MHA(q, k, v);  y = q + Linear(P -> P)(o)
  5. y = y + MLP(LN_P(y))        MLP P -> 4P -> P, GELU
  6. out = Linear(P -> C)(y)

Parameters = 2D + T*D + Q*P + 2(D*P + P) + (P*P + P) + 2P + (8P^2 + 5P) + (P*C + C); with
D = 1024 and T = 17 this gives the paper's counts (PAPER_CLASSIFICATION below).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange, repeat
from torch import nn

from readouts.layers import LN_EPS, Mlp, check_activations, lecun_init_

# dataset -> (num_classes, readout width P, heads) reproducing the paper's Tables 5-6 at
# D = 1024, T = 17 (spec 2.3). Heads do not change the count; 64-d heads are the choice.
PAPER_CLASSIFICATION = {
    "imagenet": (1000, 768, 12),
    "places365": (365, 768, 12),
    "inat2018": (8142, 768, 12),
    "ssv2": (174, 768, 12),
    "k400": (400, 1024, 16),
    "k700": (700, 1024, 16),
}


class AttentiveReadout(nn.Module):
    """Cross-attention pooling of (b, T, h, w, D) activations into num_outputs values.

    feature_dim: D of the activations. num_outputs: C (classes, or 12 for pose).
    num_frames: T the temporal embedding is built for (activations must have it).
    width: P; num_heads: H (P % H == 0); num_queries: Q.
    forward: (b, T, h, w, D) -> (b, C) when Q == 1, else (b, Q, C).
    """

    def __init__(self, feature_dim: int, num_outputs: int, *, num_frames: int = 17,
                 width: int = 768, num_heads: int = 12, num_queries: int = 1):
        super().__init__()
        if width % num_heads:
            raise ValueError(f"width {width} is not divisible by num_heads {num_heads}")
        self.feature_dim, self.num_frames, self.num_heads = feature_dim, num_frames, num_heads
        # 1. input norm and temporal embedding
        self.norm_in = nn.LayerNorm(feature_dim, eps=LN_EPS)
        self.time_embed = nn.Parameter(torch.randn(num_frames, feature_dim) * 0.02)
        # 3. learned query (already in head space) and key/value projections
        self.query = nn.Parameter(torch.randn(num_queries, width) * 0.02)
        self.k = nn.Linear(feature_dim, width)
        self.v = nn.Linear(feature_dim, width)
        # 4. output projection; 5. residual MLP; 6. head
        self.proj = nn.Linear(width, width)
        self.norm_mlp = nn.LayerNorm(width, eps=LN_EPS)
        self.mlp = Mlp(width, 4 * width, width)
        self.head = nn.Linear(width, num_outputs)
        lecun_init_(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_activations(x, self.feature_dim, frames=self.num_frames, head=type(self).__name__)
        heads = dict(h=self.num_heads)
        # 1.-2.
        x = self.norm_in(x) + rearrange(self.time_embed, "t d -> t 1 1 d")
        tokens = rearrange(x, "b t h w d -> b (t h w) d")
        # 3.-4.
        q = repeat(self.query, "q (h e) -> b h q e", b=x.shape[0], **heads)
        k = rearrange(self.k(tokens), "b n (h e) -> b h n e", **heads)
        v = rearrange(self.v(tokens), "b n (h e) -> b h n e", **heads)
        attended = rearrange(F.scaled_dot_product_attention(q, k, v), "b h q e -> b q (h e)")
        y = self.query + self.proj(attended)
        # 5.-6.
        y = y + self.mlp(self.norm_mlp(y))
        out = self.head(y)
        return out[:, 0] if out.shape[1] == 1 else out


def paper_classification_readout(dataset: str, feature_dim: int = 1024,
                                 num_frames: int = 17) -> AttentiveReadout:
    """The readout the paper used for `dataset` (a key of PAPER_CLASSIFICATION)."""
    if dataset not in PAPER_CLASSIFICATION:
        raise KeyError(f"unknown dataset '{dataset}'; known: {sorted(PAPER_CLASSIFICATION)}")
    num_classes, width, heads = PAPER_CLASSIFICATION[dataset]
    return AttentiveReadout(feature_dim, num_classes, num_frames=num_frames, width=width,
                            num_heads=heads)

"""SRT-style depth readout: Fourier-encoded pixel queries cross-attend into one frame's tokens.

Paper 3.4 / App. D.3: the Scene Representation Transformer decoder, applied to each frame
independently, trained with an L2 loss. Mechanics follow MooG's `DenseReadout` + `SRTDecoder`
(probing_spec.md, 3.2): query = concat(zeros(D), Fourier(y, x; 16 bases)), cross-attention-only
pre-norm blocks with keys/values from the raw frame tokens, a final scale-only LayerNorm and a
linear output (no activation).

The configuration is INFERRED, not confirmed: 1 block, qkv width 512, 2 heads, MLP 512 is the
one found (spec 3.3) whose count equals the paper's 3,284,353 at D = 1024; every size is a
constructor argument.

Training subsamples the pixel grid (every `train_stride`-th row and column after a random
offset, as MooG does) to keep memory bounded; evaluation decodes every pixel, `eval_chunk`
frames at a time.
"""

from __future__ import annotations

import torch
from einops import rearrange, repeat
from torch import nn

from readouts.layers import (CrossAttentionBlock, check_activations, fourier_features,
                             image_hw, lecun_init_, pixel_grid, scale_norm, with_token_positions)


class DepthReadout(nn.Module):
    """(b, t, h, w, D) -> per-pixel depth of every frame.

    feature_dim: D. output_size: (H, W) or int, the depth raster.
    num_layers / qkv_size / num_heads / mlp_size: decoder sizes (defaults: the inferred paper ones).
    num_fourier_bases: K (query width D + 4K). train_stride: pixel subsampling while training.
    eval_chunk: frames decoded at once in eval mode. token_position_bases: K' > 0 appends the
    Fourier code of each token's centre to the keys/values (layers.with_token_positions);
    0 = the paper's head.
    forward returns {"depth": (b, t, H', W') metres, "rows": (H',) long, "cols": (W',) long}:
    the prediction at pixel (rows[i], cols[j]); the full grid in eval mode.
    """

    def __init__(self, feature_dim: int, output_size, *, num_layers: int = 1,
                 qkv_size: int = 512, num_heads: int = 2, mlp_size: int = 512,
                 num_fourier_bases: int = 16, train_stride: int = 8, eval_chunk: int = 4,
                 token_position_bases: int = 0):
        super().__init__()
        self.feature_dim = feature_dim
        self.output_size = image_hw(output_size)
        self.num_fourier_bases, self.train_stride, self.eval_chunk = (
            num_fourier_bases, train_stride, eval_chunk)
        self.token_position_bases = token_position_bases
        width = feature_dim + 4 * num_fourier_bases
        self.blocks = nn.ModuleList(
            CrossAttentionBlock(width, feature_dim + 4 * token_position_bases, qkv_size=qkv_size,
                                num_heads=num_heads,
                                mlp_size=mlp_size) for _ in range(num_layers))
        self.norm_out = scale_norm(width)
        self.head = nn.Linear(width, 1)
        lecun_init_(self)

    def _pixels(self, device) -> tuple[torch.Tensor, torch.Tensor]:
        height, width = self.output_size
        if not self.training or self.train_stride <= 1:
            return torch.arange(height, device=device), torch.arange(width, device=device)
        # One random offset per call, shared by rows and the loss's target (MooG's roll).
        offset = torch.randint(0, self.train_stride, (2,)).tolist()
        return (torch.arange(offset[0], height, self.train_stride, device=device),
                torch.arange(offset[1], width, self.train_stride, device=device))

    def _decode(self, queries: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """queries (f, n, W), tokens (f, m, D) -> (f, n)."""
        for block in self.blocks:
            queries = block(queries, tokens)
        return self.head(self.norm_out(queries))[..., 0]

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        check_activations(x, self.feature_dim, head=type(self).__name__)
        batch, frames = x.shape[:2]
        rows, cols = self._pixels(x.device)
        # Query per pixel: zeros of the feature width, then the Fourier code of its (y, x).
        coords = pixel_grid(*self.output_size, device=x.device)[rows][:, cols]
        code = fourier_features(rearrange(coords, "y x c -> (y x) c"), self.num_fourier_bases)
        query = torch.cat([code.new_zeros(code.shape[0], self.feature_dim), code], dim=-1)
        tokens = with_token_positions(rearrange(x, "b t h w d -> (b t) (h w) d"), *x.shape[2:4],
                                      self.token_position_bases)
        chunk = tokens.shape[0] if self.training else max(1, self.eval_chunk)
        out = torch.cat([
            self._decode(repeat(query.to(x.dtype), "n c -> f n c", f=part.shape[0]), part)
            for part in tokens.split(chunk)])
        depth = rearrange(out, "(b t) (y x) -> b t y x", b=batch, t=frames, y=len(rows))
        return {"depth": depth, "rows": rows, "cols": cols}

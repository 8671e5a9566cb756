"""WALT: the windowed-attention latent transformer (Gupta et al. 2023), as I-WALT or V-WALT.

  z_t (b, z, t, h, w) noised latents [+ self-conditioning estimate on channels]
    -> block 0: patch embedding (patch p) + learned spatial + temporal position embeddings
                                                                      -> (b, t, h/p, w/p, d)
    -> blocks 1..L: odd = spatial window (SW, one whole latent frame),
                    even = spatio-temporal window (STW, wt x wh x ww, clipped to the grid)
    -> final AdaLN + linear head -> v prediction (b, z, t, h, w)

Variants share every parameter tensor and differ only in the STW blocks' window:
  'video' (V-WALT): STW windows as configured; a one-latent-frame input (an image) uses the
                    identity attention mask in STW blocks, as WALT does for images.
  'image' (I-WALT): STW blocks attend within SW windows (the paper's I-WALT, Sec. 3.3), so
                    latent frames never see each other.
`model.variant = "image"` switches a built model.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from walt.layers import TimestepEmbedder, WALTBlock, _modulate
from walt.sizes import walt_kwargs
from walt.windows import clip_window, spatial_window

VARIANTS = ("video", "image")


class WALT(nn.Module):
    """The WALT denoiser.

    width, depth, num_heads, mlp_ratio: transformer shape (d, L, heads, MLP = ratio * d).
    patch_size: p (1 in WALT's base model).
    latent_channels: z, channels of the tokenizer's latents.
    latent_shape: (t, h, w) latent grid the position embeddings are learned for; other spatial
      grids interpolate the spatial table, fewer frames use its first rows.
    stw_window: (wt, wh, ww) spatio-temporal window in patches, clipped to the grid.
    adaln_lora_rank: r of AdaLN-LoRA.
    self_condition: the patch embedding also reads a previous clean-latent estimate (2z inputs).
    text_dim: width of text embeddings for cross-attention; None builds no cross-attention.
    variant: 'video' (V-WALT) or 'image' (I-WALT); settable after construction.
    zero_init_gates: adaLN-Zero (DiT) init, every block the identity at first (for training from
      scratch); False gives blocks and head random non-zero gates (random-feature baselines).
    """

    def __init__(self, width: int = 1024, depth: int = 22, num_heads: int = 16,
                 mlp_ratio: float = 4.0, patch_size: int = 1, latent_channels: int = 8,
                 latent_shape: Sequence[int] = (5, 16, 16), stw_window: Sequence[int] = (5, 8, 8),
                 adaln_lora_rank: int = 2, self_condition: bool = True,
                 text_dim: int | None = None, variant: str = "video",
                 zero_init_gates: bool = True):
        super().__init__()
        latent_shape, stw_window = tuple(int(v) for v in latent_shape), tuple(int(v) for v in stw_window)
        lt, lh, lw = latent_shape
        if lh % patch_size or lw % patch_size:
            raise ValueError(f"latent_shape {latent_shape} is not divisible by patch {patch_size}")
        self._kwargs = dict(width=width, depth=depth, num_heads=num_heads, mlp_ratio=mlp_ratio,
                            patch_size=patch_size, latent_channels=latent_channels,
                            latent_shape=list(latent_shape), stw_window=list(stw_window),
                            adaln_lora_rank=adaln_lora_rank, self_condition=self_condition,
                            text_dim=text_dim, zero_init_gates=zero_init_gates)
        self.width, self.num_blocks, self.patch_size = width, depth, patch_size
        self.latent_channels, self.self_condition = latent_channels, self_condition
        self.stw_window = stw_window
        self.variant = variant
        in_channels = latent_channels * (2 if self_condition else 1)
        # 1. block 0: patch embedding + learned spatial and temporal position embeddings
        self.patch_embed = nn.Linear(in_channels * patch_size ** 2, width)
        self.pos_spatial = nn.Parameter(torch.zeros(lh // patch_size, lw // patch_size, width))
        self.pos_temporal = nn.Parameter(torch.zeros(lt, width))
        # 2. conditioning: timestep MLP, optional text projection with a learned null text
        self.t_embedder = TimestepEmbedder(width)
        self.text_proj = nn.Linear(text_dim, width) if text_dim else None
        self.null_text = nn.Parameter(torch.zeros(1, text_dim)) if text_dim else None
        # 3. AdaLN-LoRA: one projection shared by all blocks (each adds its rank-r correction)
        self.adaln_shared = nn.Linear(width, 6 * width)
        # 4. transformer blocks 1..L (odd: SW, even: STW)
        self.blocks = nn.ModuleList([
            WALTBlock(width, num_heads, mlp_ratio, adaln_lora_rank, text_dim is not None)
            for _ in range(depth)])
        # 5. output head: AdaLN-modulated LayerNorm -> linear to v (z * p * p per patch)
        self.norm_out = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.final_mod = nn.Linear(width, 2 * width)
        self.head = nn.Linear(width, latent_channels * patch_size ** 2)
        self._init_weights(zero_init_gates)

    def _init_weights(self, zero_init_gates: bool) -> None:
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        for p in (self.pos_spatial, self.pos_temporal):
            nn.init.normal_(p, std=0.02)
        if self.null_text is not None:
            nn.init.normal_(self.null_text, std=0.02)
        for m in self.t_embedder.mlp:
            if isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, std=0.02)
        for block in self.blocks:
            nn.init.normal_(block.lora_up.weight, std=0.02)
        if zero_init_gates:  # adaLN-Zero: modulation and head start at zero (DiT)
            zeros = [self.adaln_shared.weight, self.adaln_shared.bias, self.final_mod.weight,
                     self.final_mod.bias, self.head.weight, self.head.bias]
            zeros += [block.lora_up.weight for block in self.blocks]
            for p in zeros:
                nn.init.zeros_(p)

    # ---- construction and configuration ----------------------------------------------------

    @classmethod
    def from_size(cls, name: str, variant: str = "video", latent_shape: Sequence[int] | None = None,
                  **overrides) -> "WALT":
        """A WALT of the named size (`walt.sizes.WALT_SIZES`); `latent_shape` and any constructor
        kwarg may be overridden."""
        if latent_shape is not None:
            overrides["latent_shape"] = tuple(latent_shape)
        return cls(**walt_kwargs(name, variant=variant, **overrides))

    @property
    def variant(self) -> str:
        return self._variant

    @variant.setter
    def variant(self, value: str) -> None:
        if value not in VARIANTS:
            raise ValueError(f"unknown WALT variant '{value}'; use 'video' (V-WALT) or 'image' (I-WALT)")
        self._variant = value

    @property
    def config(self) -> dict:
        """Constructor kwargs (JSON-able) that rebuild this model, with the current variant."""
        return {**self._kwargs, "variant": self._variant}

    @property
    def block_kinds(self) -> list[str]:
        """'sw' or 'stw' for blocks 1..L (index 0 of the list is block 1)."""
        return ["sw" if i % 2 == 1 else "stw" for i in range(1, self.num_blocks + 1)]

    def _window(self, block: int, grid: tuple[int, int, int]) -> tuple[int, int, int]:
        if block % 2 == 1 or self._variant == "image":
            return spatial_window(grid)
        return clip_window(self.stw_window, grid)

    # ---- the forward pass, top-down --------------------------------------------------------

    def _embed(self, z_t: Tensor, self_cond: Tensor | None,
               independent_frames: Tensor | None) -> Tensor:
        """Block 0: (b, z, t, h, w) -> tokens (b, t, h/p, w/p, d)."""
        dtype = self.patch_embed.weight.dtype
        if self.self_condition:
            if self_cond is None:
                self_cond = torch.zeros_like(z_t)
            z_t = torch.cat([z_t, self_cond.to(z_t.dtype)], dim=1)
        elif self_cond is not None:
            raise ValueError("self_cond given to a WALT built with self_condition=False")
        p = self.patch_size
        x = self.patch_embed(rearrange(z_t.to(dtype), "b z t (h p1) (w p2) -> b t h w (p1 p2 z)",
                                       p1=p, p2=p))
        b, t, h, w, _ = x.shape
        if t > self.pos_temporal.shape[0]:
            raise ValueError(f"{t} latent frames but temporal position embeddings for "
                             f"{self.pos_temporal.shape[0]}; build with a longer latent_shape")
        spatial = self.pos_spatial
        if spatial.shape[:2] != (h, w):  # another resolution: interpolate the table (WALT App. A)
            spatial = F.interpolate(rearrange(spatial, "h w d -> 1 d h w"), size=(h, w),
                                    mode="bicubic", align_corners=False)
            spatial = rearrange(spatial, "1 d h w -> h w d")
        temporal = self.pos_temporal[:t].view(1, t, 1, 1, -1)
        if independent_frames is not None:  # stacks of images all take frame 0's embedding
            frame0 = self.pos_temporal[:1].view(1, 1, 1, 1, -1)
            temporal = torch.where(independent_frames.view(b, 1, 1, 1, 1), frame0, temporal)
        return x + spatial + temporal

    def _condition(self, timesteps: Tensor | int, text: Tensor | None, b: int, device):
        """-> (SiLU(cond) (b, d), shared AdaLN projection (b, 6d), text tokens (b, s, d) | None)."""
        timesteps = torch.as_tensor(timesteps, dtype=torch.long, device=device)
        if timesteps.ndim == 0:
            timesteps = timesteps.expand(b)
        cond = F.silu(self.t_embedder(timesteps))
        tokens = None
        if self.text_proj is not None:
            if text is None:
                text = self.null_text.expand(b, -1, -1)
            tokens = self.text_proj(text.to(self.text_proj.weight.dtype))
        elif text is not None:
            raise ValueError("text given to a WALT built without text cross-attention "
                             "(text_dim=None)")
        return cond, self.adaln_shared(cond), tokens

    def _run(self, z_t: Tensor, timesteps, text, self_cond, independent_frames,
             capture: frozenset[int], stop: int) -> tuple[Tensor, dict[int, Tensor], Tensor]:
        """Block 0, then blocks 1..stop -> (stream, captured blocks, SiLU(cond) (b, d))."""
        if z_t.ndim != 5 or z_t.shape[1] != self.latent_channels:
            raise ValueError(f"z_t must be (b, {self.latent_channels}, t, h, w); got {tuple(z_t.shape)}")
        if independent_frames is not None:
            independent_frames = torch.as_tensor(independent_frames, dtype=torch.bool,
                                                 device=z_t.device).reshape(-1)
        x = self._embed(z_t, self_cond, independent_frames)
        captured = {0: x} if 0 in capture else {}
        b, t, h, w, _ = x.shape
        grid = (t, h, w)
        cond, shared_mod, tokens = self._condition(timesteps, text, b, x.device)
        # WALT's identity mask in STW blocks: V-WALT on single frames, or flagged image stacks.
        stw_identity = (t == 1) if independent_frames is None else (
            torch.ones_like(independent_frames) if t == 1 else independent_frames)
        for i in range(1, stop + 1):
            identity = stw_identity if (i % 2 == 0 and self._variant == "video") else False
            x = self.blocks[i - 1](x, cond, shared_mod, self._window(i, grid), identity, tokens)
            if i in capture:
                captured[i] = x
        return x, captured, cond

    def forward(self, z_t: Tensor, timesteps: Tensor | int, text: Tensor | None = None,
                self_cond: Tensor | None = None, independent_frames: Tensor | None = None) -> Tensor:
        """Predicts v.

        z_t: (b, z, t, h, w) noised normalised latents; timesteps: (b,) long in [0, 1000) or int;
        text: (b, s, text_dim) or None (the learned null text); self_cond: (b, z, t, h, w) previous
        x0 estimate or None (zeros); independent_frames: (b,) bool, True for stacks of unrelated
        images (frame-0 temporal embedding, identity mask in STW blocks).
        Returns v: (b, z, t, h, w), in the model's dtype.
        """
        x, _, cond = self._run(z_t, timesteps, text, self_cond, independent_frames, frozenset(),
                               self.num_blocks)
        shift, scale = self.final_mod(cond).chunk(2, dim=-1)
        v = self.head(_modulate(self.norm_out(x), shift, scale))
        p = self.patch_size
        return rearrange(v, "b t h w (p1 p2 z) -> b z t (h p1) (w p2)", p1=p, p2=p)

    def forward_features(self, z_t: Tensor, timesteps: Tensor | int, blocks: Sequence[int],
                         text: Tensor | None = None, self_cond: Tensor | None = None,
                         independent_frames: Tensor | None = None) -> dict[int, Tensor]:
        """Activations of `blocks` from ONE pass that stops after the deepest requested block.

        blocks: indices in [0, L]; 0 is the embedding output, l >= 1 the residual stream after
        transformer block l. Other arguments as in `forward`.
        Returns {block: (b, t, h/p, w/p, d)}.
        """
        wanted = frozenset(int(i) for i in blocks)
        if not wanted:
            raise ValueError("forward_features needs at least one block")
        if min(wanted) < 0 or max(wanted) > self.num_blocks:
            raise ValueError(f"blocks must lie in [0, {self.num_blocks}]; got {sorted(wanted)}")
        _, captured, _ = self._run(z_t, timesteps, text, self_cond, independent_frames, wanted,
                                max(wanted))
        return captured

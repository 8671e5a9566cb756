"""The pixel floor: the clip itself at the token grid, or the WALT tokenizer's latents.

A backbone that does not beat these has learned nothing the readout could not learn from the
input itself; they are a row in every study table (results/controls/).

Modes:
  'rgb'      the clip's RGB in [-1, 1], patches of p x p pixels (p = 8, the tokenizer's
             stride) as channels. Time, `time_grid`:
               'latent'  tubelets on the tokenizer's grid: token 0 holds frame 0 (repeated 4
                         times, as the causal tokenizer pads it), token k frames 4k-3..4k
                         (an image is one such tubelet);
                         channels ordered (f p1 p2 c), D = 4 * p * p * 3 (768 at p = 8);
               'frames'  t' = T, one frame per token, D = p * p * 3.
             Nothing is lost: the tokens are a rearrangement of the clip's pixels.
  'latents'  the tokenizer's normalised clean latents z0 (b, z, t, h, w) as (b, t, h, w, z):
             latent 0 covers frame 0 and latent k frames 4k-3..4k. Images (T = 1) go through
             the first-frame path alone (one latent), not tiled.
features(video uint8 (b, T, H, W, 3), t ignored, blocks (only 0 exists), seeds ignored)
  -> {0: (b, t', h', w', D) float32}. No noise: noise_level -> None.
"""

from __future__ import annotations

import hashlib
import json
from typing import Sequence

import einops
import torch
from torch import Tensor

from backbones.base import NoiseLevel, resolve_blocks

MODES = ("rgb", "latents")
TIME_GRIDS = ("latent", "frames")
LATENT_STRIDE = 4


def to_unit_range(video: Tensor) -> Tensor:
    """uint8 (b, T, H, W, 3) -> float32 (b, T, H, W, 3) in [-1, 1], with a clear error."""
    if video.ndim != 5 or video.shape[-1] != 3 or video.dtype != torch.uint8:
        raise ValueError(f"video must be uint8 (b, T, H, W, 3); got {tuple(video.shape)} {video.dtype}")
    return video.float() / 127.5 - 1.0


def rgb_tokens(video: Tensor, patch: int, time_grid: str) -> Tensor:
    """(b, T, H, W, 3) uint8 -> (b, t', H / p, W / p, D) float32 (module docstring)."""
    x = to_unit_range(video)
    if time_grid == "frames":
        return einops.rearrange(x, "b T (h p1) (w p2) c -> b T h w (p1 p2 c)", p1=patch, p2=patch)
    if (x.shape[1] - 1) % LATENT_STRIDE:
        raise ValueError(f"time_grid='latent' needs T = 1 + 4k frames; got T = {x.shape[1]}; "
                         f"use time_grid='frames'")
    # Causal padding: frame 0 fills its own 4-frame tubelet, as latent 0 covers frame 0 only.
    first = einops.repeat(x[:, :1], "b 1 H W c -> b f H W c", f=LATENT_STRIDE)
    x = torch.cat([first, x[:, 1:]], dim=1)
    return einops.rearrange(x, "b (t f) (h p1) (w p2) c -> b t h w (f p1 p2 c)",
                            f=LATENT_STRIDE, p1=patch, p2=patch)


class PixelsBackbone(torch.nn.Module):
    """The floor (module docstring).

    mode: 'rgb' | 'latents'. patch, time_grid: for 'rgb'. tokenizer_checkpoint: the
    `.safetensors` of the tokenizer ('latents'; e.g. 'checkpoints/tokenizer_small.safetensors').
    """

    family, variant, num_blocks = "pixels", "video", 0

    def __init__(self, mode: str = "rgb", *, patch: int = 8, time_grid: str = "latent",
                 tokenizer_checkpoint: str | None = None):
        super().__init__()
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}; got {mode!r}")
        if time_grid not in TIME_GRIDS:
            raise ValueError(f"time_grid must be one of {TIME_GRIDS}; got {time_grid!r}")
        self.mode, self.patch, self.time_grid = mode, patch, time_grid
        self.tokenizer, self._weights = None, None
        if mode == "latents":
            if tokenizer_checkpoint is None:
                raise ValueError("mode='latents' needs tokenizer_checkpoint (e.g. "
                                 "'checkpoints/tokenizer_small.safetensors')")
            from backbones.build import resolve_checkpoint
            from walt.checkpoint import file_fingerprint, load_tokenizer
            path = resolve_checkpoint(tokenizer_checkpoint)
            self.tokenizer = load_tokenizer(path).eval().requires_grad_(False)
            self._weights = file_fingerprint(path)
            self.feature_dim = int(self.tokenizer.config["latent_channels"])
            self.name, self.size = "tokenizer-latents", "latents"
        else:
            frames = LATENT_STRIDE if time_grid == "latent" else 1
            self.feature_dim = frames * patch * patch * 3
            self.name, self.size = "pixels", f"p{patch}-{time_grid}"

    @property
    def fingerprint(self) -> str:
        blob = json.dumps({"family": self.family, "mode": self.mode, "patch": self.patch,
                           "time_grid": self.time_grid, "weights": self._weights}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def noise_level(self, t) -> NoiseLevel | None:
        return None

    @torch.no_grad()
    def features(self, video: Tensor, t, blocks: Sequence[int],
                 seeds: Tensor | None = None) -> dict[int, Tensor]:
        blocks = resolve_blocks(blocks, self.num_blocks)
        if self.mode == "rgb":
            feats = rgb_tokens(video, self.patch, self.time_grid)
        else:
            device = next(self.tokenizer.parameters()).device
            x = einops.rearrange(to_unit_range(video.to(device)), "b T H W c -> b c T H W")
            z0 = self.tokenizer.encode(x)                                  # (b, z, t, h, w)
            feats = einops.rearrange(z0.float(), "b z t h w -> b t h w z")
        return {block: feats for block in blocks}

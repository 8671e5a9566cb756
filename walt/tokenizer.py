"""The tokenizer: a MAGVIT-v2-style causal 3-D CNN autoencoder with continuous latents (WALT).

  video (b, 3, T = 1 + 4k, H, W) in [-1, 1]
    -> encoder: causal conv_in; per level {res blocks; strided down (space; time at the later
       levels)}; mid res blocks; GN -> SiLU -> 1x1x1 conv           -> (b, z, 1 + k, H/8, W/8)
    -> per-channel normalisation by stored statistics (`latent_mean`, `latent_std`)
  and the mirrored decoder (depth-to-space upsampling, first frames dropped after each temporal
  upsample). No quantisation: WALT diffuses the continuous pre-quantisation latent (c = 8).

Simplifications against MAGVIT-v2, chosen because probing never decodes: the decoder uses plain
(per-frame) GroupNorm where MAGVIT-v2 has an adaptive GroupNorm conditioned on the latent.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from walt.causal_conv import CausalConv3d, Downsample, FrameGroupNorm, ResBlock3d, Upsample
from walt.sizes import tokenizer_kwargs


class Encoder(nn.Module):
    """(b, 3, T, H, W) -> raw latents (b, z, 1 + (T - 1) / f_t, H / f_s, W / f_s)."""

    def __init__(self, base_channels, channel_mult, num_res_blocks, latent_channels,
                 temporal_downsample):
        super().__init__()
        widths = [base_channels * m for m in channel_mult]
        # 1. stem
        self.conv_in = CausalConv3d(3, widths[0], 3)
        # 2. levels: residual blocks, then a strided downsample (all but the last level)
        self.levels = nn.ModuleList()
        ch = widths[0]
        for i, width in enumerate(widths):
            blocks = []
            for _ in range(num_res_blocks):
                blocks.append(ResBlock3d(ch, width))
                ch = width
            if i < len(widths) - 1:
                blocks.append(Downsample(ch, temporal=temporal_downsample[i]))
            self.levels.append(nn.Sequential(*blocks))
        # 3. mid blocks at the lowest resolution
        self.mid = nn.Sequential(*[ResBlock3d(ch, ch) for _ in range(num_res_blocks)])
        # 4. projection to the latent channels
        self.norm_out = FrameGroupNorm(ch)
        self.conv_out = nn.Conv3d(ch, latent_channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv_in(x)                       # 1. (b, c0, T, H, W)
        for level in self.levels:                 # 2. (b, c_i, T_i, H_i, W_i)
            x = level(x)
        x = self.mid(x)                           # 3. (b, c_last, t, h, w)
        return self.conv_out(F.silu(self.norm_out(x)))   # 4. (b, z, t, h, w)


class Decoder(nn.Module):
    """Raw latents (b, z, t, h, w) -> (b, 3, 1 + f_t (t - 1), f_s h, f_s w), causal in time."""

    def __init__(self, base_channels, channel_mult, num_res_blocks, latent_channels,
                 temporal_downsample):
        super().__init__()
        widths = [base_channels * m for m in channel_mult]
        ch = widths[-1]
        # 1. stem from the latent
        self.conv_in = CausalConv3d(latent_channels, ch, 3)
        # 2. mid blocks
        self.mid = nn.Sequential(*[ResBlock3d(ch, ch) for _ in range(num_res_blocks)])
        # 3. levels, deepest first: residual blocks, then depth-to-space upsampling
        self.levels = nn.ModuleList()
        for i in reversed(range(len(widths))):
            blocks = []
            for _ in range(num_res_blocks):
                blocks.append(ResBlock3d(ch, widths[i]))
                ch = widths[i]
            if i > 0:
                blocks.append(Upsample(ch, temporal=temporal_downsample[i - 1]))
            self.levels.append(nn.Sequential(*blocks))
        # 4. projection to RGB
        self.norm_out = FrameGroupNorm(ch)
        self.conv_out = CausalConv3d(ch, 3, 3)

    def forward(self, z: Tensor) -> Tensor:
        x = self.mid(self.conv_in(z))             # 1-2. (b, c_last, t, h, w)
        for level in self.levels:                 # 3. up to (b, c0, T, H, W)
            x = level(x)
        return self.conv_out(F.silu(self.norm_out(x)))   # 4. (b, 3, T, H, W)


class Tokenizer(nn.Module):
    """Causal 3-D CNN autoencoder with stored latent normalisation statistics.

    base_channels, channel_mult, num_res_blocks: widths and depth per level (the paper: 128,
      (1, 2, 2, 4), 4). len(channel_mult) - 1 levels downsample space by 2, so f_s = 8 for 4.
    latent_channels: z (WALT: 8).
    temporal_downsample: one flag per downsampling level; (False, True, True) defers the 4x
      temporal compression to the later levels as MAGVIT-v2 does.
    Buffers `latent_mean`, `latent_std` (z,) are part of the state dict (and the checkpoint).
    """

    def __init__(self, base_channels: int = 128, channel_mult=(1, 2, 2, 4), num_res_blocks: int = 4,
                 latent_channels: int = 8, temporal_downsample=(False, True, True)):
        super().__init__()
        channel_mult, temporal_downsample = tuple(channel_mult), tuple(temporal_downsample)
        if len(temporal_downsample) != len(channel_mult) - 1:
            raise ValueError(f"temporal_downsample needs one flag per downsampling level "
                             f"({len(channel_mult) - 1}), got {temporal_downsample}")
        self.config = dict(base_channels=base_channels, channel_mult=list(channel_mult),
                           num_res_blocks=num_res_blocks, latent_channels=latent_channels,
                           temporal_downsample=list(temporal_downsample))
        self.latent_channels = latent_channels
        self.spatial_factor = 2 ** (len(channel_mult) - 1)
        self.temporal_factor = 2 ** sum(temporal_downsample)
        self.encoder = Encoder(base_channels, channel_mult, num_res_blocks, latent_channels,
                               temporal_downsample)
        self.decoder = Decoder(base_channels, channel_mult, num_res_blocks, latent_channels,
                               temporal_downsample)
        self.register_buffer("latent_mean", torch.zeros(latent_channels))
        self.register_buffer("latent_std", torch.ones(latent_channels))

    @classmethod
    def from_size(cls, name: str, **overrides) -> "Tokenizer":
        """A tokenizer of the named size (`walt.sizes.TOKENIZER_SIZES`)."""
        return cls(**tokenizer_kwargs(name, **overrides))

    def latent_shape(self, num_frames: int, height: int, width: int) -> tuple[int, int, int]:
        """(t, h, w) of the latents of a (num_frames, height, width) video; validates the sizes."""
        ft, fs = self.temporal_factor, self.spatial_factor
        if (num_frames - 1) % ft:
            raise ValueError(f"the causal tokenizer needs 1 + {ft}k frames (1, {1 + ft}, "
                             f"{1 + 2 * ft}, ..., 17 for WALT); got {num_frames}. Trim or pad "
                             f"the clip.")
        if height % fs or width % fs:
            raise ValueError(f"frame height and width must be multiples of {fs}; got "
                             f"{height} x {width}. Resize or crop the video.")
        return 1 + (num_frames - 1) // ft, height // fs, width // fs

    def _stats(self, like: Tensor) -> tuple[Tensor, Tensor]:
        shape = (1, -1, 1, 1, 1)
        return (self.latent_mean.to(like.dtype).view(shape),
                self.latent_std.to(like.dtype).view(shape))

    def encode_raw(self, video: Tensor) -> Tensor:
        """video: (b, 3, T, H, W) in [-1, 1] -> unnormalised latents (b, z, t, h, w)."""
        if video.ndim != 5 or video.shape[1] != 3:
            raise ValueError(f"video must be (b, 3, T, H, W); got {tuple(video.shape)}")
        self.latent_shape(*video.shape[2:])
        return self.encoder(video)

    def encode(self, video: Tensor) -> Tensor:
        """video: (b, 3, T, H, W) in [-1, 1] -> normalised latents (b, z, t, h, w)."""
        z = self.encode_raw(video)
        mean, std = self._stats(z)
        return (z - mean) / std

    def encode_frames(self, video: Tensor) -> Tensor:
        """video: (b, 3, T, H, W) in [-1, 1] -> normalised latents (b, z, T, h, w), each frame
        encoded alone as an image (the causal encoder's first-frame path: 1 frame -> 1 latent
        frame), so latent frame i depends on frame i only.

        This is how I-WALT's pretraining data is tokenized (pretraining/data.py, LatentBank) and
        how I-WALT is probed by default (backbones/walt.py, video_route='frames').
        """
        if video.ndim != 5:
            raise ValueError(f"video must be (b, 3, T, H, W); got {tuple(video.shape)}")
        frames = rearrange(video, "b c T H W -> (b T) c 1 H W")
        z = self.encode(frames)                                        # ((b T), z, 1, h, w)
        return rearrange(z, "(b T) z 1 h w -> b z T h w", b=video.shape[0])

    def decode_raw(self, z: Tensor) -> Tensor:
        """Unnormalised latents (b, z, t, h, w) -> video (b, 3, T, H, W), about [-1, 1]."""
        if z.ndim != 5 or z.shape[1] != self.latent_channels:
            raise ValueError(f"latents must be (b, {self.latent_channels}, t, h, w); got "
                             f"{tuple(z.shape)}")
        return self.decoder(z)

    def decode(self, z: Tensor) -> Tensor:
        """Normalised latents (b, z, t, h, w) -> video (b, 3, T, H, W)."""
        mean, std = self._stats(z)
        return self.decode_raw(z * std + mean)

    @torch.no_grad()
    def set_latent_stats(self, mean: Tensor, std: Tensor) -> None:
        """Stores per-channel statistics of raw latents (each (z,)); std is floored at 1e-6."""
        mean = torch.as_tensor(mean, dtype=torch.float32).reshape(-1)
        std = torch.as_tensor(std, dtype=torch.float32).reshape(-1)
        if mean.numel() != self.latent_channels or std.numel() != self.latent_channels:
            raise ValueError(f"latent stats need {self.latent_channels} values each; got "
                             f"{mean.numel()} and {std.numel()}")
        self.latent_mean.copy_(mean)
        self.latent_std.copy_(std.clamp(min=1e-6))

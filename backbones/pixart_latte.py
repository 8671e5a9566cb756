"""PixArt-alpha (image DiT) and Latte (the video DiT initialised from it): one image / video pair
with shared spatial weights, probed as I-WALT / V-WALT are (paper Fig. 1).

  video uint8 (b, T, H, W, 3)
    -> SD VAE per frame, z0 = mean * 0.18215                     (b, 4, T, H/8, W/8)
    -> z_t = scheduler.add_noise(z0, eps, t)   (DDPM, epsilon; t = 999 is the noisy end)
    PixArt-alpha (image arm): the T frames are T independent images, (b T) 4 h w
      block 0 = pos_embed (2x2 patches + 2-D sin-cos position), blocks 1..L = transformer_blocks
    Latte (video arm): (b, 4, T, h, w) with T = video_length (16 for Latte-1); an image is
      tiled over T (the project's convention, paper App. D.1)
      block 0 = pos_embed (per frame, no temporal position yet); block k = the k-th
      (spatial block, temporal block) PAIR, read after the temporal block
    -> {block: (b, T, h/2, w/2, D)}  (patch size 2, D = 1152 for the released models)

Latte's block numbering, and why pairs: Latte's forward steps through `zip(transformer_blocks,
temporal_transformer_blocks)`; its spatial blocks ARE PixArt's blocks (same names, same shapes,
loaded from PixArt-alpha by the Latte release), so pair k of Latte sits at the depth of PixArt's
block k and both arms have L = 28 blocks. Block k of the two arms then differs only by the k
temporal blocks Latte interleaves -- the I-WALT / V-WALT comparison, where I-WALT is V-WALT with
its spatio-temporal windows replaced, block for block. (Numbering each sub-block would give
Latte 2L blocks with no image counterpart for the odd ones.)

Null text: T5 on "" (120 tokens, the pipelines' max length), computed once. PixArt's pipeline
passes the padding mask to cross-attention; Latte's (mask_feature=True) instead cuts the
embedding to the tokens the mask keeps -- the two are the same attention, both reproduced.
"""

from __future__ import annotations

from pathlib import Path

import torch
from einops import rearrange, repeat
from torch import Tensor, nn

from backbones.hf_common import ClipShapeError, null_text, pick_device_dtype
from backbones.latent_diffusion import (LatentDiffusionBackbone, load_scheduler, load_text_encoder,
                                        load_vae, plain_config, require_pipeline_root,
                                        size_name)

T5_MAX_LENGTH = 120   # PixArtAlphaPipeline.max_sequence_length and LattePipeline's max_length


class PixArtBackbone(LatentDiffusionBackbone):
    """PixArt-alpha as a Backbone (image arm). See the module docstring for the data path.

    transformer: PixArtTransformer2DModel; vae: AutoencoderKL; scheduler: VP scheduler;
    tokenizer, text_encoder: the pipeline's T5 (run once on "" here).
    """

    family = "pixart-latte"
    variant = "image"

    def __init__(self, root: Path, transformer, vae, scheduler, scheduler_saved: str, tokenizer,
                 text_encoder, device, dtype, vae_batch: int = 16):
        super().__init__(root, vae, scheduler, scheduler_saved, device, dtype, num_frames=None,
                         vae_batch=vae_batch, preprocessing={"frames": "independent images",
                                                             "null_text": "T5('') masked"})
        self.transformer = transformer.to(device, dtype).eval().requires_grad_(False)
        hidden, mask = null_text(tokenizer, text_encoder, T5_MAX_LENGTH, device, dtype)
        self.register_buffer("null_hidden", hidden, persistent=False)   # (1, 120, 4096)
        self.register_buffer("null_mask", mask, persistent=False)       # (1, 120)
        c = self.transformer.config
        self.feature_dim = c.num_attention_heads * c.attention_head_dim
        self.size = size_name(sum(p.numel() for p in self.transformer.parameters()))
        self.name = "PixArt-alpha"

    def blocks_of(self) -> dict[int, nn.Module]:
        return dict(enumerate([self.transformer.pos_embed, *self.transformer.transformer_blocks]))

    def _run(self, z_t: Tensor, t: Tensor) -> None:
        b, frames = z_t.shape[0], z_t.shape[2]
        images = rearrange(z_t, "b z t h w -> (b t) z h w")
        n = images.shape[0]
        H, W = images.shape[-2] * self.vae_scale, images.shape[-1] * self.vae_scale
        # the 1024 model conditions on resolution / aspect ratio in pixels, as its pipeline does
        added = {"resolution": None, "aspect_ratio": None}
        if self.transformer.use_additional_conditions:
            new = dict(device=self.device, dtype=self.dtype)
            added = {"resolution": torch.tensor([[H, W]], **new).expand(n, 2),
                     "aspect_ratio": torch.tensor([[H / W]], **new).expand(n, 1)}
        self.transformer(images, encoder_hidden_states=self.null_hidden.expand(n, -1, -1),
                         encoder_attention_mask=self.null_mask.expand(n, -1),
                         timestep=repeat(t, "b -> (b t)", t=frames), added_cond_kwargs=added,
                         return_dict=False)

    def _to_grid(self, block, h, b, frames, hw):
        p = self.transformer.config.patch_size
        return rearrange(h, "(b t) (h w) d -> b t h w d", b=b, t=frames, h=hw[0] // p,
                         w=hw[1] // p)

    def _resolution_multiple(self) -> int:
        return self.vae_scale * self.transformer.config.patch_size

    def _weights_dirs(self):
        return [self.root / d for d in ("transformer", "vae")]

    def _configs(self):
        return {"transformer": plain_config(self.transformer.config),
                "vae": plain_config(self.vae.config),
                "scheduler": plain_config(self.scheduler.config)}


class LatteBackbone(PixArtBackbone):
    """Latte as a Backbone (video arm): clips of exactly `video_length` frames (its temporal
    position embedding has that length); a single image is tiled to it."""

    variant = "video"

    def __init__(self, root: Path, transformer, vae, scheduler, scheduler_saved: str, tokenizer,
                 text_encoder, device, dtype, vae_batch: int = 16):
        super().__init__(root, transformer, vae, scheduler, scheduler_saved, tokenizer,
                         text_encoder, device, dtype, vae_batch)
        self.num_frames = self.transformer.config.video_length
        # LattePipeline(mask_feature=True): keep only the tokens the padding mask keeps
        keep = int(self.null_mask.sum())
        self.null_hidden = self.null_hidden[:, :keep]
        self._preprocessing.update(frames=f"images tiled to {self.num_frames}",
                                   null_text="T5('') cut to its mask")
        self.name = "Latte"

    def blocks_of(self) -> dict[int, nn.Module]:
        return dict(enumerate([self.transformer.pos_embed,
                               *self.transformer.temporal_transformer_blocks]))

    def _check_frames(self, frames: int) -> None:
        if frames != self.num_frames:
            raise ClipShapeError(f"Latte takes clips of exactly {self.num_frames} frames (its "
                                 f"temporal position embedding, video_length); got {frames}: "
                                 f"resample the clip to {self.num_frames} frames, or build with "
                                 f"first_frames={self.num_frames} to keep its first ones")

    def _run(self, z_t: Tensor, t: Tensor) -> None:
        b = z_t.shape[0]
        self.transformer(z_t, timestep=t, encoder_hidden_states=self.null_hidden.expand(b, -1, -1),
                         enable_temporal_attentions=True, return_dict=False)

    def _to_grid(self, block, h, b, frames, hw):
        p = self.transformer.config.patch_size
        if block == 0:                                    # per-frame patch embedding
            return super()._to_grid(block, h, b, frames, hw)
        return rearrange(h, "(b h w) t d -> b t h w d", b=b, t=frames, h=hw[0] // p, w=hw[1] // p)


def _build(cls, class_name: str, what: str, path, device, dtype, vae_batch, first_frames):
    import diffusers

    root = require_pipeline_root(path, "transformer", class_name, what)
    dev, dt = pick_device_dtype(device, dtype)
    transformer = getattr(diffusers, class_name).from_pretrained(root, subfolder="transformer",
                                                                  local_files_only=True)
    scheduler, saved = load_scheduler(root)
    tokenizer, text_encoder = load_text_encoder(root, what, dev, dt)
    backbone = cls(root, transformer, load_vae(root, what), scheduler, saved, tokenizer,
                   text_encoder, dev, dt, vae_batch)
    del text_encoder   # the null text is cached; T5-XXL (4.7B) need not stay in memory
    return backbone.use_first_frames(first_frames)


def build_pixart_alpha(path: str, device: str = "auto", dtype: str = "auto",
                       vae_batch: int = 16, first_frames: int | None = None) -> PixArtBackbone:
    """PixArt-alpha from its pipeline folder (e.g. PixArt-alpha/PixArt-XL-2-512x512: transformer/,
    vae/, scheduler/, text_encoder/, tokenizer/). device / dtype: 'auto' = cuda + bf16 or cpu +
    float32. vae_batch: frames per VAE call. first_frames: cut longer clips to their first
    frames (set it to the video arm's clip length so both arms see the same frames)."""
    return _build(PixArtBackbone, "PixArtTransformer2DModel", "PixArt-alpha", path, device, dtype,
                  vae_batch, first_frames)


def build_latte(path: str, device: str = "auto", dtype: str = "auto",
                vae_batch: int = 16, first_frames: int | None = None) -> LatteBackbone:
    """Latte from its pipeline folder (e.g. maxin-cn/Latte-1, same layout as PixArt-alpha's).
    first_frames: cut longer clips to their first frames; Latte takes exactly video_length (16)
    frames, so 17-frame task clips need first_frames=16."""
    return _build(LatteBackbone, "LatteTransformer3DModel", "Latte", path, device, dtype,
                  vae_batch, first_frames)


def latte_from_pixart(pixart, video_length: int = 16):
    """A LatteTransformer3DModel whose spatial part is `pixart`'s (a PixArtTransformer2DModel),
    as the Latte release initialised Latte-T2V: the same architecture hyper-parameters, every
    2-D tensor copied by name where name and shape match, the temporal blocks left at their
    fresh initialisation. Returns (latte, names of the copied tensors)."""
    from diffusers import LatteTransformer3DModel

    c = pixart.config
    latte = LatteTransformer3DModel(
        num_attention_heads=c.num_attention_heads, attention_head_dim=c.attention_head_dim,
        in_channels=c.in_channels, out_channels=c.out_channels, num_layers=c.num_layers,
        cross_attention_dim=c.cross_attention_dim, attention_bias=c.attention_bias,
        sample_size=c.sample_size, patch_size=c.patch_size, activation_fn=c.activation_fn,
        num_embeds_ada_norm=c.num_embeds_ada_norm, norm_type=c.norm_type,
        norm_elementwise_affine=c.norm_elementwise_affine, norm_eps=c.norm_eps,
        caption_channels=c.caption_channels, video_length=video_length)
    target = latte.state_dict()
    shared = {k: v for k, v in pixart.state_dict().items()
              if k in target and target[k].shape == v.shape}
    latte.load_state_dict(shared, strict=False)
    return latte, sorted(shared)


def spatial_weight_mismatches(pixart, latte) -> list[str]:
    """Names of Latte tensors outside its temporal blocks that are missing from PixArt or differ
    from PixArt's tensor of the same name (empty = the two arms share their spatial weights)."""
    image = pixart.state_dict()
    bad = []
    for name, tensor in latte.state_dict().items():
        if name.startswith("temporal_transformer_blocks."):
            continue
        same = (name in image and image[name].shape == tensor.shape
                and torch.equal(image[name], tensor))
        if not same:
            bad.append(name)
    return bad


__all__ = ["PixArtBackbone", "LatteBackbone", "build_pixart_alpha", "build_latte",
           "latte_from_pixart", "spatial_weight_mismatches", "T5_MAX_LENGTH"]

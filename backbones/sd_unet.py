"""Stable Diffusion 1.5's UNet (image arm) and the same UNet with an AnimateDiff motion adapter
(video arm): an image / video pair whose 2-D weights are identical, probed as I-WALT / V-WALT.

  video uint8 (b, T, H, W, 3)
    -> SD VAE per frame, z0 = mean * 0.18215                     (b, 4, T, H/8, W/8)
    -> z_t = scheduler.add_noise(z0, eps, t)   (DDPM betas 'scaled_linear'; t = 999 noisiest)
    SD 1.5 (image arm): the T frames are T independent images
    AnimateDiff (video arm): UNetMotionModel.from_unet2d(unet, MotionAdapter): the same UNet
      with a temporal transformer (motion module) after each 2-D layer; an image is tiled over
      `num_frames` (16, what the adapters were trained on)
    -> {block: (b, T, h', w', D_block)}: every block at its OWN grid and width

Blocks (the same numbers in both arms; SD 1.5 has 4 down blocks, so L = 9):
  0            conv_in                         (h, w)       320
  1..4         down_blocks[0..3] (after their downsampler)  h/2, h/4, h/8, h/8   320 640 1280 1280
  5            mid_block                       h/8          1280
  6..9         up_blocks[0..3] (after their upsampler)      h/4, h/2, h, h       1280 1280 640 320
An up block k is DIFT's `up_ft_index` k - 6 (DIFT reads up_ft_index 1 = block 7 for semantic
correspondence). Up blocks consume the down blocks' skip connections, so asking for any up block
runs the whole down path and the mid block first; the pass still stops after the deepest
requested block (no later up block, no conv_out).

Widths differ per block: `feature_dim_of(block)` gives each; `feature_dim` is the width of
`feature_block` (a builder argument, default DIFT's block 7), the block a single-block probe reads.

Null text: the pipeline's CLIP text encoder on "" padded to 77 tokens, without an attention mask
(as StableDiffusionPipeline.encode_prompt runs it when use_attention_mask is unset), computed once.
"""

from __future__ import annotations

from pathlib import Path

import torch
from einops import rearrange, repeat
from torch import Tensor, nn

from backbones.hf_common import ClipShapeError, ModelDirError, pick_device_dtype, require_model_dir
from backbones.latent_diffusion import (LatentDiffusionBackbone, load_scheduler, load_text_encoder,
                                        load_vae, plain_config, require_pipeline_root,
                                        size_name)

DIFT_UP_FT_INDEX = 1   # DIFT's default up-block for SD (semantic correspondence)


def clip_null_text(tokenizer, text_encoder, device, dtype) -> Tensor:
    """CLIP on "" as StableDiffusionPipeline.encode_prompt runs it: padded to the tokenizer's
    model_max_length (77), mask passed only if the encoder's config asks for one. (1, 77, d)."""
    # a tokenizer saved without model_max_length reports a huge sentinel: the encoder's
    # position table is the real limit (77 for SD 1.5)
    length = min(tokenizer.model_max_length, text_encoder.config.max_position_embeddings)
    tokens = tokenizer([""], padding="max_length", max_length=length, truncation=True,
                       return_tensors="pt")
    use_mask = getattr(text_encoder.config, "use_attention_mask", False)
    with torch.no_grad():
        mask = tokens.attention_mask.to(device) if use_mask else None
        hidden = text_encoder(tokens.input_ids.to(device), attention_mask=mask)[0]
    return hidden.to(dtype)


class SDUNetBackbone(LatentDiffusionBackbone):
    """A UNet2DConditionModel (variant 'image') or a UNetMotionModel (variant 'video') as a
    Backbone. See the module docstring for the data path and the block numbers.

    unet: the model; vae, scheduler: the SD pipeline's; null_hidden: (1, 77, d) CLIP('').
    num_frames: clip length the video arm tiles single images to. feature_block: the block
    whose width `feature_dim` reports (None = DIFT's default up block).
    """

    family = "sd15-animatediff"

    def __init__(self, root: Path, unet, vae, scheduler, scheduler_saved: str, null_hidden: Tensor,
                 device, dtype, variant: str, num_frames: int | None = None, vae_batch: int = 16,
                 feature_block: int | None = None, adapter_dir: Path | None = None):
        self.variant = variant
        frames = "independent images" if variant == "image" else f"images tiled to {num_frames}"
        super().__init__(root, vae, scheduler, scheduler_saved, device, dtype,
                         num_frames=num_frames, vae_batch=vae_batch,
                         preprocessing={"frames": frames, "null_text": "CLIP('') unmasked"})
        self.unet = unet.to(device, dtype).eval().requires_grad_(False)
        self.register_buffer("null_hidden", null_hidden, persistent=False)
        self.adapter_dir = adapter_dir
        widths = list(self.unet.config.block_out_channels)
        n_down = len(self.unet.down_blocks)
        mid = [widths[-1]] if self.unet.mid_block is not None else []
        self._dims = [widths[0], *widths, *mid, *reversed(widths)]   # conv_in, down, mid, up
        self.first_up_block = n_down + 1 + (self.unet.mid_block is not None)
        self.feature_block = (self.first_up_block + DIFT_UP_FT_INDEX if feature_block is None
                              else self.resolve_blocks(feature_block)[0])
        self.size = size_name(sum(p.numel() for p in self.unet.parameters()))
        self.name = "SD1.5-UNet" if variant == "image" else "AnimateDiff"

    # ----------------------------------------------------------------- blocks
    def blocks_of(self) -> dict[int, nn.Module]:
        u = self.unet
        mid = [u.mid_block] if u.mid_block is not None else []
        return dict(enumerate([u.conv_in, *u.down_blocks, *mid, *u.up_blocks]))

    def feature_dim_of(self, block: int) -> int:
        """Channel width D of `block` (they differ: 320 .. 1280 for SD 1.5)."""
        return self._dims[self.resolve_blocks(block)[0]]

    @property
    def feature_dim(self) -> int:
        return self._dims[self.feature_block]

    # ----------------------------------------------------------------- forward
    def _check_frames(self, frames: int) -> None:
        longest = self.unet.config.motion_max_seq_length
        if frames > longest:
            raise ClipShapeError(f"AnimateDiff's motion modules take at most {longest} frames "
                                 f"(motion_max_seq_length); got {frames}: use {self.num_frames} "
                                 f"(what the adapter was trained on) or at most {longest}")

    def _run(self, z_t: Tensor, t: Tensor) -> None:
        b, frames = z_t.shape[0], z_t.shape[2]
        text = repeat(self.null_hidden, "1 n d -> (b t) n d", b=b, t=frames)
        if self.variant == "image":
            self.unet(rearrange(z_t, "b z t h w -> (b t) z h w"), repeat(t, "b -> (b t)", t=frames),
                      encoder_hidden_states=text, return_dict=False)
        else:   # the pipeline repeats the prompt per frame; the UNet repeats the time embedding
            self.unet(z_t, t, encoder_hidden_states=text, return_dict=False)

    def _to_grid(self, block, h, b, frames, hw):
        return rearrange(h, "(b t) d h w -> b t h w d", b=b, t=frames)

    def _resolution_multiple(self) -> int:
        # every down-sampling must halve an even size, or the up path pads / crops its skips
        return self.vae_scale * 2 ** (len(self.unet.down_blocks) - 1)

    def _weights_dirs(self):
        dirs = [self.root / d for d in ("unet", "vae")]
        return dirs + ([self.adapter_dir] if self.adapter_dir is not None else [])

    def _configs(self):
        return {"unet": plain_config(self.unet.config), "vae": plain_config(self.vae.config),
                "scheduler": plain_config(self.scheduler.config)}


def _load_sd(path, device, dtype):
    import diffusers

    root = require_pipeline_root(path, "unet", "UNet2DConditionModel", "Stable Diffusion")
    dev, dt = pick_device_dtype(device, dtype)
    unet = diffusers.UNet2DConditionModel.from_pretrained(root, subfolder="unet",
                                                          local_files_only=True)
    scheduler, saved = load_scheduler(root)
    tokenizer, text_encoder = load_text_encoder(root, "Stable Diffusion", dev, dt)
    null_hidden = clip_null_text(tokenizer, text_encoder, dev, dt)
    return root, unet, load_vae(root, "Stable Diffusion"), scheduler, saved, null_hidden, dev, dt


def build_sd15(path: str, device: str = "auto", dtype: str = "auto", vae_batch: int = 16,
               feature_block: int | None = None, first_frames: int | None = None) -> SDUNetBackbone:
    """Stable Diffusion 1.5's UNet from its pipeline folder (e.g.
    stable-diffusion-v1-5/stable-diffusion-v1-5: unet/, vae/, scheduler/, text_encoder/,
    tokenizer/). feature_block: the block whose width `feature_dim` reports. first_frames: cut
    longer clips to their first frames (None: all)."""
    root, unet, vae, sched, saved, null, dev, dt = _load_sd(path, device, dtype)
    return SDUNetBackbone(root, unet, vae, sched, saved, null, dev, dt, variant="image",
                          vae_batch=vae_batch, feature_block=feature_block
                          ).use_first_frames(first_frames)


def build_animatediff(path: str, motion_adapter_path: str, device: str = "auto",
                      dtype: str = "auto", num_frames: int = 16, vae_batch: int = 16,
                      feature_block: int | None = None,
                      first_frames: int | None = None) -> SDUNetBackbone:
    """The SD 1.5 UNet of `path` with the AnimateDiff MotionAdapter of `motion_adapter_path`
    (e.g. guoyww/animatediff-motion-adapter-v1-5-2: config.json + weights), assembled as
    AnimateDiffPipeline does: UNetMotionModel.from_unet2d(unet, adapter).
    num_frames: the clip length single images are tiled to (16: the adapters' training length).
    first_frames: cut longer clips to their first frames (None: all)."""
    import diffusers

    adapter_dir = require_model_dir(motion_adapter_path, "MotionAdapter",
                                    "AnimateDiff motion adapter")
    root, unet, vae, sched, saved, null, dev, dt = _load_sd(path, device, dtype)
    adapter = diffusers.MotionAdapter.from_pretrained(adapter_dir, local_files_only=True)
    if len(adapter.config.block_out_channels) != len(unet.config.down_block_types):
        raise ModelDirError(f"motion adapter '{adapter_dir}' has "
                            f"{len(adapter.config.block_out_channels)} blocks, the UNet of "
                            f"'{root}' {len(unet.config.down_block_types)}: "
                            f"use an adapter made for this UNet (v1-5 adapters for SD 1.5)")
    motion = diffusers.UNetMotionModel.from_unet2d(unet, adapter)
    if num_frames > motion.config.motion_max_seq_length:
        raise ClipShapeError(f"num_frames={num_frames} exceeds the adapter's "
                             f"motion_max_seq_length={motion.config.motion_max_seq_length}")
    return SDUNetBackbone(root, motion, vae, sched, saved, null, dev, dt, variant="video",
                          num_frames=num_frames, vae_batch=vae_batch, feature_block=feature_block,
                          adapter_dir=adapter_dir).use_first_frames(first_frames)


def spatial_weight_mismatches(unet, motion_unet) -> list[str]:
    """Names of the UNet's tensors that are missing from the UNetMotionModel or differ there
    (empty = the video arm's 2-D layers are the image arm's, tensor for tensor)."""
    video = motion_unet.state_dict()
    return [name for name, tensor in unet.state_dict().items()
            if name not in video or video[name].shape != tensor.shape
            or not torch.equal(video[name].to(tensor.device, tensor.dtype), tensor)]


__all__ = ["SDUNetBackbone", "build_sd15", "build_animatediff", "clip_null_text",
           "spatial_weight_mismatches", "DIFT_UP_FT_INDEX"]

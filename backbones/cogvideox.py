"""CogVideoX (diffusers `CogVideoXTransformer3DModel`) as a Backbone.

  video uint8 (b, T, H, W, 3), T = 4k + 1 (CogVideoX 1.5: latent frames a multiple of patch_size_t)
    -> (b, 3, T, H, W) in [-1, 1] -> AutoencoderKLCogVideoX posterior mean x scaling_factor
    -> z0 (b, z=16, t=(T-1)/4+1, h=H/8, w=W/8)
    -> z_t = sqrt(abar_t) z0 + sqrt(1 - abar_t) eps   CogVideoXDDIMScheduler.add_noise
       (v-prediction, zero terminal SNR, the model's snr_shift_scale: WALT's objective family)
    -> transformer on (b, t, z, h, w) with the null text (T5 on "", 226 tokens, as the pipeline
       encodes it: no attention mask) and the pipeline's 3-D rotary embeddings (5B / 1.5)
    -> block 0 = patch embedding (+ sinusoidal positions in 2B) of the video tokens; block k = the
       video tokens after CogVideoXBlock k (the text tokens run alongside and are dropped)
    -> {block: (b, t', h', w', D)}, t' = t (1.0) or t / patch_size_t (1.5), h' = h / 2, w' = w / 2

Native noise value: the DDPM timestep index t in [0, 999]; larger t = more noise; t = 999 is pure
noise (zero terminal SNR), so log-SNR there is -inf.
"""

from __future__ import annotations

from pathlib import Path

import torch
from einops import rearrange
from torch import Tensor

from backbones.base import NoiseLevel
from backbones.hf_common import ModelDirError, pick_device_dtype, require_model_dir
from backbones.video_dit import (VideoDiT, check_frames_and_size, ddpm_noise_level,
                                 load_scheduler, pipeline_digest, require_pipeline_dir)

SCHEDULERS = ("CogVideoXDDIMScheduler", "CogVideoXDPMScheduler")
PREPROCESSING = {"input": "[-1, 1]", "text": "T5 on '' (pipeline encode_prompt, no mask)",
                 "latents": "posterior mean x scaling_factor"}


class CogVideoX(VideoDiT):
    """A CogVideoX text-to-video pipeline folder, probed at its transformer blocks."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._rope_cache: dict[tuple[int, int, int], tuple[Tensor, Tensor]] = {}

    def inner_dim(self) -> int:
        cfg = self.transformer.config
        return cfg.num_attention_heads * cfg.attention_head_dim

    @property
    def num_train_timesteps(self) -> int:
        return self.scheduler.config.num_train_timesteps

    def _vae_factors(self) -> tuple[int, int]:
        """(temporal, spatial) compression of the VAE, as the pipeline computes them."""
        return (self.vae.config.temporal_compression_ratio,
                2 ** (len(self.vae.config.block_out_channels) - 1))

    def temporal_layout(self) -> tuple[int, int]:
        return self._vae_factors()[0], self.transformer.config.patch_size_t or 1

    def check_clip(self, video: Tensor) -> None:
        ft, fs = self._vae_factors()
        pt = self.transformer.config.patch_size_t or 1
        # latent frames (T - 1) / ft + 1 must be a multiple of patch_size_t (1.5 models)
        check_frames_and_size(video, self.name, frame_step=ft * pt, frame_offset=ft * (pt - 1) + 1,
                              pixel_multiple=fs * self.transformer.config.patch_size)

    def encode(self, x: Tensor) -> Tensor:
        z = self.vae.encode(x).latent_dist.mode()           # (b, z, t, h, w)
        return z.float() * self.vae.config.scaling_factor

    def add_noise(self, z0: Tensor, eps: Tensor, t: Tensor) -> Tensor:
        return self.scheduler.add_noise(z0, eps, t.to(z0.device))

    def noise_level(self, t) -> NoiseLevel:
        return ddpm_noise_level(self.scheduler.alphas_cumprod, t)

    def rotary(self, frames: int, height: int, width: int):
        """The pipeline's 3-D rotary embedding for a latent grid (None where the model uses
        sinusoidal positions, e.g. CogVideoX-2B). frames, height, width: latent sizes."""
        cfg = self.transformer.config
        if not cfg.use_rotary_positional_embeddings:
            return None
        key = (frames, height, width)
        if key not in self._rope_cache:   # one grid per clip shape, built once like the pipeline
            self._rope_cache[key] = self._rotary(frames, height, width)
        return self._rope_cache[key]

    def _rotary(self, frames: int, height: int, width: int):
        cfg = self.transformer.config
        from diffusers.models.embeddings import get_3d_rotary_pos_embed
        from diffusers.pipelines.cogvideo.pipeline_cogvideox import get_resize_crop_region_for_grid
        p = cfg.patch_size
        grid = (height // p, width // p)
        base_h, base_w = cfg.sample_height // p, cfg.sample_width // p
        if cfg.patch_size_t is None:   # CogVideoX 1.0: positions cropped from the training grid
            crops = get_resize_crop_region_for_grid(grid, base_w, base_h)
            return get_3d_rotary_pos_embed(embed_dim=cfg.attention_head_dim, crops_coords=crops,
                                           grid_size=grid, temporal_size=frames,
                                           device=self.device)
        # CogVideoX 1.5: positions sliced from the maximal grid
        return get_3d_rotary_pos_embed(
            embed_dim=cfg.attention_head_dim, crops_coords=None, grid_size=grid,
            temporal_size=(frames + cfg.patch_size_t - 1) // cfg.patch_size_t, grid_type="slice",
            max_size=(base_h, base_w), device=self.device)

    def transformer_call(self, zt: Tensor, t: Tensor):
        b, _, frames, height, width = zt.shape
        x = rearrange(zt, "b z t h w -> b t z h w")
        text = self.text["prompt_embeds"].expand(b, -1, -1)
        rope = self.rotary(frames, height, width)
        return lambda: self.transformer(hidden_states=x, encoder_hidden_states=text, timestep=t,
                                        image_rotary_emb=rope, return_dict=False)

    def tokens_to_grid(self, tokens: Tensor, latent_shape) -> Tensor:
        _, _, frames, height, width = latent_shape
        p, pt = self.transformer.config.patch_size, self.transformer.config.patch_size_t or 1
        return rearrange(tokens, "b (t h w) d -> b t h w d", t=frames // pt, h=height // p,
                         w=width // p)


def build_cogvideox(path: str | Path, device: str = "auto", dtype: str = "auto",
                    name: str | None = None, size: str | None = None) -> CogVideoX:
    """A CogVideoX T2V pipeline folder (transformer/, vae/, scheduler/, text_encoder/,
    tokenizer/) -> CogVideoX backbone. The T5 text encoder runs once on "" and is dropped.

    device / dtype: 'auto' = cuda + bfloat16 when present, else cpu + float32.
    name / size: labels for the report (default 'cogvideox-<parameter count>').
    """
    from diffusers import AutoencoderKLCogVideoX, CogVideoXPipeline, CogVideoXTransformer3DModel
    from transformers import AutoTokenizer, T5EncoderModel

    root = require_pipeline_dir(path, "CogVideoX")
    require_model_dir(root / "transformer", "CogVideoXTransformer3DModel", "CogVideoX transformer")
    require_model_dir(root / "vae", "AutoencoderKLCogVideoX", "CogVideoX VAE")
    sched_dir = require_model_dir(root / "scheduler", SCHEDULERS, "CogVideoX scheduler",
                                  config_name="scheduler_config.json")
    dev, dt = pick_device_dtype(device, dtype)
    load = dict(torch_dtype=dt, local_files_only=True)
    transformer = CogVideoXTransformer3DModel.from_pretrained(root / "transformer", **load).to(dev)
    vae = AutoencoderKLCogVideoX.from_pretrained(root / "vae", **load).to(dev)
    if transformer.config.in_channels != vae.config.latent_channels:
        raise ModelDirError(
            f"CogVideoX: '{root}' is an image-to-video model (transformer takes "
            f"{transformer.config.in_channels} channels, the VAE gives "
            f"{vae.config.latent_channels}); probing needs a text-to-video pipeline")
    scheduler = load_scheduler(sched_dir)

    # null text exactly as the pipeline encodes a prompt (no attention mask, padded to 226)
    tokenizer = AutoTokenizer.from_pretrained(root / "tokenizer", local_files_only=True)
    text_encoder = T5EncoderModel.from_pretrained(root / "text_encoder", **load).to(dev)
    pipe = CogVideoXPipeline(tokenizer=tokenizer, text_encoder=text_encoder, vae=None,
                             transformer=None, scheduler=None)
    embeds, _ = pipe.encode_prompt("", do_classifier_free_guidance=False,
                                   max_sequence_length=transformer.config.max_text_seq_length,
                                   device=dev, dtype=dt)
    del pipe, text_encoder   # T5-XXL is ~10 GB; only its output on "" is kept
    if dev.type == "cuda":
        torch.cuda.empty_cache()
    return CogVideoX(transformer, vae, scheduler, {"prompt_embeds": embeds}, dev, dt,
                     family="cogvideox", name=name, size=size, preprocessing=PREPROCESSING,
                     weights=pipeline_digest(root))


"""Wan 2.x (diffusers `WanTransformer3DModel`) as a Backbone.

  video uint8 (b, T, H, W, 3), T = 4k + 1, H and W multiples of 16 (8x VAE x 2x2 patch)
    -> (b, 3, T, H, W) in [-1, 1] -> AutoencoderKLWan posterior mean
    -> z0 = (z - latents_mean) / latents_std per channel   (b, z=16, t=(T-1)/4+1, h=H/8, w=W/8)
    -> z_t = (1 - sigma) z0 + sigma eps   FlowMatchEulerDiscreteScheduler.scale_noise with the
       model's shift (the published folders ship UniPC with flow_shift; same sigmas)
    -> transformer on (b, z, t, h, w), timestep 1000 sigma, null text = UMT5 on "" as the pipeline
       encodes it (512 tokens: the prompt's tokens, then zeros)
    -> block 0 = the patch embedding (Conv3d 1x2x2) tokens; block k = the tokens after WanBlock k
       (text enters by cross-attention only, so every token is a video token)
    -> {block: (b, t', h', w', D)}, t' = t, h' = h / 2, w' = w / 2

Native noise value: the index t in [0, 999] into the scheduler's training table counted from the
clean end (0 = least noise, 999 = sigma 1 = pure noise); NoiseLevel.native is sigma.
Wan 2.2 A14B has two experts: `transformer/` (high noise, sigma above the boundary) and
`transformer_2/` (low noise); pick one with `transformer_subfolder`.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from einops import rearrange, repeat
from torch import Tensor

from backbones.base import NoiseLevel
from backbones.hf_common import ModelDirError, pick_device_dtype, require_model_dir
from backbones.video_dit import (FlowMatchTable, VideoDiT, check_frames_and_size,
                                 load_scheduler, pipeline_digest, require_pipeline_dir)

SCHEDULERS = ("FlowMatchEulerDiscreteScheduler", "UniPCMultistepScheduler")


class Wan(VideoDiT):
    """A Wan text-to-video pipeline folder, probed at its transformer blocks."""

    blocks_attr = "blocks"

    def __init__(self, *args, expand_timesteps: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        self.flow = FlowMatchTable(self.scheduler)
        self.num_train_timesteps = self.flow.num_train_timesteps
        # Wan 2.2 TI2V feeds one timestep per token (equal for text-to-video); do as it does
        self.expand_timesteps = expand_timesteps

    def inner_dim(self) -> int:
        cfg = self.transformer.config
        return cfg.num_attention_heads * cfg.attention_head_dim

    def temporal_layout(self) -> tuple[int, int]:
        return self.vae.config.scale_factor_temporal, self.transformer.config.patch_size[0]

    def check_clip(self, video: Tensor) -> None:
        cfg = self.vae.config
        check_frames_and_size(video, self.name, frame_step=cfg.scale_factor_temporal,
                              frame_offset=1, pixel_multiple=cfg.scale_factor_spatial
                              * self.transformer.config.patch_size[1])

    def encode(self, x: Tensor) -> Tensor:
        z = self.vae.encode(x).latent_dist.mode().float()          # (b, z, t, h, w)
        mean = torch.tensor(self.vae.config.latents_mean, device=z.device)
        std = torch.tensor(self.vae.config.latents_std, device=z.device)
        # the pipeline decodes with z * std + mean: encoding is its inverse, per channel
        return (z - rearrange(mean, "z -> z 1 1 1")) / rearrange(std, "z -> z 1 1 1")

    def add_noise(self, z0: Tensor, eps: Tensor, t: Tensor) -> Tensor:
        return self.flow.add_noise(z0, eps, t)

    def noise_level(self, t) -> NoiseLevel:
        return self.flow.noise_level(t)

    def transformer_call(self, zt: Tensor, t: Tensor):
        b, _, frames, height, width = zt.shape
        timestep = self.flow.model_timestep(t).to(zt.device)           # (b,) 1000 sigma
        if self.expand_timesteps:
            pt, ph, pw = self.transformer.config.patch_size
            tokens = (frames // pt) * (height // ph) * (width // pw)
            timestep = repeat(timestep, "b -> b n", n=tokens)
        text = self.text["prompt_embeds"].expand(b, -1, -1)
        return lambda: self.transformer(hidden_states=zt, timestep=timestep,
                                        encoder_hidden_states=text, return_dict=False)

    def tokens_to_grid(self, tokens: Tensor, latent_shape) -> Tensor:
        _, _, frames, height, width = latent_shape
        pt, ph, pw = self.transformer.config.patch_size
        return rearrange(tokens, "b (t h w) d -> b t h w d", t=frames // pt, h=height // ph,
                         w=width // pw)


def build_wan(path: str | Path, device: str = "auto", dtype: str = "auto",
              name: str | None = None, size: str | None = None, text_len: int = 512,
              transformer_subfolder: str = "transformer") -> Wan:
    """A Wan T2V pipeline folder (transformer/, vae/, scheduler/, text_encoder/, tokenizer/)
    -> Wan backbone. The UMT5 text encoder runs once on "" and is dropped.

    text_len: the padded prompt length the pipeline uses (512).
    transformer_subfolder: 'transformer' or, for Wan 2.2 A14B's low-noise expert,
      'transformer_2'.
    """
    from diffusers import AutoencoderKLWan, WanPipeline, WanTransformer3DModel
    from transformers import AutoTokenizer, UMT5EncoderModel

    root = require_pipeline_dir(path, "Wan")
    require_model_dir(root / transformer_subfolder, "WanTransformer3DModel", "Wan transformer")
    require_model_dir(root / "vae", "AutoencoderKLWan", "Wan VAE")
    sched_dir = require_model_dir(root / "scheduler", SCHEDULERS, "Wan scheduler",
                                  config_name="scheduler_config.json")
    dev, dt = pick_device_dtype(device, dtype)
    load = dict(torch_dtype=dt, local_files_only=True)
    transformer = WanTransformer3DModel.from_pretrained(root / transformer_subfolder, **load)
    transformer = transformer.to(dev)
    # the Wan VAE stays in float32, as the model's own examples load it (its encoder drifts in bf16)
    vae = AutoencoderKLWan.from_pretrained(root / "vae", torch_dtype=torch.float32,
                                           local_files_only=True).to(dev)
    if transformer.config.in_channels != vae.config.z_dim:
        raise ModelDirError(
            f"Wan: '{root}' is an image-to-video model (transformer takes "
            f"{transformer.config.in_channels} channels, the VAE gives {vae.config.z_dim}); "
            f"probing needs a text-to-video pipeline")
    index = root / "model_index.json"
    expand = index.is_file() and bool(json.loads(index.read_text()).get("expand_timesteps"))

    tokenizer = AutoTokenizer.from_pretrained(root / "tokenizer", local_files_only=True)
    text_encoder = UMT5EncoderModel.from_pretrained(root / "text_encoder", **load).to(dev)
    pipe = WanPipeline(tokenizer=tokenizer, text_encoder=text_encoder, vae=None,
                       transformer=None, scheduler=None)
    embeds, _ = pipe.encode_prompt("", do_classifier_free_guidance=False,
                                   max_sequence_length=text_len, device=dev, dtype=dt)
    del pipe, text_encoder   # UMT5-XXL is ~11 GB; only its output on "" is kept
    if dev.type == "cuda":
        torch.cuda.empty_cache()
    return Wan(transformer, vae, load_scheduler(sched_dir), {"prompt_embeds": embeds}, dev, dt,
               family="wan", name=name, size=size, expand_timesteps=expand,
               preprocessing={"input": "[-1, 1]", "latents": "(mean - latents_mean) / latents_std",
                              "text": f"UMT5 on '' (pipeline encode_prompt, {text_len} tokens)",
                              "transformer": transformer_subfolder},
               weights=pipeline_digest(root) | {"expert": transformer_subfolder})

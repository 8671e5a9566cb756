"""LTX-Video (diffusers `LTXVideoTransformer3DModel`) as a Backbone.

  video uint8 (b, T, H, W, 3), T = 8k + 1, H and W multiples of 32 (the published VAE)
    -> (b, 3, T, H, W) in [-1, 1] -> AutoencoderKLLTXVideo posterior mean
    -> z0 = (z - latents_mean) x scaling_factor / latents_std per channel (the VAE's buffers)
       (b, z=128, t=(T-1)/8+1, h=H/32, w=W/32)
    -> z_t = (1 - sigma) z0 + sigma eps   FlowMatchEulerDiscreteScheduler.scale_noise
    -> packed tokens (b, t h w, z) as the pipeline packs them (patch 1 x 1 x 1 in the published
       models), transformer with timestep 1000 sigma, the null text (T5 on "", 128 tokens, with
       its attention mask), and the pipeline's rope coordinates: latent (t, h, w) with
       rope_interpolation_scale (8 / frame_rate, 32, 32)
    -> block 0 = proj_in of the packed latents; block k = the tokens after block k (text enters by
       cross-attention only)
    -> {block: (b, t', h', w', D)}

Native noise value: the index t in [0, 999] into the scheduler's training table counted from the
clean end (0 = least noise, 999 = sigma 1); NoiseLevel.native is sigma. The published scheduler
shifts sigmas per resolution only at sampling (`use_dynamic_shifting`), so its training table is
the unshifted sigma = (t + 1) / 1000.
"""

from __future__ import annotations

from pathlib import Path

import torch
from einops import rearrange
from torch import Tensor

from backbones.base import NoiseLevel
from backbones.hf_common import ModelDirError, pick_device_dtype, require_model_dir
from backbones.video_dit import (FlowMatchTable, VideoDiT, check_frames_and_size,
                                 load_scheduler, pipeline_digest, require_pipeline_dir)


class LTXVideo(VideoDiT):
    """An LTX-Video text-to-video pipeline folder, probed at its transformer blocks."""

    def __init__(self, *args, frame_rate: float = 25.0, **kwargs):
        super().__init__(*args, **kwargs)
        self.flow = FlowMatchTable(self.scheduler)
        self.num_train_timesteps = self.flow.num_train_timesteps
        self.frame_rate = frame_rate

    def inner_dim(self) -> int:
        cfg = self.transformer.config
        return cfg.num_attention_heads * cfg.attention_head_dim

    def temporal_layout(self) -> tuple[int, int]:
        return self.vae.temporal_compression_ratio, self.transformer.config.patch_size_t

    def check_clip(self, video: Tensor) -> None:
        cfg = self.transformer.config
        check_frames_and_size(video, self.name,
                              frame_step=self.vae.temporal_compression_ratio * cfg.patch_size_t,
                              frame_offset=1,
                              pixel_multiple=self.vae.spatial_compression_ratio * cfg.patch_size)

    def encode(self, x: Tensor) -> Tensor:
        z = self.vae.encode(x).latent_dist.mode().float()          # (b, z, t, h, w)
        mean = rearrange(self.vae.latents_mean.float(), "z -> z 1 1 1")
        std = rearrange(self.vae.latents_std.float(), "z -> z 1 1 1")
        # the pipeline's _normalize_latents
        return (z - mean) * self.vae.config.scaling_factor / std

    def add_noise(self, z0: Tensor, eps: Tensor, t: Tensor) -> Tensor:
        return self.flow.add_noise(z0, eps, t)

    def noise_level(self, t) -> NoiseLevel:
        return self.flow.noise_level(t)

    def _grid(self, latent_shape) -> tuple[int, int, int]:
        _, _, frames, height, width = latent_shape
        p, pt = self.transformer.config.patch_size, self.transformer.config.patch_size_t
        return frames // pt, height // p, width // p

    def transformer_call(self, zt: Tensor, t: Tensor):
        b = zt.shape[0]
        nt, nh, nw = self._grid(zt.shape)
        p, pt = self.transformer.config.patch_size, self.transformer.config.patch_size_t
        # the pipeline's _pack_latents: tokens in (t, h, w) order, patch folded into channels
        tokens = rearrange(zt, "b z (nt pt) (nh ph) (nw pw) -> b (nt nh nw) (z pt ph pw)",
                           pt=pt, ph=p, pw=p)
        scale = (self.vae.temporal_compression_ratio / self.frame_rate,
                 self.vae.spatial_compression_ratio, self.vae.spatial_compression_ratio)
        text = self.text["prompt_embeds"].expand(b, -1, -1)
        mask = self.text["prompt_attention_mask"].expand(b, -1)
        timestep = self.flow.model_timestep(t).to(zt.device)
        return lambda: self.transformer(
            hidden_states=tokens, encoder_hidden_states=text, timestep=timestep,
            encoder_attention_mask=mask, num_frames=nt, height=nh, width=nw,
            rope_interpolation_scale=scale, return_dict=False)

    def tokens_to_grid(self, tokens: Tensor, latent_shape) -> Tensor:
        nt, nh, nw = self._grid(latent_shape)
        return rearrange(tokens, "b (t h w) d -> b t h w d", t=nt, h=nh, w=nw)


def build_ltx_video(path: str | Path, device: str = "auto", dtype: str = "auto",
                    name: str | None = None, size: str | None = None, text_len: int = 128,
                    frame_rate: float = 25.0) -> LTXVideo:
    """An LTX-Video T2V pipeline folder (transformer/, vae/, scheduler/, text_encoder/,
    tokenizer/) -> LTXVideo backbone. The T5 text encoder runs once on "" and is dropped.

    text_len: the padded prompt length the pipeline uses (128).
    frame_rate: the clip's frame rate; it scales the temporal rope coordinate as the pipeline's
      `frame_rate` argument does (25 by default there).
    """
    from diffusers import AutoencoderKLLTXVideo, LTXPipeline, LTXVideoTransformer3DModel
    from transformers import AutoTokenizer, T5EncoderModel

    root = require_pipeline_dir(path, "LTX-Video")
    require_model_dir(root / "transformer", "LTXVideoTransformer3DModel", "LTX-Video transformer")
    require_model_dir(root / "vae", "AutoencoderKLLTXVideo", "LTX-Video VAE")
    sched_dir = require_model_dir(root / "scheduler", "FlowMatchEulerDiscreteScheduler",
                                  "LTX-Video scheduler", config_name="scheduler_config.json")
    dev, dt = pick_device_dtype(device, dtype)
    load = dict(torch_dtype=dt, local_files_only=True)
    transformer = LTXVideoTransformer3DModel.from_pretrained(root / "transformer", **load).to(dev)
    vae = AutoencoderKLLTXVideo.from_pretrained(root / "vae", **load).to(dev)
    cfg = transformer.config
    if cfg.in_channels != vae.config.latent_channels * cfg.patch_size ** 2 * cfg.patch_size_t:
        raise ModelDirError(f"LTX-Video: '{root}': the transformer takes {cfg.in_channels} "
                            f"channels, the VAE gives {vae.config.latent_channels}; point at a "
                            f"text-to-video pipeline whose parts belong together")

    tokenizer = AutoTokenizer.from_pretrained(root / "tokenizer", local_files_only=True)
    text_encoder = T5EncoderModel.from_pretrained(root / "text_encoder", **load).to(dev)
    pipe = LTXPipeline(tokenizer=tokenizer, text_encoder=text_encoder, vae=None,
                       transformer=None, scheduler=None)
    embeds, mask, _, _ = pipe.encode_prompt("", do_classifier_free_guidance=False,
                                            max_sequence_length=text_len, device=dev, dtype=dt)
    del pipe, text_encoder   # T5-XXL is ~10 GB; only its output on "" is kept
    if dev.type == "cuda":
        torch.cuda.empty_cache()
    return LTXVideo(transformer, vae, load_scheduler(sched_dir),
                    {"prompt_embeds": embeds, "prompt_attention_mask": mask}, dev, dt,
                    family="ltx_video", name=name, size=size, frame_rate=frame_rate,
                    preprocessing={"input": "[-1, 1]", "frame_rate": frame_rate,
                                   "latents": "(mean - latents_mean) x scale / latents_std",
                                   "text": f"T5 on '' (pipeline encode_prompt, {text_len} tokens)"},
                    weights=pipeline_digest(root))

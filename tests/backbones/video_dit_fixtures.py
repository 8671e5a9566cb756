"""Tiny random video DiT pipelines of the REAL diffusers / transformers classes, saved in the
pipeline layout (transformer/, vae/, scheduler/, text_encoder/, tokenizer/) with
`save_pretrained`, offline: the T5 tokenizer is built from a 30-piece vocabulary."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

VOCAB = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)] + [
    (c, -1.0 - 0.01 * i) for i, c in enumerate("▁abcdefghijklmnopqrstuvwxyz")]


def text_parts(encoder: str = "t5", d_model: int = 16) -> dict:
    """A T5 tokenizer (no download) and a tiny T5 or UMT5 encoder."""
    from transformers import T5Config, T5EncoderModel, T5Tokenizer, UMT5Config, UMT5EncoderModel
    cfg = dict(vocab_size=len(VOCAB), d_model=d_model, d_ff=32, d_kv=8, num_layers=1,
               num_heads=2, relative_attention_num_buckets=8)
    torch.manual_seed(1)
    model = (T5EncoderModel(T5Config(**cfg)) if encoder == "t5"
             else UMT5EncoderModel(UMT5Config(**cfg)))
    return {"tokenizer": T5Tokenizer(vocab=VOCAB, extra_ids=0), "text_encoder": model.eval()}


def make_cogvideox(root: Path, rope: bool = True, layers: int = 3,
                   patch_size_t: int | None = None) -> Path:
    """CogVideoX T2V pipeline: 3 blocks of width 32, 8x spatial / 4x temporal VAE, 8 text tokens.
    rope=True is the 5B layout (3-D rotary), False the 2B one (sinusoidal positions);
    patch_size_t=2 (with rope) the 1.5 layout (2 latent frames per token)."""
    from diffusers import (AutoencoderKLCogVideoX, CogVideoXDDIMScheduler, CogVideoXPipeline,
                           CogVideoXTransformer3DModel)
    torch.manual_seed(0)
    transformer = CogVideoXTransformer3DModel(
        num_attention_heads=2, attention_head_dim=16, in_channels=4, out_channels=4,
        time_embed_dim=8, text_embed_dim=16, num_layers=layers, sample_width=4, sample_height=4,
        sample_frames=9, patch_size=2, temporal_compression_ratio=4, max_text_seq_length=8,
        use_rotary_positional_embeddings=rope, patch_size_t=patch_size_t,
        patch_bias=patch_size_t is None)
    vae = AutoencoderKLCogVideoX(
        in_channels=3, out_channels=3, down_block_types=("CogVideoXDownBlock3D",) * 4,
        up_block_types=("CogVideoXUpBlock3D",) * 4, block_out_channels=(8, 8, 8, 8),
        latent_channels=4, layers_per_block=1, norm_num_groups=2, temporal_compression_ratio=4)
    # the published CogVideoX-2b scheduler config (v-prediction, zero terminal SNR, SNR shift 3)
    scheduler = CogVideoXDDIMScheduler(
        beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, clip_sample=False,
        prediction_type="v_prediction", rescale_betas_zero_snr=True, set_alpha_to_one=True,
        snr_shift_scale=3.0, timestep_spacing="trailing")
    CogVideoXPipeline(transformer=transformer, vae=vae, scheduler=scheduler,
                      **text_parts("t5")).save_pretrained(root)
    return root


def make_wan(root: Path, layers: int = 3, scheduler: str = "unipc") -> Path:
    """Wan 2.1 T2V pipeline: 3 blocks of width 32, patch (1, 2, 2), tiny AutoencoderKLWan
    (8x spatial, 4x temporal, z = 4 with its latents_mean / latents_std), UMT5 text."""
    from diffusers import (AutoencoderKLWan, FlowMatchEulerDiscreteScheduler,
                           UniPCMultistepScheduler, WanPipeline, WanTransformer3DModel)
    torch.manual_seed(0)
    transformer = WanTransformer3DModel(
        patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=16, in_channels=4,
        out_channels=4, text_dim=16, freq_dim=32, ffn_dim=32, num_layers=layers,
        cross_attn_norm=True, qk_norm="rms_norm_across_heads", rope_max_seq_len=32)
    vae = AutoencoderKLWan(base_dim=8, z_dim=4, dim_mult=[1, 1, 1, 1], num_res_blocks=1,
                           temperal_downsample=[False, True, True],
                           latents_mean=[0.1, -0.2, 0.3, 0.0], latents_std=[1.5, 2.0, 0.5, 1.0])
    if scheduler == "unipc":   # the published Wan2.1 folders ship UniPC with flow sigmas
        sched = UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True,
                                        flow_shift=3.0)
    else:
        sched = FlowMatchEulerDiscreteScheduler(shift=3.0)
    WanPipeline(transformer=transformer, vae=vae, scheduler=sched,
                **text_parts("umt5")).save_pretrained(root)
    return root


def make_ltx(root: Path, layers: int = 3) -> Path:
    """LTX-Video T2V pipeline: 3 blocks of width 32, patch 1, tiny AutoencoderKLLTXVideo (16x
    spatial, 4x temporal, z = 8, non-trivial latents_mean / latents_std), T5 text."""
    from diffusers import (AutoencoderKLLTXVideo, FlowMatchEulerDiscreteScheduler, LTXPipeline,
                           LTXVideoTransformer3DModel)
    torch.manual_seed(0)
    transformer = LTXVideoTransformer3DModel(
        in_channels=8, out_channels=8, patch_size=1, patch_size_t=1, num_attention_heads=2,
        attention_head_dim=16, cross_attention_dim=32, num_layers=layers, caption_channels=16)
    vae = AutoencoderKLLTXVideo(
        latent_channels=8, block_out_channels=(8, 8, 8, 8), decoder_block_out_channels=(8, 8, 8, 8),
        layers_per_block=(1, 1, 1, 1, 1), decoder_layers_per_block=(1, 1, 1, 1, 1),
        spatio_temporal_scaling=(True, True, False, False),
        decoder_spatio_temporal_scaling=(True, True, False, False), patch_size=4)
    with torch.no_grad():
        vae.latents_mean.copy_(torch.linspace(-0.3, 0.3, 8))
        vae.latents_std.copy_(torch.linspace(0.5, 2.0, 8))
    # the published LTX-Video scheduler: shift per resolution at sampling only
    sched = FlowMatchEulerDiscreteScheduler(use_dynamic_shifting=True, base_shift=0.95,
                                            max_shift=2.05, base_image_seq_len=1024,
                                            max_image_seq_len=4096, shift_terminal=0.1)
    LTXPipeline(transformer=transformer, vae=vae, scheduler=sched,
                **text_parts("t5")).save_pretrained(root)
    return root


def uint8_clip(b: int, frames: int, height: int, width: int, seed: int = 0) -> torch.Tensor:
    """A random uint8 clip (b, T, H, W, 3)."""
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (b, frames, height, width, 3), generator=gen, dtype=torch.uint8)


def unit_range(video: torch.Tensor) -> torch.Tensor:
    """uint8 (b, T, H, W, 3) -> (b, 3, T, H, W) in [-1, 1], written out independently of the
    adapter's conversion."""
    return video.permute(0, 4, 1, 2, 3).float() / 127.5 - 1.0


def capture(blocks, k: int, into: dict):
    """A hook on the unwrapped model: block 0 = input of blocks[0], block k = output of
    blocks[k - 1] (first element where the block returns a tuple)."""
    if k == 0:
        def pre(module, args, kwargs):
            into[0] = (kwargs["hidden_states"] if "hidden_states" in kwargs else args[0]).clone()
        return blocks[0].register_forward_pre_hook(pre, with_kwargs=True)

    def post(module, args, output):
        into[k] = (output[0] if isinstance(output, tuple) else output).clone()
    return blocks[k - 1].register_forward_hook(post)


@pytest.fixture(autouse=True)
def one_thread():
    """One intra-op thread (import it into a test module to activate): the tensors are tiny and
    the machine is shared, so extra threads only contend."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)

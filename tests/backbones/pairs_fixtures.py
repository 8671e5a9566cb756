"""Tiny random pipelines of the two image / video pairs, saved in the libraries' own layout.

Every model is the REAL library class at a tiny configuration; tokenizers are built offline
from a small vocabulary (a Unigram T5 tokenizer, a BPE CLIP tokenizer with no merges), so no
test touches the hub.

  pixart/      transformer/ (PixArtTransformer2DModel), vae/, scheduler/ (DPMSolverMultistep,
               as the PixArt-alpha release ships), text_encoder/ (T5EncoderModel), tokenizer/
  latte/       the same, transformer/ = LatteTransformer3DModel built from PixArt's weights,
               scheduler/ = DDIMScheduler
  sd15/        unet/ (UNet2DConditionModel), vae/, scheduler/ (PNDMScheduler, as SD 1.5 ships),
               text_encoder/ (CLIPTextModel), tokenizer/
  motion/      a MotionAdapter (config.json + weights)
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

T5_DIM = 16
CLIP_DIM = 16
VIDEO_LENGTH = 4
LETTERS = "abcdefghijklmnopqrstuvwxyz"


def tiny_vae():
    from diffusers import AutoencoderKL
    # two levels: 2x spatial compression (the real SD VAE has four, 8x)
    return AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4,
                         block_out_channels=(8, 16), layers_per_block=1, norm_num_groups=8,
                         down_block_types=("DownEncoderBlock2D",) * 2,
                         up_block_types=("UpDecoderBlock2D",) * 2, sample_size=16)


def save_t5(root: Path) -> None:
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import T5Config, T5EncoderModel, T5TokenizerFast

    vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)] + [(c, -1.0) for c in LETTERS + "▁"]
    tok = Tokenizer(models.Unigram(vocab, unk_id=2))
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    T5TokenizerFast(tokenizer_object=tok, eos_token="</s>", pad_token="<pad>", unk_token="<unk>",
                    extra_ids=0).save_pretrained(root / "tokenizer")
    torch.manual_seed(1)
    T5EncoderModel(T5Config(vocab_size=len(vocab), d_model=T5_DIM, d_kv=4, d_ff=32, num_layers=1,
                            num_heads=2)).save_pretrained(root / "text_encoder")


def save_clip(root: Path) -> None:
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for c in LETTERS:
        vocab[c] = len(vocab)
        vocab[c + "</w>"] = len(vocab)
    (root / "tokenizer_src").mkdir(parents=True)
    (root / "tokenizer_src" / "vocab.json").write_text(json.dumps(vocab))
    (root / "tokenizer_src" / "merges.txt").write_text("#version: 0.2\n")
    CLIPTokenizer(str(root / "tokenizer_src" / "vocab.json"),
                  str(root / "tokenizer_src" / "merges.txt"),
                  model_max_length=77).save_pretrained(root / "tokenizer")
    torch.manual_seed(2)
    CLIPTextModel(CLIPTextConfig(vocab_size=len(vocab), hidden_size=CLIP_DIM, intermediate_size=32,
                                 num_hidden_layers=1, num_attention_heads=2,
                                 max_position_embeddings=77, bos_token_id=0, eos_token_id=1,
                                 pad_token_id=1)).save_pretrained(root / "text_encoder")


def tiny_pixart():
    from diffusers import PixArtTransformer2DModel
    torch.manual_seed(3)
    return PixArtTransformer2DModel(num_attention_heads=2, attention_head_dim=8, in_channels=4,
                                    out_channels=8, num_layers=3, cross_attention_dim=16,
                                    sample_size=8, patch_size=2, caption_channels=T5_DIM,
                                    norm_num_groups=4)


def save_pixart_latte(tmp: Path) -> tuple[Path, Path]:
    """Both pipelines; Latte is built from the tiny PixArt's weights (latte_from_pixart)."""
    from diffusers import DDIMScheduler, DPMSolverMultistepScheduler

    from backbones.pixart_latte import latte_from_pixart

    pixart_dir, latte_dir = tmp / "pixart", tmp / "latte"
    pixart = tiny_pixart()
    torch.manual_seed(4)
    latte, _ = latte_from_pixart(pixart, video_length=VIDEO_LENGTH)
    torch.manual_seed(5)
    vae = tiny_vae()
    for root, model, sched in ((pixart_dir, pixart, DPMSolverMultistepScheduler()),
                               (latte_dir, latte, DDIMScheduler(beta_schedule="linear"))):
        model.save_pretrained(root / "transformer")
        vae.save_pretrained(root / "vae")
        sched.save_pretrained(root / "scheduler")
        save_t5(root)
    return pixart_dir, latte_dir


def tiny_unet():
    from diffusers import UNet2DConditionModel
    torch.manual_seed(6)
    return UNet2DConditionModel(sample_size=8, in_channels=4, out_channels=4, layers_per_block=1,
                                block_out_channels=(8, 16),
                                down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                                up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
                                cross_attention_dim=CLIP_DIM, attention_head_dim=2,
                                norm_num_groups=4)


def tiny_motion_adapter():
    from diffusers import MotionAdapter
    torch.manual_seed(7)
    return MotionAdapter(block_out_channels=(8, 16), motion_layers_per_block=1,
                         motion_num_attention_heads=2, motion_norm_num_groups=4,
                         motion_max_seq_length=8)


def save_sd15_motion(tmp: Path) -> tuple[Path, Path]:
    from diffusers import PNDMScheduler

    sd_dir, motion_dir = tmp / "sd15", tmp / "motion"
    tiny_unet().save_pretrained(sd_dir / "unet")
    torch.manual_seed(8)
    tiny_vae().save_pretrained(sd_dir / "vae")
    PNDMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012,
                  skip_prk_steps=True, steps_offset=1).save_pretrained(sd_dir / "scheduler")
    save_clip(sd_dir)
    tiny_motion_adapter().save_pretrained(motion_dir)
    return sd_dir, motion_dir


def clip(b: int, frames: int, size: int = 16, seed: int = 0) -> torch.Tensor:
    """A random uint8 clip (b, T, H, W, 3)."""
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (b, frames, size, size, 3), generator=g, dtype=torch.uint8)

"""`build_backbone`: a ready WALTBackbone from a size name and optional checkpoints (plain
Python; gin registers it as `Backbone` in runners/gin_walt.py)."""

from __future__ import annotations

from pathlib import Path

import torch

from walt.backbone import WALTBackbone
from walt.checkpoint import file_fingerprint, load_tokenizer, load_walt
from walt.noise import NoiseSchedule
from walt.tokenizer import Tokenizer
from walt.transformer import WALT

REPO_ROOT = Path(__file__).resolve().parent.parent


def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint path as given, or relative to the repository root (where the shipped
    `checkpoints/` live) when it does not exist relative to the working directory."""
    p = Path(path).expanduser()
    if p.is_file() or p.is_absolute():
        return p
    if (REPO_ROOT / p).is_file():
        return REPO_ROOT / p
    raise FileNotFoundError(f"checkpoint '{path}' not found (looked in {Path.cwd()} and {REPO_ROOT})")


def build_backbone(size: str = "tiny", variant: str = "video", tokenizer: str = "tiny",
                   tokenizer_checkpoint: str | None = None, walt_checkpoint: str | None = None,
                   image_size: int = 64, num_frames: int = 17, repeat_images: bool = True,
                   schedule: str = "linear", seed: int = 0, device: str = "cpu",
                   dtype: str = "float32") -> WALTBackbone:
    """A frozen WALT backbone.

    size / tokenizer: named sizes (walt/sizes.py), used when no checkpoint is given.
    tokenizer_checkpoint / walt_checkpoint: `.safetensors` paths written by save_module; a
      checkpoint's own config wins over `size` / `tokenizer`.
    variant: 'video' (V-WALT) or 'image' (I-WALT), applied to a loaded checkpoint too.
    image_size, num_frames: input clips (num_frames = 1 + 4k); sets a random WALT's latent grid.
    schedule: 'linear' (WALT) or 'cosine'.
    seed: random init of whatever no checkpoint provides; same seed, same weights, same
      fingerprint. A random WALT gets non-zero gates (zero_init_gates=False) so its blocks are
      not identities: a meaningful random-feature baseline.
    device: 'cpu', 'cuda', 'cuda:N' or 'auto'.  dtype: 'float32' | 'bfloat16' | 'float16' for
      the modules (features are returned as float32 either way).
    """
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    weights_ids = []
    gen_state = torch.random.get_rng_state()
    try:
        torch.manual_seed(seed)
        # 1. tokenizer
        if tokenizer_checkpoint:
            path = resolve_checkpoint(tokenizer_checkpoint)
            tok = load_tokenizer(path)
            weights_ids.append(file_fingerprint(path))
        else:
            tok = Tokenizer.from_size(tokenizer)
            weights_ids.append(f"random:tokenizer:{tokenizer}:seed{seed}")
        latent_shape = tok.latent_shape(num_frames, image_size, image_size)
        # 2. transformer
        if walt_checkpoint:
            path = resolve_checkpoint(walt_checkpoint)
            model = load_walt(path, variant=variant)
            weights_ids.append(file_fingerprint(path))
        else:
            model = WALT.from_size(size, variant=variant, latent_shape=latent_shape,
                                   latent_channels=tok.latent_channels, zero_init_gates=False)
            weights_ids.append(f"random:walt:{size}:seed{seed}")
    finally:
        torch.random.set_rng_state(gen_state)
    if model.latent_channels != tok.latent_channels:
        raise ValueError(f"tokenizer makes {tok.latent_channels}-channel latents but the WALT "
                         f"expects {model.latent_channels}; pair checkpoints trained together")
    torch_dtype = getattr(torch, dtype)
    tok = tok.to(device=device, dtype=torch_dtype)
    model = model.to(device=device, dtype=torch_dtype)
    weights_ids.append(f"dtype:{dtype}")
    return WALTBackbone(tok, model, NoiseSchedule(schedule), repeat_images=repeat_images,
                        num_frames=num_frames, weights_id="|".join(weights_ids))

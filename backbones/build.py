"""`build_backbone`: a ready WALTBackbone from a size name and optional checkpoints (plain
Python; gin registers it as `Backbone` in runners/configurables.py).

Building a large random backbone (284m + the base tokenizer: ~0.6B parameters initialised on
the CPU) takes seconds, and a grid of probes in one process asks for the same backbone once per
trial; `reuse=True` hands back the backbone built last when every argument (and each
checkpoint file's size and mtime) is the same, so only the first trial pays.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from backbones.walt import WALTBackbone
from walt.checkpoint import file_fingerprint, load_tokenizer, load_walt, read_sidecar
from walt.noise import NoiseSchedule
from walt.sizes import WALT_SIZES
from walt.tokenizer import Tokenizer
from walt.transformer import WALT
from walt_probe.errors import CheckpointError, ConfigurationError

SIZE_FIELDS = ("width", "depth", "num_heads")  # what a named WALT size fixes (walt/sizes.py)

REPO_ROOT = Path(__file__).resolve().parent.parent


def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint path as given (absolute, or relative to the working directory), else relative
    to $WALT_PROBE_ROOT (a folder holding the shipped `checkpoints/`, e.g. a clone of the
    repository, for a wheel install), else relative to the repository root of this source tree."""
    p = Path(path).expanduser()
    if p.is_file() or p.is_absolute():
        return p
    roots = [Path(os.environ["WALT_PROBE_ROOT"]).expanduser()] if os.environ.get("WALT_PROBE_ROOT") else []
    roots.append(REPO_ROOT)
    for root in roots:
        if (root / p).is_file():
            return root / p
    raise CheckpointError(f"checkpoint '{path}' not found (looked in {Path.cwd()}"
                            + "".join(f", {r}" for r in roots) + "); set WALT_PROBE_ROOT to the "
                            "folder that holds checkpoints/ (e.g. a clone of the repository)")


def build_backbone(size: str | None = None, variant: str | None = None, tokenizer: str = "tiny",
                   tokenizer_checkpoint: str | None = None, walt_checkpoint: str | None = None,
                   image_size: int = 64, num_frames: int = 17, repeat_images: bool | None = None,
                   schedule: str = "linear", seed: int = 0, device: str = "cpu",
                   dtype: str = "float32", compile: bool | str = False,
                   compile_mode: str | None = None, reuse: bool = True,
                   video_route: str | None = None,
                   allow_variant_override: bool = False) -> WALTBackbone:
    """A frozen WALT backbone.

    size / tokenizer: named sizes (walt/sizes.py). Without a checkpoint they pick the random
      model (size None = 'tiny'). With walt_checkpoint the checkpoint's own config is what runs
      and what results are labelled with; a `size` whose width / depth / heads differ from it
      is refused (CheckpointError naming both), so a scaling study never files a model under
      another size. (The tokenizer checkpoint is not checked against `tokenizer`: the shipped
      tokenizer_small has the 'tiny' tokenizer's shape.)
    tokenizer_checkpoint / walt_checkpoint: `.safetensors` paths written by save_module (their
      sha256 is verified against the sidecar).
    variant: 'video' (V-WALT) or 'image' (I-WALT); None = the checkpoint's own (random: 'video').
      A variant other than the one the checkpoint was trained as is refused unless
      allow_variant_override=True (same tensors, so an I-WALT checkpoint can run as V-WALT on
      purpose; the result is then labelled with the variant that ran).
    image_size, num_frames: input clips (num_frames = 1 + 4k); sets a random WALT's latent grid.
    repeat_images: tile a single image over num_frames; None = the variant's protocol (V-WALT
      tiles, I-WALT takes the image as it is; paper App. D.1).
    video_route: 'clip' (causal video tokenizer) or 'frames' (each frame encoded alone, as
      I-WALT's pretraining data); None = the variant's pretraining route (see WALTBackbone).
    schedule: 'linear' (WALT) or 'cosine'.
    seed: random init of whatever no checkpoint provides; same seed, same weights, same
      fingerprint. A random WALT gets non-zero gates (zero_init_gates=False) so its blocks are
      not identities: a meaningful random-feature baseline.
    device: 'cpu', 'cuda', 'cuda:N' or 'auto'.  dtype: 'float32' | 'bfloat16' | 'float16' for
      the modules (features are returned as float32 either way).
    compile: False | True | 'walt' | 'tokenizer' | 'all': torch.compile the transformer forward
      used for feature capture and/or the tokenizer encode (True = both; see WALTBackbone).
      The fingerprint (the feature-cache key) does not depend on it: same weights, same
      features up to kernel numerics. compile_mode: torch.compile's mode (None = default).
    reuse: return the backbone this process built last if it was built from the same
      arguments (checkpoint files unchanged) and its fingerprint is unchanged; the backbone is
      frozen, so sharing it between probes is safe. False always builds a new one.
    """
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if size is not None and size not in WALT_SIZES:
        raise ConfigurationError(f"Backbone.size = {size!r} is not a named size; choose one of "
                                 f"{', '.join(WALT_SIZES)}")
    if variant not in (None, "video", "image"):
        raise ConfigurationError(f"Backbone.variant = {variant!r}; choose 'video' (V-WALT) or 'image' (I-WALT)")
    if walt_checkpoint:
        variant = check_walt_checkpoint(walt_checkpoint, size, variant, allow_variant_override)
    size, variant = size or "tiny", variant or "video"
    key = None
    if reuse:
        key = (size, variant, tokenizer, _file_state(tokenizer_checkpoint), _file_state(walt_checkpoint),
               image_size, num_frames, repeat_images, schedule, seed, device, dtype, compile,
               compile_mode, video_route)
        hit = _LAST_BUILT.get(key)
        if hit is not None and hit[0].fingerprint == hit[1]:
            return hit[0].to(device)
    backbone = _build(size, variant, tokenizer, tokenizer_checkpoint, walt_checkpoint, image_size,
                      num_frames, repeat_images, schedule, seed, device, dtype, compile, compile_mode,
                      video_route)
    _LAST_BUILT.clear()
    if key is not None:
        _LAST_BUILT[key] = (backbone, backbone.fingerprint)
    return backbone


_LAST_BUILT: dict = {}  # {arguments: (backbone, its fingerprint at build time)}: the last one only


def check_walt_checkpoint(path: str, size: str | None, variant: str | None,
                          allow_variant_override: bool = False) -> str:
    """The variant to run a WALT checkpoint as; CheckpointError when its sidecar's shape is not
    the configured `size`'s or (unless allowed) its trained variant is not `variant`."""
    path = resolve_checkpoint(path)
    sidecar = read_sidecar(path)
    cfg = sidecar.get("config", {})
    if sidecar.get("kind") == "walt" and size is not None:
        want = {k: WALT_SIZES[size][k] for k in SIZE_FIELDS}
        have = {k: cfg.get(k) for k in SIZE_FIELDS}
        if have != want:
            named = next((n for n, row in WALT_SIZES.items()
                          if all(row[k] == have[k] for k in SIZE_FIELDS)), None)
            raise CheckpointError(
                f"checkpoint '{path}' is {'size ' + repr(named) if named else 'an unnamed size'} "
                f"({', '.join(f'{k}={v}' for k, v in have.items())}) but the configured size is "
                f"{size!r} ({', '.join(f'{k}={v}' for k, v in want.items())}); include "
                f"backbones/{named or '<size>'}.gin (BACKBONE_SIZE = {named!r}) or pick the "
                f"checkpoint of size {size!r}")
    trained = cfg.get("variant")
    if variant is None:
        return trained
    if trained is not None and variant != trained and not allow_variant_override:
        raise CheckpointError(
            f"checkpoint '{path}' was trained as {'I-WALT' if trained == 'image' else 'V-WALT'} "
            f"(variant {trained!r}) but Backbone.variant = {variant!r}; set VARIANT = {trained!r}, "
            f"pick the other checkpoint, or bind Backbone.allow_variant_override = True to run it "
            f"as {variant!r} on purpose")
    return variant


def _file_state(path: str | None):
    """(path, size, mtime_ns) of a checkpoint, so a rewritten file is never served stale."""
    if not path:
        return None
    p = resolve_checkpoint(path)
    if not p.is_file():
        return (str(p),)  # loading it raises the CheckpointError that names it
    st = p.stat()
    return (str(p), st.st_size, st.st_mtime_ns)


def _build(size, variant, tokenizer, tokenizer_checkpoint, walt_checkpoint, image_size, num_frames,
           repeat_images, schedule, seed, device, dtype, compile, compile_mode,
           video_route) -> WALTBackbone:
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
                        num_frames=num_frames, weights_id="|".join(weights_ids),
                        compile=compile, compile_mode=compile_mode, video_route=video_route)

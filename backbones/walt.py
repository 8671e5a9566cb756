"""WALT (I-WALT / V-WALT) as a `Backbone` (backbones/base.py): family 'walt'.

  video uint8 (b, T, H, W, 3)
    -> float in [-1, 1], (b, 3, T, H, W); an image (T = 1) tiled to `num_frames` for V-WALT
    -> route 'clip':   tokenizer.encode, the causal video path  -> z0 (b, z, t, h, w), t = 1 + (T-1)/4
       route 'frames': tokenizer.encode_frames, each frame alone -> z0 (b, z, T, h, w)
    -> z_t = sqrt(abar_t) z0 + sqrt(1 - abar_t) eps, eps fixed per example seed (eval) or fresh
    -> WALT.forward_features (null text, zero self-conditioning), ONE pass up to the deepest block
       (route 'frames': every latent frame a one-frame example of its own)
    -> {block: (b, t', h, w, D)} float32, t' = t (clip) or T (frames)

The protocol follows each variant's pretraining (paper App. D.1, Sec. 3.3; pretraining/data.py):
  I-WALT  learnt on single frames, each encoded alone: an image goes in as it is (one latent
          frame, no tiling) and a video frame by frame (route 'frames'; t' = T feature frames,
          feature frame f covers clip frame f).
  V-WALT  learnt on clips: an image is tiled over `num_frames` (its features are averaged over
          time by the image task kinds), a video goes through the causal tokenizer (route
          'clip'; latent 0 covers frame 0, latent k frames 4k-3 .. 4k).
Both choices are settings (repeat_images, video_route) and part of the fingerprint; `feature_spans`
says which clip frames each feature frame covers, so per-frame heads resample time on that layout.
"""

from __future__ import annotations

import hashlib
import json
from typing import Iterable

import torch
from einops import rearrange, repeat
from torch import Tensor

from backbones.base import (NoiseLevel, causal_spans, log_snr_from_abar, resolve_blocks,
                            walt_equivalent_t)
from walt.noise import NoiseSchedule, eval_noise
from walt.sizes import WALT_SIZES
from walt.tokenizer import Tokenizer
from walt.training import uint8_to_unit
from walt.transformer import WALT


def protocol(variant: str, repeat_images: bool | None = None,
             video_route: str | None = None) -> tuple[bool, str]:
    """(repeat_images, video_route) a WALT of `variant` ('image' | 'video') runs with: the given
    settings, and for each one left None the variant's pretraining protocol (module docstring):
    I-WALT (False, 'frames'), V-WALT (True, 'clip')."""
    if repeat_images is None:
        repeat_images = variant == "video"
    if video_route is None:
        video_route = "frames" if variant == "image" else "clip"
    return bool(repeat_images), video_route


def size_name(config: dict) -> str:
    """The named size (walt/sizes.py) whose width, depth and heads `config` (WALT.config) has, or
    'd<width>-L<depth>' for a shape no named size has."""
    for name, row in WALT_SIZES.items():
        if all(config.get(k) == row[k] for k in ("width", "depth", "num_heads")):
            return name
    return f"d{config.get('width')}-L{config.get('depth')}"


class WALTBackbone(torch.nn.Module):
    """WALT as a `Backbone`.

    (Properties and `torch.no_grad` bodies delegate to plain functions and `with` blocks because
    mutmut skips decorated functions: benchmarks/results/mutation.md.)

    tokenizer, walt: the modules (frozen here: eval mode, no grad).
    schedule: the forward process (default linear, zero terminal SNR).
    repeat_images: a T = 1 input is tiled to `num_frames` frames (paper App. D.1); if False it
      is encoded alone (one latent frame; V-WALT's STW blocks then use the identity mask).
      None (default) = the variant's protocol: tile for V-WALT, not for I-WALT.
    video_route: how a clip becomes latents: 'clip' (the causal video tokenizer; latent frames
      1.. summarise 4 frames each) or 'frames' (every frame encoded alone by the first-frame
      path, as I-WALT's pretraining data is; t' = T). None (default) = the variant's
      pretraining: 'frames' for I-WALT, 'clip' for V-WALT.
    num_frames: clip length the tokenizer expects (17 -> 5 latent frames).
    weights_id: identifies the weights (e.g. checkpoint sha256s); None hashes the tensors.
    compile: False | True | 'walt' | 'tokenizer' | 'all' (True = 'all'): run the transformer's
      forward_features and/or the tokenizer's encode through torch.compile (compiled lazily on
      the first call). Batches smaller than the largest seen so far are padded up to it (every
      example is computed independently), so the last, partial batch of a split reuses the
      compiled graph instead of compiling another. Same weights, same features up to kernel
      numerics: compile is NOT part of the fingerprint, and cached features are shared with
      eager runs.
    compile_mode: torch.compile's mode (None, 'max-autotune', 'reduce-overhead' for CUDA graphs).
    """

    COMPILE_CHOICES = (False, True, "walt", "tokenizer", "all")
    VIDEO_ROUTES = ("clip", "frames")

    def __init__(self, tokenizer: Tokenizer, walt: WALT, schedule: NoiseSchedule | None = None,
                 repeat_images: bool | None = None, num_frames: int = 17,
                 weights_id: str | None = None, compile: bool | str = False,
                 compile_mode: str | None = None, video_route: str | None = None):
        super().__init__()
        self.tokenizer = tokenizer.eval().requires_grad_(False)
        self.walt = walt.eval().requires_grad_(False)
        self.schedule = schedule or NoiseSchedule()
        if video_route not in (None, *self.VIDEO_ROUTES):
            raise ValueError(f"video_route={video_route!r} is not one of {self.VIDEO_ROUTES} (or "
                             f"None for the variant's pretraining route)")
        self._repeat_images, self._video_route = repeat_images, video_route
        self.num_frames = num_frames
        self._weights_id = weights_id
        if compile not in self.COMPILE_CHOICES:
            raise ValueError(f"compile={compile!r} is not one of {self.COMPILE_CHOICES} (True "
                             f"compiles the transformer and the tokenizer)")
        parts = {False: (), True: ("walt", "tokenizer"), "all": ("walt", "tokenizer"),
                 "walt": ("walt",), "tokenizer": ("tokenizer",)}[compile]
        self.compiled_parts = frozenset(parts)
        self.compile_mode = compile_mode
        self._compiled: dict[str, object] = {}
        self._padded_batch: dict[str, int] = {}

    def _run_compiled(self, part: str, fn, first: Tensor, *args, **kwargs):
        """fn(first, *args, **kwargs) through torch.compile when `part` is compiled.

        first: the batch-leading input; tensor args/kwargs with the same leading size are padded
        with it (repeats of the last example) up to the largest batch seen, outputs sliced back.
        """
        if part not in self.compiled_parts:
            return fn(first, *args, **kwargs)
        if part not in self._compiled:
            self._compiled[part] = torch.compile(fn, mode=self.compile_mode)
        b = first.shape[0]
        target = max(b, self._padded_batch.get(part, 0))
        self._padded_batch[part] = target

        def pad(x):  # contiguous either way: a change of strides would trigger a recompile
            if isinstance(x, Tensor) and x.ndim >= 1 and x.shape[0] == b and target > b:
                return torch.cat([x, x[-1:].expand(target - b, *x.shape[1:])])
            return x.contiguous() if isinstance(x, Tensor) else x
        out = self._compiled[part](pad(first), *map(pad, args),
                                   **{k: pad(v) for k, v in kwargs.items()})
        if target == b:
            return out
        if isinstance(out, dict):
            return {k: v[:b] for k, v in out.items()}
        return out[:b]

    @property
    def feature_dim(self) -> int:
        return self.walt.width

    @property
    def num_blocks(self) -> int:
        return self.walt.num_blocks

    @property
    def name(self) -> str:
        return f"{'V' if self.walt.variant == 'video' else 'I'}-WALT-d{self.walt.width}-L{self.num_blocks}"

    family = "walt"

    @property
    def variant(self) -> str:
        """'image' (I-WALT) or 'video' (V-WALT): the transformer's own setting."""
        return self.walt.variant

    @property
    def size(self) -> str:
        """The named size (walt/sizes.py) whose width, depth and heads this transformer has,
        read from the model's config (so a loaded checkpoint reports its own size), or
        'd<width>-L<depth>' for a shape no named size has."""
        return size_name(self.walt.config)

    @property
    def repeat_images(self) -> bool:
        """Whether a single image is tiled over `num_frames` (set, or the variant's protocol)."""
        return protocol(self.walt.variant, self._repeat_images, self._video_route)[0]

    @property
    def video_route(self) -> str:
        """'clip' or 'frames' (set, or the route of the variant's pretraining data)."""
        return protocol(self.walt.variant, self._repeat_images, self._video_route)[1]

    def feature_spans(self, num_frames: int) -> Tensor:
        """(t', 2) float64 [start, stop): the frames of the encoded clip each feature frame covers.

        num_frames: T of the input clip; a tiled image (T = 1, repeat_images) is encoded as a
        `self.num_frames`-frame clip and its spans are that clip's. Route 'frames': [f, f + 1);
        route 'clip': the causal tokenizer's [0, 1), [1, 5), [5, 9), ... (temporal factor 4).
        """
        if num_frames == 1 and self.repeat_images:
            num_frames = self.num_frames
        if self.video_route == "frames":
            return causal_spans(num_frames, 1)
        return causal_spans(num_frames, self.tokenizer.temporal_factor)

    def noise_level(self, t) -> NoiseLevel:
        """t: a scalar timestep index in [0, T). Native = t; log-SNR from this backbone's
        schedule; walt_t = t (WALT is the shared axis' reference)."""
        t = int(t)
        if not 0 <= t < self.schedule.num_timesteps:
            raise ValueError(f"timestep {t} is outside [0, {self.schedule.num_timesteps})")
        log_snr = log_snr_from_abar(float(self.schedule.alphas_cumprod[t]))
        # WALT's own schedule is the shared axis; a non-default schedule maps through log-SNR.
        walt_t = (float(t) if self.schedule.config == NoiseSchedule().config
                  else walt_equivalent_t(log_snr))
        return NoiseLevel(native=float(t), log_snr=log_snr, walt_t=walt_t)

    def _hash_tensors(self) -> str:
        h = hashlib.sha256()
        for module in (self.tokenizer, self.walt):
            for key, tensor in sorted(module.state_dict().items()):
                h.update(key.encode())
                h.update(tensor.detach().float().cpu().contiguous().numpy().tobytes())
        return h.hexdigest()

    @property
    def fingerprint(self) -> str:
        """sha256 (16 hex) of weights id + tokenizer/WALT configs (variant included) + schedule +
        preprocessing. Tensor hashing happens once and is cached. Independent of `compile`
        (same weights, same features up to numerics), so compiled and eager runs share a cache."""
        return self._fingerprint()

    def _fingerprint(self) -> str:
        if self._weights_id is None:
            self._weights_id = self._hash_tensors()
        blob = json.dumps({"weights": self._weights_id, "tokenizer": self.tokenizer.config,
                           "walt": self.walt.config, "schedule": self.schedule.config,
                           "repeat_images": self.repeat_images, "num_frames": self.num_frames,
                           "video_route": self.video_route},
                          sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def resolve_blocks(self, spec) -> list[int]:
        """See module-level `resolve_blocks`."""
        return resolve_blocks(spec, self.num_blocks)

    def encode(self, video: Tensor) -> Tensor:
        """uint8 (b, T, H, W, 3) -> normalised clean latents z0 (b, z, t', h, w) float32;
        t' = 1 + (T - 1) / 4 on route 'clip', T on route 'frames' (see the module docstring)."""
        with torch.no_grad():
            return self._encode(video)

    def _encode(self, video: Tensor) -> Tensor:
        device = self.walt.pos_temporal.device
        x = uint8_to_unit(video.to(device))                             # (b, 3, T, H, W)
        if x.shape[2] == 1 and self.repeat_images:
            x = repeat(x, "b c 1 H W -> b c T H W", T=self.num_frames)
        tok_dtype = next(self.tokenizer.parameters()).dtype
        encode = self.tokenizer.encode_frames if self.video_route == "frames" else self.tokenizer.encode
        return self._run_compiled("tokenizer", encode, x.to(tok_dtype)).float()

    def features(self, video: Tensor, t, blocks: Iterable[int] | int | float,
                 seeds: Tensor | None = None) -> dict[int, Tensor]:
        """video: uint8 (b, T, H, W, 3); t: int or (b,) long in [0, 1000); blocks: see
        `resolve_blocks`; seeds: (b,) long -> fixed eval noise, None -> fresh noise.
        Returns {block: (b, t', h', w', D) float32}, all blocks from one transformer pass; t' as
        in `encode`, feature frame k covering the clip frames `feature_spans(T)[k]`.
        """
        with torch.no_grad():
            return self._features(video, t, blocks, seeds)

    def _features(self, video: Tensor, t, blocks, seeds: Tensor | None) -> dict[int, Tensor]:
        blocks = self.resolve_blocks(blocks)
        z0 = self._encode(video)                                        # (b, z, t, h, w)
        b = z0.shape[0]
        t = torch.as_tensor(t, dtype=torch.long, device=z0.device)
        t = t.expand(b) if t.ndim == 0 else t
        noise = (eval_noise(z0.shape, seeds, device=z0.device) if seeds is not None
                 else torch.randn_like(z0))
        z_t = self.schedule.add_noise(z0, noise, t)                    # (b, z, t, h, w)
        # I-WALT was trained on frames as independent images (paper Sec. 3.3), all carrying the
        # frame-0 temporal embedding; probe it the same way, or it would see embeddings of
        # latent frames 1..4 that its training never used.
        if self.video_route == "frames":
            # Every latent frame is an image of its own: run them as one-frame examples, so any
            # number of frames fits (the temporal table has 5 rows; an image needs only row 0).
            tl = z_t.shape[2]
            z_t = rearrange(z_t, "b z t h w -> (b t) z 1 h w")
            t = repeat(t, "b -> (b t)", t=tl)
        independent = (torch.ones(z_t.shape[0], dtype=torch.bool, device=z0.device)
                       if self.walt.variant == "image" else None)
        feats = self._run_compiled("walt", self.walt.forward_features,  # {l: (b, t, h, w, D)}
                                   z_t, t, blocks, independent_frames=independent)
        if self.video_route == "frames":
            feats = {k: rearrange(f, "(b t) 1 h w d -> b t h w d", b=b) for k, f in feats.items()}
        return {block: f.float() for block, f in feats.items()}

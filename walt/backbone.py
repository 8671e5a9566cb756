"""The Backbone contract (what every probed model implements) and WALT's implementation.

  video uint8 (b, T, H, W, 3)
    -> float in [-1, 1], (b, 3, T, H, W); images (T = 1) tiled to `num_frames` if asked
    -> tokenizer.encode                        -> z0 (b, z, t, h, w), normalised
    -> z_t = sqrt(abar_t) z0 + sqrt(1 - abar_t) eps, eps fixed per example seed (eval) or fresh
    -> WALT.forward_features (null text, zero self-conditioning), ONE pass up to the deepest block
    -> {block: (b, t, h, w, D)} float32
"""

from __future__ import annotations

import hashlib
import json
from typing import Iterable, Protocol, Sequence, runtime_checkable

import torch
from einops import rearrange, repeat
from torch import Tensor

from walt.noise import NoiseSchedule, eval_noise
from walt.tokenizer import Tokenizer
from walt.transformer import WALT


@runtime_checkable
class Backbone(Protocol):
    """A frozen model whose activations readouts probe.

    features(video, t, blocks, seeds=None) -> {block: (b, t', h', w', D)} from one forward pass.
      video: uint8 (b, T, H, W, 3); t: noise timestep, int or (b,) long (backbones without noise
      ignore it); blocks: indices in [0, num_blocks] (0 = embedding output); seeds: (b,) long
      per-example seeds for any randomness (fixed evaluation noise), None = fresh randomness.
    feature_dim: D.  num_blocks: L (valid blocks are 0..L).  name: short human-readable name.
    fingerprint: stable string identifying weights + config + preprocessing (feature-cache key).
    """

    feature_dim: int
    num_blocks: int
    name: str

    @property
    def fingerprint(self) -> str: ...

    def features(self, video: Tensor, t, blocks: Sequence[int],
                 seeds: Tensor | None = None) -> dict[int, Tensor]: ...


def resolve_blocks(spec, num_blocks: int) -> list[int]:
    """Block selection -> sorted unique indices in [0, num_blocks].

    spec: an int (a block index), a float in [0, 1] (a fraction of depth: round(f * L), so 0.66
    of 24 -> 16 and 1.0 -> L), a string of either ('16', '0.66'), or an iterable of those.
    """
    items = [spec] if isinstance(spec, (int, float, str)) else list(spec)
    out = set()
    for item in items:
        if isinstance(item, str):
            item = float(item) if "." in item else int(item)
        if isinstance(item, bool):
            raise ValueError(f"block spec {item!r} is a bool; give an int or a fraction")
        if isinstance(item, float):
            if not 0.0 <= item <= 1.0:
                raise ValueError(f"fractional block {item} must lie in [0, 1] (ints are indices)")
            item = round(item * num_blocks)
        item = int(item)
        if not 0 <= item <= num_blocks:
            raise ValueError(f"block {item} out of range: this backbone has blocks 0..{num_blocks}")
        out.add(item)
    if not out:
        raise ValueError("no blocks requested")
    return sorted(out)


def video_to_model_input(video: Tensor) -> Tensor:
    """uint8 (b, T, H, W, 3) -> float32 (b, 3, T, H, W) in [-1, 1]."""
    if video.ndim != 5 or video.shape[-1] != 3:
        raise ValueError(f"video must be uint8 (b, T, H, W, 3); got {tuple(video.shape)} "
                         f"{video.dtype}")
    if video.dtype != torch.uint8:
        raise ValueError(f"video must be uint8 in [0, 255]; got {video.dtype}")
    return rearrange(video, "b T H W c -> b c T H W").float() / 127.5 - 1.0


class WALTBackbone(torch.nn.Module):
    """WALT as a `Backbone`.

    tokenizer, walt: the modules (frozen here: eval mode, no grad).
    schedule: the forward process (default linear, zero terminal SNR).
    repeat_images: a T = 1 input is tiled to `num_frames` frames (paper App. D.1); if False it
      is encoded alone (one latent frame; V-WALT's STW blocks then use the identity mask).
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

    def __init__(self, tokenizer: Tokenizer, walt: WALT, schedule: NoiseSchedule | None = None,
                 repeat_images: bool = True, num_frames: int = 17, weights_id: str | None = None,
                 compile: bool | str = False, compile_mode: str | None = None):
        super().__init__()
        self.tokenizer = tokenizer.eval().requires_grad_(False)
        self.walt = walt.eval().requires_grad_(False)
        self.schedule = schedule or NoiseSchedule()
        self.repeat_images = repeat_images
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
        if self._weights_id is None:
            self._weights_id = self._hash_tensors()
        blob = json.dumps({"weights": self._weights_id, "tokenizer": self.tokenizer.config,
                           "walt": self.walt.config, "schedule": self.schedule.config,
                           "repeat_images": self.repeat_images, "num_frames": self.num_frames},
                          sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def resolve_blocks(self, spec) -> list[int]:
        """See module-level `resolve_blocks`."""
        return resolve_blocks(spec, self.num_blocks)

    @torch.no_grad()
    def encode(self, video: Tensor) -> Tensor:
        """uint8 (b, T, H, W, 3) -> normalised clean latents z0 (b, z, t, h, w) float32."""
        device = self.walt.pos_temporal.device
        x = video_to_model_input(video.to(device))
        if x.shape[2] == 1 and self.repeat_images:
            x = repeat(x, "b c 1 H W -> b c T H W", T=self.num_frames)
        tok_dtype = next(self.tokenizer.parameters()).dtype
        return self._run_compiled("tokenizer", self.tokenizer.encode, x.to(tok_dtype)).float()

    @torch.no_grad()
    def features(self, video: Tensor, t, blocks: Iterable[int] | int | float,
                 seeds: Tensor | None = None) -> dict[int, Tensor]:
        """video: uint8 (b, T, H, W, 3); t: int or (b,) long in [0, 1000); blocks: see
        `resolve_blocks`; seeds: (b,) long -> fixed eval noise, None -> fresh noise.
        Returns {block: (b, t', h', w', D) float32}, all blocks from one transformer pass.
        """
        blocks = self.resolve_blocks(blocks)
        z0 = self.encode(video)                                        # (b, z, t, h, w)
        b = z0.shape[0]
        t = torch.as_tensor(t, dtype=torch.long, device=z0.device)
        t = t.expand(b) if t.ndim == 0 else t
        noise = (eval_noise(z0.shape, seeds, device=z0.device) if seeds is not None
                 else torch.randn_like(z0))
        z_t = self.schedule.add_noise(z0, noise, t)                    # (b, z, t, h, w)
        # I-WALT was trained on frames as independent images (paper Sec. 3.3), all carrying the
        # frame-0 temporal embedding; probe it the same way, or it would see embeddings of
        # latent frames 1..4 that its training never used.
        independent = (torch.ones(b, dtype=torch.bool, device=z0.device)
                       if self.walt.variant == "image" else None)
        feats = self._run_compiled("walt", self.walt.forward_features,  # {l: (b, t, h, w, D)}
                                   z_t, t, blocks, independent_frames=independent)
        return {block: f.float() for block, f in feats.items()}

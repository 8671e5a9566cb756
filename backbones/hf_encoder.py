"""What the transformers image and video encoders (DINOv2, SigLIP, VideoMAE, V-JEPA 2) share as
probed backbones: preprocessing, the frame policy, the block loop that stops early, the token grid.
Each model's file adds only its embedding call, its layer list and its input constraints.

  video uint8 (b, T, H, W, 3)
    -> frames: an image encoder takes every frame alone (t' = T); a video encoder tiles an image
       (T = 1) over `image_frames` and, when `num_frames` is set, resamples a clip to that length
    -> resize to `resolution` (default 'model': the size the model was trained at), scale to
       [0, 1], normalise with the checkpoint's processor mean / std
       -> pixels (b*T, 3, H, W) for an image encoder, (b, T, 3, H, W) for a video encoder
    -> embedding output (block 0) -> layers 1..deepest requested (no later layer runs)
    -> {block: (b, t', h', w', D) float32}, CLS / register tokens dropped, patch grid restored

Encoders have no noise: `t` and `seeds` are ignored and `noise_level` returns None.

Why one shared module and four small files rather than one file: the four differ in exactly the
places a reader needs to check against the library (which module embeds, what a layer returns,
which resolutions and frame counts are valid, how many extra tokens lead), and those read best
one model per file; everything else is identical and lives here once.
"""

from __future__ import annotations

import abc
import json
from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F
from einops import rearrange, repeat
from torch import Tensor

from backbones.base import resolve_blocks
from backbones.hf_common import (ClipShapeError, directory_digest, fingerprint_of,
                                 pick_device_dtype, require_model_dir)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# PIL resampling codes as transformers' processor configs store them -> torch interpolate modes
_RESAMPLE = {0: "nearest", 2: "bilinear", 3: "bicubic"}
PROCESSOR_FILES = ("preprocessor_config.json", "video_preprocessor_config.json")


def processor_normalisation(model_dir: Path, mean, std, resample: str) -> tuple[tuple, tuple, str]:
    """(mean, std, resample) from the checkpoint's processor config when it ships one (the
    published checkpoints do), else the given defaults (the model family's published values)."""
    for name in PROCESSOR_FILES:
        f = model_dir / name
        if f.is_file():
            cfg = json.loads(f.read_text())
            mean = tuple(float(v) for v in cfg.get("image_mean", mean))
            std = tuple(float(v) for v in cfg.get("image_std", std))
            if "resample" in cfg:
                # other PIL filters (lanczos, box, hamming) have no torch kernel: bicubic is closest
                resample = _RESAMPLE.get(cfg["resample"], "bicubic")
            break
    return tuple(mean), tuple(std), resample


def size_name(table: dict[int, str], hidden_size: int, num_layers: int, patch: int) -> str:
    """'vitb14'-style size from the width (the published widths), else 'd{D}l{L}p{patch}'."""
    arch = table.get(hidden_size)
    return f"vit{arch}{patch}" if arch else f"d{hidden_size}l{num_layers}p{patch}"


def nearest_multiple(x: int, m: int) -> int:
    """The positive multiple of m nearest to x (ties go up)."""
    return max(m, int((x + m / 2) // m) * m)


class HFEncoderBackbone(torch.nn.Module, abc.ABC):
    """A transformers encoder as a `Backbone` (no noise). Subclasses set the class attributes
    and implement the five model-specific methods below; see the module docstring for the path.

    model: the library model (frozen here).  model_dir: its weights directory (fingerprint).
    resolution: 'model' (resize every frame to the size the model was trained at, as the
      model's processor does, but without a centre crop so every pixel keeps its place in the
      feature grid), None (take frames as given; a size the model cannot take raises
      ClipShapeError naming the nearest valid one), or an int / (H, W) to resize to.
    mean, std, resample: the processor's normalisation and resize filter.
    num_frames (video encoders): None = the clip as given (checked), or an int = resample every
      clip to that many frames by nearest-index uniform sampling over its length.
    image_frames (video encoders): how many frames an image (T = 1) is tiled to; None = the
      model's configured clip length (as the project tiles images for V-WALT).
    """

    family: str = ""
    variant: str = ""          # 'image' | 'video'
    label: str = ""            # human name used in `name`
    num_prefix_tokens: int = 0     # CLS + register tokens ahead of the patch tokens
    patch_size: int = 16           # subclasses read these three from the model's config
    tubelet_size: int = 1          # frames per token (1 for an image encoder)

    def __init__(self, model: torch.nn.Module, model_dir: str | Path, *, resolution="model",
                 mean=IMAGENET_MEAN, std=IMAGENET_STD, resample: str = "bicubic",
                 num_frames: int | None = None, image_frames: int | None = None):
        super().__init__()
        self.model = model.eval().requires_grad_(False)
        self.model_dir = Path(model_dir)
        self.mean, self.std, self.resample = tuple(mean), tuple(std), resample
        if resolution == "model":
            resolution = self.model_resolution
        elif isinstance(resolution, int):
            resolution = (resolution, resolution)
        self.resolution = None if resolution is None else tuple(int(r) for r in resolution)
        if self.resolution is not None:
            self.check_resolution(*self.resolution)      # a bad setting fails at build time
        if self.variant == "image" and (num_frames is not None or image_frames is not None):
            raise ValueError(f"{self.label} is an image encoder: it encodes every frame alone, "
                             f"so num_frames / image_frames do not apply; leave them None")
        self.num_frames = num_frames
        self.image_frames = image_frames if image_frames is not None else self.model_frames
        for n in (num_frames, self.image_frames):
            if n is not None:
                self.check_frames(n)

    # ---- model-specific (subclasses) ----------------------------------------------------------

    @property
    @abc.abstractmethod
    def model_resolution(self) -> tuple[int, int]:
        """(H, W) the model was trained at (its config)."""

    @property
    def model_frames(self) -> int | None:
        """The configured clip length of a video encoder; None for an image encoder."""
        return None

    @property
    @abc.abstractmethod
    def layers(self) -> torch.nn.ModuleList:
        """The model's blocks, in order (block i = output of layers[i - 1])."""

    @abc.abstractmethod
    def embed(self, pixels: Tensor) -> Tensor:
        """Model pixels -> embedding output tokens (B, n, D), extra tokens first."""

    @abc.abstractmethod
    def run_layer(self, layer: torch.nn.Module, hidden: Tensor) -> Tensor:
        """One block, called exactly as the library's encoder loop calls it."""

    @abc.abstractmethod
    def check_resolution(self, height: int, width: int) -> None:
        """Raise ClipShapeError (naming the nearest valid size) for a size the model cannot take."""

    def check_frames(self, frames: int) -> None:
        """Video encoders: raise ClipShapeError for a frame count the model cannot take."""

    # ---- the Backbone contract -------------------------------------------------------------

    @property
    def feature_dim(self) -> int:
        return int(self.model.config.hidden_size)

    @property
    def num_blocks(self) -> int:
        return len(self.layers)

    @property
    @abc.abstractmethod
    def size(self) -> str:
        """The published size's short name (e.g. 'vitb14'), part of the backbone's name."""

    @property
    def name(self) -> str:
        return f"{self.label}-{self.size}"

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    @property
    def preprocessing(self) -> dict:
        """Everything between the uint8 clip and the model that changes the features."""
        return {"mean": self.mean, "std": self.std, "resample": self.resample,
                "resolution": self.resolution, "num_frames": self.num_frames,
                "image_frames": self.image_frames, "dtype": str(self.dtype)}

    @property
    def fingerprint(self) -> str:
        """config + weights digest (directory_digest covers config.json and the weights) +
        preprocessing. The digest is read once per process."""
        config = json.loads((self.model_dir / "config.json").read_text())
        return fingerprint_of(model=type(self.model).__name__, config=config,
                              weights=directory_digest(self.model_dir),
                              preprocessing=self.preprocessing)

    def noise_level(self, t) -> None:
        """Encoders see clean frames: there is no noise axis."""
        return None

    def resolve_blocks(self, spec) -> list[int]:
        return resolve_blocks(spec, self.num_blocks)

    def _frames(self, x: Tensor) -> Tensor:
        """(b, T, c, H, W) -> the frames the model sees (video encoders: tile / resample)."""
        if self.variant == "image":
            return x
        frames = x.shape[1]
        if frames == 1:
            return repeat(x, "b 1 c H W -> b T c H W", T=self.image_frames)
        if self.num_frames is not None and frames != self.num_frames:
            # nearest-index uniform sampling keeps the first and last frame, so the features
            # still span the whole clip (tasks interpolate t' back to the clip's frames)
            idx = torch.linspace(0, frames - 1, self.num_frames, device=x.device).round().long()
            x = x[:, idx]
        self.check_frames(x.shape[1])
        return x

    @torch.no_grad()
    def preprocess(self, video: Tensor) -> Tensor:
        """uint8 (b, T, H, W, 3) -> the model's pixels: (b*T, 3, H', W') for an image encoder,
        (b, T', 3, H', W') for a video encoder; resized, scaled to [0, 1], normalised."""
        if video.ndim != 5 or video.shape[-1] != 3 or video.dtype != torch.uint8:
            raise ValueError(f"{self.label}: video must be uint8 (b, T, H, W, 3); got "
                             f"{tuple(video.shape)} {video.dtype}")
        b = video.shape[0]
        x = rearrange(video.to(self.device), "b T H W c -> b T c H W").float() / 255.0
        x = self._frames(x)
        height, width = x.shape[-2:]
        if self.resolution is None:
            self.check_resolution(height, width)
        elif (height, width) != self.resolution:
            flat = rearrange(x, "b T c H W -> (b T) c H W")
            flat = F.interpolate(flat, size=self.resolution, mode=self.resample,
                                 antialias=self.resample != "nearest",
                                 **({} if self.resample == "nearest" else {"align_corners": False}))
            # bicubic overshoots; the processors resize uint8 images, which saturate
            x = rearrange(flat.clamp(0.0, 1.0), "(b T) c H W -> b T c H W", b=b)
        mean = torch.tensor(self.mean, device=x.device).view(3, 1, 1)
        std = torch.tensor(self.std, device=x.device).view(3, 1, 1)
        x = ((x - mean) / std).to(self.dtype)
        return rearrange(x, "b T c H W -> (b T) c H W") if self.variant == "image" else x

    def token_grid(self, pixels: Tensor) -> tuple[int, int, int]:
        """(t', h', w') of the patch tokens for model pixels (image encoders: t' = 1 per frame)."""
        height, width = pixels.shape[-2:]
        frames = pixels.shape[1] // self.tubelet_size if self.variant == "video" else 1
        return frames, height // self.patch_size, width // self.patch_size

    @torch.no_grad()
    def features(self, video: Tensor, t=None, blocks: Sequence[int] | int | float = (0,),
                 seeds: Tensor | None = None) -> dict[int, Tensor]:
        """video: uint8 (b, T, H, W, 3); t, seeds: ignored (no noise); blocks: see
        `resolve_blocks`. Returns {block: (b, t', h', w', D) float32} from one pass that stops
        after the deepest requested block; t' = T for an image encoder (every frame alone),
        T' / tubelet_size for a video encoder (T' = image_frames for an image)."""
        blocks = self.resolve_blocks(blocks)
        b = video.shape[0]
        pixels = self.preprocess(video)                       # (b*T, 3, H, W) | (b, T, 3, H, W)
        grid = self.token_grid(pixels)
        hidden = self.embed(pixels)                           # (B, prefix + t'h'w', D)
        captured = {0: hidden} if 0 in blocks else {}
        for i, layer in enumerate(self.layers[: blocks[-1]], start=1):
            hidden = self.run_layer(layer, hidden)
            if i in blocks:
                captured[i] = hidden
        return {i: self._to_grid(h, b, grid) for i, h in captured.items()}

    def _to_grid(self, hidden: Tensor, b: int, grid: tuple[int, int, int]) -> Tensor:
        """(B, prefix + n, D) -> (b, t', h', w', D) float32, extra tokens dropped."""
        tokens = hidden[:, self.num_prefix_tokens:]
        t, h, w = grid
        if self.variant == "image":
            out = rearrange(tokens, "(b T) (h w) d -> b T h w d", b=b, h=h, w=w)
        else:
            out = rearrange(tokens, "b (t h w) d -> b t h w d", t=t, h=h, w=w)
        return out.float()


def load_encoder(model_cls, path: str | Path, expected: Sequence[str], what: str,
                 device: str = "auto", dtype: str = "auto", pick=None):
    """(model, model_dir): `model_cls.from_pretrained` on a checked local directory, frozen, on
    the chosen device (bf16 + SDPA on a GPU, float32 on a CPU). Nothing is downloaded.

    expected: model_type / architecture names the directory's config.json may carry.
    pick: config dict -> model class, for a family with several classes (model_cls = None)."""
    model_dir = require_model_dir(path, expected, what)
    if pick is not None:
        model_cls = pick(json.loads((model_dir / "config.json").read_text()))
    dev, dt = pick_device_dtype(device, dtype)
    model = model_cls.from_pretrained(model_dir, local_files_only=True, dtype=dt,
                                      attn_implementation="sdpa")
    return model.to(dev).eval().requires_grad_(False), model_dir


class BuildCache:
    """The encoder built last, handed back when a builder is called again with the same
    arguments and the same weights (a sweep builds the backbone once per trial)."""

    def __init__(self):
        self._key, self._value = None, None

    def get_or_build(self, key: tuple, build):
        if self._key != key:
            self._key, self._value = None, None      # drop the old model before loading the next
            self._value, self._key = build(), key
        return self._value


def cache_key(builder: str, path, **kwargs) -> tuple:
    """(builder, resolved path, config.json / weights mtimes, arguments)."""
    p = Path(path).expanduser().resolve()
    stamp = tuple(sorted((f.name, f.stat().st_mtime_ns) for f in p.glob("*") if f.is_file())) \
        if p.is_dir() else ()
    return (builder, str(p), stamp, tuple(sorted(kwargs.items())))


def clip_error(label: str, what: str, got, valid, fix: str) -> ClipShapeError:
    """A ClipShapeError worded the same way for every encoder."""
    return ClipShapeError(f"{label} cannot take {what} {got}: the nearest valid is {valid}; {fix}")


__all__ = ["HFEncoderBackbone", "load_encoder", "processor_normalisation", "size_name",
           "nearest_multiple", "BuildCache", "cache_key", "clip_error", "IMAGENET_MEAN",
           "IMAGENET_STD"]

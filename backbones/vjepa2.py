"""V-JEPA 2's encoder (transformers `VJEPA2Model`, predictor unused) as a probed video encoder.

  clip (T, 3, H, W): T a multiple of the tubelet size 2, H = W = config.crop_size (256 for the
  published fpc64-256 checkpoints), ImageNet mean / std
    -> block 0: VJEPA2Embeddings = tubelets of 2 x 16 x 16 (Conv3d), NO position embedding
       (positions enter inside attention) and no CLS token
    -> blocks 1..L: VJEPA2Layer = pre-norm attention with 3-D rotary embeddings (each head's
       channels split in thirds: frame, row, column positions) + MLP
    -> tokens -> (t' = T / 2, h' = H / 16, w' = W / 16)

Rotary positions let the frame count vary (any multiple of 2), but the library derives a
token's row and column from its flat index with the CONFIG grid (crop_size / patch_size), so at
any other resolution it would silently give tokens wrong positions: this adapter accepts only
crop_size (resolution='model' resizes to it). Block L is the last layer's output before the
encoder's final LayerNorm (`hidden_states[L]` of the library's forward). An image (T = 1) is
tiled over `image_frames` frames (default config.frames_per_clip, 64 for the published
checkpoints; 16 costs a quarter and is what the gin file uses).
"""

from __future__ import annotations

from pathlib import Path

from torch import Tensor

from backbones.hf_encoder import (IMAGENET_MEAN, IMAGENET_STD, BuildCache, HFEncoderBackbone,
                                  cache_key, clip_error, load_encoder, nearest_multiple,
                                  processor_normalisation, size_name)

# published V-JEPA 2 widths: ViT-L, ViT-H, ViT-g
_SIZES = {1024: "l", 1280: "h", 1408: "g"}


class VJEPA2Backbone(HFEncoderBackbone):
    """V-JEPA 2's encoder; see the module docstring for the blocks and the shape rules."""

    family = "vjepa2"
    variant = "video"
    label = "V-JEPA2"
    num_prefix_tokens = 0

    @property
    def patch_size(self) -> int:
        return int(self.model.config.patch_size)

    @property
    def tubelet_size(self) -> int:
        return int(self.model.config.tubelet_size)

    @property
    def model_resolution(self) -> tuple[int, int]:
        size = int(self.model.config.crop_size)
        return size, size

    @property
    def model_frames(self) -> int:
        return int(self.model.config.frames_per_clip)

    @property
    def layers(self):
        return self.model.encoder.layer

    @property
    def size(self) -> str:
        cfg = self.model.config
        return size_name(_SIZES, cfg.hidden_size, cfg.num_hidden_layers, self.patch_size)

    def embed(self, pixels: Tensor) -> Tensor:
        return self.model.encoder.embeddings(pixels)

    def run_layer(self, layer, hidden: Tensor) -> Tensor:
        # VJEPA2Layer returns (hidden, attention weights); None: every token, no position mask
        return layer(hidden, None)[0]

    def check_resolution(self, height: int, width: int) -> None:
        if (height, width) != self.model_resolution:
            raise clip_error("V-JEPA 2", "frames of (H, W) =", (height, width),
                             self.model_resolution,
                             "its rotary positions decode rows and columns with the config grid "
                             "(crop_size / patch_size), so no other size is placed correctly: "
                             "build with resolution='model' to resize")

    def check_frames(self, frames: int) -> None:
        tub = self.tubelet_size
        if frames < tub or frames % tub:
            valid = nearest_multiple(frames, tub)
            raise clip_error("V-JEPA 2", "clips of T =", frames, valid,
                             f"frames go in tubelets of {tub}, so T must be a multiple of {tub} "
                             f"(an odd last frame would be dropped silently): build with "
                             f"num_frames={valid} to resample every clip to that length")


_CACHE = BuildCache()


def build_vjepa2(path: str | Path, num_frames: int | None = None,
                 image_frames: int | None = None, resolution="model", device: str = "auto",
                 dtype: str = "auto", reuse: bool = True) -> VJEPA2Backbone:
    """A frozen V-JEPA 2 encoder from a local transformers directory (model_type 'vjepa2', e.g.
    a download of facebook/vjepa2-vitl-fpc64-256; classification checkpoints load too).

    num_frames: None (clips as given: a multiple of 2 frames) or a count to resample every clip
      to (nearest-index uniform sampling; 17 -> 16).
    image_frames: frames an image is tiled to; None = config.frames_per_clip.
    resolution: 'model' (resize to config.crop_size) or None (frames must already be that size).
    device / dtype: 'auto' = cuda + bfloat16 when a GPU is present, else cpu + float32.
    reuse: hand back the backbone built last from the same arguments and unchanged files.
    """
    def build():
        from transformers import VJEPA2Model
        model, model_dir = load_encoder(
            VJEPA2Model, path, ("vjepa2", "VJEPA2Model", "VJEPA2ForVideoClassification"),
            "V-JEPA 2", device, dtype)
        mean, std, resample = processor_normalisation(model_dir, IMAGENET_MEAN, IMAGENET_STD,
                                                      "bilinear")
        return VJEPA2Backbone(model, model_dir, resolution=resolution, mean=mean, std=std,
                              resample=resample, num_frames=num_frames, image_frames=image_frames)
    key = cache_key("build_vjepa2", path, num_frames=num_frames, image_frames=image_frames,
                    resolution=str(resolution), device=device, dtype=dtype)
    return _CACHE.get_or_build(key, build) if reuse else build()

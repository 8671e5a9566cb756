"""DINOv2 (transformers `Dinov2Model`, or `Dinov2WithRegistersModel`) as a probed image encoder.

  frame (3, H, W), H and W multiples of the patch size 14, ImageNet mean / std
    -> block 0: Dinov2Embeddings = [CLS, (registers), patches] + position embeddings
       (bicubically interpolated by the library when the grid differs from the trained one)
    -> blocks 1..L: Dinov2Layer (pre-norm attention + MLP, each scaled by LayerScale)
    -> CLS and register tokens dropped, patches -> (h' = H/14, w' = W/14)

Block L is the last layer's output before the model's final LayerNorm (`hidden_states[L]` of the
library's forward; `last_hidden_state` is that, normalised). Frames of a clip are encoded
independently (t' = T).
"""

from __future__ import annotations

from pathlib import Path

from torch import Tensor

from backbones.hf_encoder import (IMAGENET_MEAN, IMAGENET_STD, BuildCache, HFEncoderBackbone,
                                  cache_key, clip_error, load_encoder, nearest_multiple,
                                  processor_normalisation, size_name)

# published DINOv2 widths: ViT-S/B/L/g
_SIZES = {384: "s", 768: "b", 1024: "l", 1536: "g"}


class DINOv2Backbone(HFEncoderBackbone):
    """DINOv2 with or without registers; see the module docstring for the blocks."""

    family = "dinov2"
    variant = "image"
    label = "DINOv2"

    @property
    def patch_size(self) -> int:
        return int(self.model.config.patch_size)

    @property
    def num_prefix_tokens(self) -> int:
        return 1 + int(getattr(self.model.config, "num_register_tokens", 0))

    @property
    def model_resolution(self) -> tuple[int, int]:
        size = self.model.config.image_size
        return (size, size) if isinstance(size, int) else tuple(size)

    @property
    def layers(self):
        return self.model.encoder.layer

    @property
    def size(self) -> str:
        cfg = self.model.config
        reg = "reg" if self.num_prefix_tokens > 1 else ""
        return size_name(_SIZES, cfg.hidden_size, cfg.num_hidden_layers, self.patch_size) + reg

    def embed(self, pixels: Tensor) -> Tensor:
        return self.model.embeddings(pixels)

    def run_layer(self, layer, hidden: Tensor) -> Tensor:
        # the library passes the mask create_bidirectional_mask builds from no mask: None
        return layer(hidden, None)

    def check_resolution(self, height: int, width: int) -> None:
        p = self.patch_size
        if height % p or width % p:
            valid = (nearest_multiple(height, p), nearest_multiple(width, p))
            raise clip_error("DINOv2", f"frames of (H, W) =", (height, width), valid,
                             f"height and width must be multiples of the patch size {p}: build "
                             f"with resolution={valid} (or 'model' for "
                             f"{self.model_resolution}) to resize")


_CACHE = BuildCache()


def build_dinov2(path: str | Path, resolution="model", device: str = "auto",
                 dtype: str = "auto", reuse: bool = True) -> DINOv2Backbone:
    """A frozen DINOv2 from a local transformers directory (the one holding config.json with
    model_type 'dinov2' or 'dinov2_with_registers', e.g. a download of facebook/dinov2-base).

    resolution: 'model' (resize to config.image_size, 224 for the published checkpoints), None
      (frames as given; multiples of 14), or an int / (H, W) multiple of 14 to resize to.
    device / dtype: 'auto' = cuda + bfloat16 when a GPU is present, else cpu + float32.
    reuse: hand back the backbone built last from the same arguments and unchanged files.
    """
    def build():
        from transformers import Dinov2Model, Dinov2WithRegistersModel
        model, model_dir = load_encoder(
            None, path, ("dinov2", "dinov2_with_registers", "Dinov2Model",
                         "Dinov2WithRegistersModel"), "DINOv2", device, dtype,
            pick=lambda cfg: (Dinov2WithRegistersModel
                              if cfg.get("model_type") == "dinov2_with_registers" else Dinov2Model))
        mean, std, resample = processor_normalisation(model_dir, IMAGENET_MEAN, IMAGENET_STD,
                                                      "bicubic")
        return DINOv2Backbone(model, model_dir, resolution=resolution, mean=mean, std=std,
                              resample=resample)
    key = cache_key("build_dinov2", path, resolution=str(resolution), device=device, dtype=dtype)
    return _CACHE.get_or_build(key, build) if reuse else build()

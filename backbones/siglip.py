"""SigLIP's vision tower (transformers `SiglipVisionModel`) as a probed image encoder.

  frame (3, H, W), H and W multiples of the patch size (16 for the B/16 and L/16 checkpoints),
  normalised to [-1, 1] (mean = std = 0.5: SigLIP's own processor, not ImageNet's)
    -> block 0: SiglipVisionEmbeddings = patches + learned position embeddings (no CLS token);
       at a grid other than the trained one the library's bicubic position interpolation is used
       (`interpolate_pos_encoding=True`)
    -> blocks 1..L: SiglipEncoderLayer (pre-norm attention + MLP)
    -> patches -> (h' = H/p, w' = W/p)

Block L is the last layer's output before `post_layernorm` and the attention-pooling head
(`hidden_states[L]` of the library's forward). Frames of a clip are encoded independently
(t' = T). The directory may hold the vision tower alone or the whole SigLIP (text + vision):
`SiglipVisionModel.from_pretrained` reads the vision half of either.
"""

from __future__ import annotations

from pathlib import Path

from torch import Tensor

from backbones.hf_encoder import (BuildCache, HFEncoderBackbone, cache_key, clip_error,
                                  load_encoder, nearest_multiple, processor_normalisation,
                                  size_name)

SIGLIP_MEAN = SIGLIP_STD = (0.5, 0.5, 0.5)
# published SigLIP vision widths: B, L, So400m
_SIZES = {768: "b", 1024: "l", 1152: "so400m"}


class SigLIPBackbone(HFEncoderBackbone):
    """SigLIP's vision tower; see the module docstring for the blocks."""

    family = "siglip"
    variant = "image"
    label = "SigLIP"
    num_prefix_tokens = 0

    @property
    def patch_size(self) -> int:
        return int(self.model.config.patch_size)

    @property
    def model_resolution(self) -> tuple[int, int]:
        size = int(self.model.config.image_size)
        return size, size

    @property
    def layers(self):
        return self.model.encoder.layers

    @property
    def size(self) -> str:
        cfg = self.model.config
        return size_name(_SIZES, cfg.hidden_size, cfg.num_hidden_layers, self.patch_size)

    def interpolates_positions(self, height: int, width: int) -> bool:
        """True when the position table must be resampled (a grid other than the trained one)."""
        return (height, width) != self.model_resolution

    def embed(self, pixels: Tensor) -> Tensor:
        height, width = pixels.shape[-2:]
        return self.model.embeddings(
            pixels, interpolate_pos_encoding=self.interpolates_positions(height, width))

    def run_layer(self, layer, hidden: Tensor) -> Tensor:
        return layer(hidden, None)           # the vision tower has no attention mask

    def check_resolution(self, height: int, width: int) -> None:
        p = self.patch_size
        if height % p or width % p:
            valid = (nearest_multiple(height, p), nearest_multiple(width, p))
            raise clip_error("SigLIP", "frames of (H, W) =", (height, width), valid,
                             f"height and width must be multiples of the patch size {p}: build "
                             f"with resolution={valid} (or 'model' for "
                             f"{self.model_resolution}) to resize")


_CACHE = BuildCache()


def build_siglip(path: str | Path, resolution="model", device: str = "auto",
                 dtype: str = "auto", reuse: bool = True) -> SigLIPBackbone:
    """A frozen SigLIP vision tower from a local transformers directory (a download of e.g.
    google/siglip-base-patch16-224: model_type 'siglip', or a saved 'siglip_vision_model').

    resolution: 'model' (resize to the vision config's image_size, as SigLIP's processor does),
      None (frames as given; multiples of the patch size), or an int / (H, W) to resize to
      (a grid other than the trained one interpolates the position embeddings).
    device / dtype: 'auto' = cuda + bfloat16 when a GPU is present, else cpu + float32.
    reuse: hand back the backbone built last from the same arguments and unchanged files.
    """
    def build():
        from transformers import SiglipVisionModel
        model, model_dir = load_encoder(
            SiglipVisionModel, path, ("siglip", "siglip_vision_model", "SiglipModel",
                                      "SiglipVisionModel"), "SigLIP vision tower", device, dtype)
        mean, std, resample = processor_normalisation(model_dir, SIGLIP_MEAN, SIGLIP_STD,
                                                      "bicubic")
        return SigLIPBackbone(model, model_dir, resolution=resolution, mean=mean, std=std,
                              resample=resample)
    key = cache_key("build_siglip", path, resolution=str(resolution), device=device, dtype=dtype)
    return _CACHE.get_or_build(key, build) if reuse else build()

"""VideoMAE (transformers `VideoMAEModel`) as a probed video encoder.

  clip (T, 3, H, W): T = config.num_frames (16 for the published checkpoints) and H = W =
  config.image_size (224), ImageNet mean / std
    -> block 0: VideoMAEEmbeddings = tubelets of 2 x 16 x 16 (Conv3d) + a FIXED sinusoidal
       position table over the flattened (t h w) grid of exactly config.num_frames / 2 x
       (image_size / 16)^2 tokens (no CLS token)
    -> blocks 1..L: VideoMAELayer (pre-norm attention + MLP)
    -> tokens -> (t' = T / 2, h' = H / 16, w' = W / 16)

Frame count and resolution are fixed by that table: the library's forward fails on any other
shape, so this adapter raises a named error instead, or (num_frames=n / resolution='model')
resamples the clip to the config's shape. Block L is the last layer's output before the final
LayerNorm that non-mean-pooling checkpoints carry (`hidden_states[L]` of the library's forward).
An image (T = 1) is tiled over `image_frames` (default config.num_frames) frames.
"""

from __future__ import annotations

from pathlib import Path

from torch import Tensor

from backbones.hf_encoder import (IMAGENET_MEAN, IMAGENET_STD, BuildCache, HFEncoderBackbone,
                                  cache_key, clip_error, load_encoder, processor_normalisation,
                                  size_name)

# published VideoMAE widths: ViT-S/B/L/H
_SIZES = {384: "s", 768: "b", 1024: "l", 1280: "h"}


class VideoMAEBackbone(HFEncoderBackbone):
    """VideoMAE's encoder; see the module docstring for the blocks and the shape rules."""

    family = "videomae"
    variant = "video"
    label = "VideoMAE"
    num_prefix_tokens = 0

    @property
    def patch_size(self) -> int:
        return int(self.model.config.patch_size)

    @property
    def tubelet_size(self) -> int:
        return int(self.model.config.tubelet_size)

    @property
    def model_resolution(self) -> tuple[int, int]:
        size = self.model.config.image_size
        return (size, size) if isinstance(size, int) else tuple(size)

    @property
    def model_frames(self) -> int:
        return int(self.model.config.num_frames)

    @property
    def layers(self):
        return self.model.encoder.layer

    @property
    def size(self) -> str:
        cfg = self.model.config
        return size_name(_SIZES, cfg.hidden_size, cfg.num_hidden_layers, self.patch_size)

    def embed(self, pixels: Tensor) -> Tensor:
        return self.model.embeddings(pixels, None)      # None: no masked tubelets

    def run_layer(self, layer, hidden: Tensor) -> Tensor:
        return layer(hidden)

    def check_resolution(self, height: int, width: int) -> None:
        if (height, width) != self.model_resolution:
            raise clip_error("VideoMAE", "frames of (H, W) =", (height, width),
                             self.model_resolution,
                             "its patch embedding and fixed position table take only "
                             "config.image_size: build with resolution='model' to resize")

    def check_frames(self, frames: int) -> None:
        if frames != self.model_frames:
            raise clip_error("VideoMAE", "clips of T =", frames, self.model_frames,
                             f"its fixed sinusoidal position table covers exactly "
                             f"config.num_frames = {self.model_frames} frames (tubelet "
                             f"{self.tubelet_size}): build with num_frames={self.model_frames} "
                             f"to resample every clip uniformly to that length")


_CACHE = BuildCache()


def build_videomae(path: str | Path, num_frames: int | None = None,
                   image_frames: int | None = None, resolution="model", device: str = "auto",
                   dtype: str = "auto", reuse: bool = True) -> VideoMAEBackbone:
    """A frozen VideoMAE encoder from a local transformers directory (model_type 'videomae', e.g.
    a download of MCG-NJU/videomae-base; pretraining and classification checkpoints both load).

    num_frames: None (clips must already have config.num_frames frames) or that count (clips of
      any length are resampled to it by nearest-index uniform sampling; 17 -> 16 drops one).
    image_frames: frames an image is tiled to; None = config.num_frames (the only valid count).
    resolution: 'model' (resize to config.image_size) or None (frames must already be that size).
    device / dtype: 'auto' = cuda + bfloat16 when a GPU is present, else cpu + float32.
    reuse: hand back the backbone built last from the same arguments and unchanged files.
    """
    def build():
        from transformers import VideoMAEModel
        model, model_dir = load_encoder(
            VideoMAEModel, path, ("videomae", "VideoMAEModel", "VideoMAEForPreTraining",
                                  "VideoMAEForVideoClassification"), "VideoMAE", device, dtype)
        mean, std, resample = processor_normalisation(model_dir, IMAGENET_MEAN, IMAGENET_STD,
                                                      "bilinear")
        return VideoMAEBackbone(model, model_dir, resolution=resolution, mean=mean, std=std,
                                resample=resample, num_frames=num_frames,
                                image_frames=image_frames)
    key = cache_key("build_videomae", path, num_frames=num_frames, image_frames=image_frames,
                    resolution=str(resolution), device=device, dtype=dtype)
    return _CACHE.get_or_build(key, build) if reuse else build()

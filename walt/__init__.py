"""WALT: causal 3-D CNN tokenizer + windowed-attention latent transformer (I-WALT / V-WALT).

Axis glossary (used in every einops pattern of the project):
  b batch; c T H W pixel channels, frames, height, width; z t h w latent channels, latent
  frames, latent height, latent width; d width; n tokens; wt wh ww window extents;
  nt nh nw window counts; q tracked queries; k classes.
"""

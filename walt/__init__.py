"""WALT: causal 3-D CNN tokenizer + windowed-attention latent transformer (I-WALT / V-WALT).

Axis glossary (used in every einops pattern of the project):
  b batch; c T H W pixel channels, frames, height, width; z t h w latent channels, latent
  frames, latent height, latent width; d width; n tokens; wt wh ww window extents;
  nt nh nw window counts; q tracked queries; k classes.
"""

from walt.sizes import TOKENIZER_SIZES, WALT_SIZES  # noqa: E402
from walt.noise import NoiseSchedule, eval_noise  # noqa: E402
from walt.tokenizer import Tokenizer  # noqa: E402
from walt.transformer import WALT  # noqa: E402
from walt.checkpoint import file_fingerprint, load_tokenizer, load_walt, save_module  # noqa: E402

__all__ = ["TOKENIZER_SIZES", "WALT_SIZES", "NoiseSchedule", "eval_noise", "Tokenizer", "WALT",
           "file_fingerprint", "load_tokenizer", "load_walt", "save_module"]

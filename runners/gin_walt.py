"""Gin registrations for `walt/` (short names used in gin files and --gin bindings).

  Backbone        walt.build.build_backbone: `backbone = @Backbone()` with Backbone.size,
                  Backbone.variant, Backbone.walt_checkpoint, ... (gin/backbones/*.gin);
                  --gin.Backbone.compile=True runs feature capture through torch.compile
                  (same cache key as eager), Backbone.compile_mode picks its mode
                  ('max-autotune', 'reduce-overhead' for CUDA graphs)
  Tokenizer       walt.Tokenizer (constructor kwargs), TokenizerFromSize: Tokenizer.from_size
  WALT            walt.WALT (constructor kwargs), WALTFromSize: WALT.from_size
  NoiseSchedule   walt.NoiseSchedule
"""

import gin

from walt.build import build_backbone
from walt.noise import NoiseSchedule
from walt.tokenizer import Tokenizer
from walt.transformer import WALT

gin.external_configurable(build_backbone, "Backbone")
gin.external_configurable(Tokenizer, "Tokenizer", module="walt")
gin.external_configurable(Tokenizer.from_size, "TokenizerFromSize", module="walt")
gin.external_configurable(WALT, "WALT", module="walt")
gin.external_configurable(WALT.from_size, "WALTFromSize", module="walt")
gin.external_configurable(NoiseSchedule, "NoiseSchedule", module="walt")

# ---- controls (issue 17): the oracle and pixel-floor backbones ------------------------------
# `Probe.backbone = @OracleBackbone()` (OracleBackbone.analog = 'depth', its seed / image_size /
# num_frames = the task's) or `@PixelsBackbone()` (PixelsBackbone.mode = 'rgb' | 'latents').
# After the runners/ restructure these two lines move to runners/configurables.py unchanged.
from backbones.oracle import OracleBackbone  # noqa: E402
from backbones.pixels import PixelsBackbone  # noqa: E402

gin.external_configurable(OracleBackbone, "OracleBackbone")
gin.external_configurable(PixelsBackbone, "PixelsBackbone")

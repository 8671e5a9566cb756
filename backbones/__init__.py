"""Backbones: the `Backbone` contract (base.py) and its adapters, one file per family."""

from backbones.base import (Backbone, NoiseLevel, log_snr_from_abar, log_snr_from_sigma,
                            resolve_blocks, walt_equivalent_t)

from backbones.walt import WALTBackbone  # noqa: E402
from backbones.build import build_backbone  # noqa: E402

__all__ = ["Backbone", "NoiseLevel", "log_snr_from_abar", "log_snr_from_sigma",
           "resolve_blocks", "walt_equivalent_t", "WALTBackbone", "build_backbone"]

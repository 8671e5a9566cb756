"""Backbones: the `Backbone` contract (base.py) and its adapters, one file per family."""

from backbones.base import (Backbone, NoiseLevel, log_snr_from_abar, log_snr_from_sigma,
                            resolve_blocks, walt_equivalent_t)

__all__ = ["Backbone", "NoiseLevel", "log_snr_from_abar", "log_snr_from_sigma",
           "resolve_blocks", "walt_equivalent_t"]

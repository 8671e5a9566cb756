"""Repeats of a grid under different readout seeds (seed noise of a probe, Sec. 4 error bars).

`Run.seed` seeds the readout's initialisation and the order of its training batches; it does not
change the cached features (it is readout-only in runners/sweep.py), so repeats cost no extra
backbone pass. Noise on the latents has its own seed, `Probe.noise_seed`.
"""

from __future__ import annotations

from typing import Sequence

from walt_probe.errors import ConfigurationError


def seeds(values: Sequence[int] = (0, 1)) -> dict:
    """Grid over Run.seed."""
    from ray import tune  # imported here so registering spaces in gin stays cheap

    values = [int(v) for v in values]
    if not values or len(set(values)) != len(values):
        raise ConfigurationError(f"seeds: give distinct integer seeds, got {values!r}")
    return {"Run.seed": tune.grid_search(values)}

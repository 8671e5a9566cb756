"""Where does the knowledge sit? Extraction block x noise timestep (paper Fig. 5, heatmaps)."""

from __future__ import annotations

import numbers
from typing import Sequence

from walt_probe.errors import ConfigurationError

PAPER_TIMESTEPS = (0, 100, 200, 300, 500, 700, 900)
DEPTH_FRACTIONS = (0.0, 0.17, 0.33, 0.5, 0.66, 0.83, 1.0)


def block_x_timestep(blocks: Sequence | None = None, timesteps: Sequence[int] = PAPER_TIMESTEPS,
                     variants: Sequence[str] | None = None, num_blocks: int | None = None) -> dict:
    """Grid over Probe.block x Probe.timestep (x Backbone.variant).

    blocks: block indices (ints, 0 = embedding output) or depth fractions (floats in [0, 1]);
      default: every block 0..num_blocks when num_blocks is given, else seven depth fractions.
    timesteps: diffusion timesteps in [0, 1000) (default: the paper's seven).
    variants: e.g. ('image', 'video') to overlay I-WALT and V-WALT; None keeps the gin value.
    """
    bad = [t for t in timesteps if isinstance(t, bool) or not isinstance(t, numbers.Real)
           or t != int(t) or not 0 <= int(t) < 1000]
    if bad:
        raise ConfigurationError(f"block_x_timestep.timesteps {bad}: not integers or outside "
                                 f"[0, 1000) (t is the diffusion step index); e.g. [0, 200, 500]")
    from ray import tune  # imported here so registering spaces in gin stays cheap

    if blocks is None:
        blocks = tuple(range(num_blocks + 1)) if num_blocks is not None else DEPTH_FRACTIONS
    space = {"Probe.block": tune.grid_search(list(blocks)),
             "Probe.timestep": tune.grid_search([int(t) for t in timesteps])}
    if variants:
        space["Backbone.variant"] = tune.grid_search(list(variants))
    return space

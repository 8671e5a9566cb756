"""The linear readout: the lightest probe, one linear layer on frozen activations.

  activations (b, t, h, w, D)
    pool='mean':  mean over (t h w) -> (b, D) -> LayerNorm (no affine) -> Linear(D, k) -> (b, k)
    pool='token': LayerNorm (no affine) -> Linear(D, k) per token -> (b, t, h, w, k)

A linear probe asks whether the information is linearly decodable from the activations, where
the attentive readout (readouts/attentive.py) also lets a learned query pick the tokens. The
affine-free normalisation only rescales each feature vector (activation scales differ by
orders of magnitude between blocks and timesteps); it adds no parameters, so the probe stays
linear in the normalised features (as MAE's linear probe does with a BatchNorm without affine).

As a task kind's head (tasks/kinds.py `make_head`): classification calls
`LinearReadout(feature_dim, num_classes, num_frames=T)` and reads logits (b, k); select it with
one binding, e.g. `SyntheticObjects.make_head = @LinearReadout`.
"""

from __future__ import annotations

import torch
from einops import reduce
from torch import nn

from readouts.layers import LN_EPS, check_activations

POOLS = ("mean", "token")


class LinearReadout(nn.Module):
    """feature_dim D -> num_outputs k with one linear layer.

    num_frames: accepted for the kinds' head-factory signature; a linear readout has no
      temporal embedding, so any t works.
    pool: 'mean' (one prediction per clip, (b, k)) or 'token' (one per token, (b, t, h, w, k)).
    Parameters: D * k + k.
    """

    def __init__(self, feature_dim: int, num_outputs: int, *, num_frames: int | None = None,
                 pool: str = "mean"):
        super().__init__()
        if pool not in POOLS:
            raise ValueError(f"LinearReadout pool must be one of {POOLS}; received '{pool}'")
        self.feature_dim, self.num_outputs, self.pool = feature_dim, num_outputs, pool
        self.norm = nn.LayerNorm(feature_dim, eps=LN_EPS, elementwise_affine=False)
        self.linear = nn.Linear(feature_dim, num_outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (b, t, h, w, D) -> (b, k) for pool='mean', (b, t, h, w, k) for pool='token'."""
        check_activations(x, self.feature_dim, head=type(self).__name__)
        if self.pool == "mean":
            x = reduce(x, "b t h w d -> b d", "mean")
        return self.linear(self.norm(x))

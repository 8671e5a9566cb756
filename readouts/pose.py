"""Relative camera pose readout: attentive readout on first+last frame features -> [R | t].

Paper App. D.4: the first and last frames' representations are concatenated, cross-attended
by learned latents and mapped linearly to 12 numbers; the 3x3 part is projected onto SO(3) with
special Procrustes. The count 1,650,444 at D = 1024 fixes the layout (probing_spec.md, 4.1):
channel concatenation (input width 2D, one time step), readout width P = 256, 12 outputs.
"""

from __future__ import annotations

import torch
from einops import rearrange
from torch import nn

from readouts.attentive import AttentiveReadout
from readouts.layers import check_activations


def special_procrustes(m: torch.Tensor) -> torch.Tensor:
    """(..., 3, 3) -> the closest rotation in Frobenius norm, det = +1.

    With M = U S V^T: R = U diag(1, 1, det(U V^T)) V^T (Bregier 2021). roma's version has
    gradients that stay finite at repeated singular values.
    """
    # Imported here: roma pulls in torch._dynamo (seconds), which no other head needs.
    import roma

    return roma.special_procrustes(m)


class PoseReadout(nn.Module):
    """(b, 1, h, w, 2D) first|last frame features -> pose dict.

    feature_dim: D of ONE frame's activations (the head sees 2D channels).
    width / num_heads: readout width P and heads (paper: 256, 4 heads of 64).
    forward returns {"pose": (b, 3, 4) [R | t] with R in SO(3), "raw": (b, 12) linear output,
    row-major 3x3 then t}. The pose convention is the target's (tasks/task.py: last -> first).
    """

    def __init__(self, feature_dim: int, *, width: int = 256, num_heads: int = 4):
        super().__init__()
        self.feature_dim = feature_dim
        self.readout = AttentiveReadout(2 * feature_dim, 12, num_frames=1, width=width,
                                        num_heads=num_heads)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        check_activations(x, 2 * self.feature_dim, frames=1, head=type(self).__name__)
        raw = self.readout(x)
        rotation = special_procrustes(rearrange(raw[:, :9], "b (i j) -> b i j", i=3))
        pose = torch.cat([rotation, raw[:, 9:, None]], dim=-1)
        return {"pose": pose, "raw": raw}


def first_last_frames(x: torch.Tensor) -> torch.Tensor:
    """(b, t, h, w, D) -> (b, 1, h, w, 2D): first and last frame concatenated along channels.

    With t == 1 (an image backbone on one frame) the frame is paired with itself.
    """
    if x.ndim != 5:
        raise ValueError(f"expected activations (b, t, h, w, D); received {tuple(x.shape)}")
    return torch.cat([x[:, :1], x[:, -1:]], dim=-1)

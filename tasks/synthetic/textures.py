"""Procedural solid textures: a surface point's texture coordinates -> RGB.

Every surface of the world (three room surfaces and each object) carries one row of
texture parameters (`PARAMS` columns below). Textures are *solid*: a function of 3-D
coordinates in the surface's own frame (object-normalised coordinates in [-1, 1] for
objects, metres for room surfaces), so a texture moves and rotates with its object and
a tracked surface point keeps its colour. One texture evaluation per pixel covers the
whole frame: the renderer gathers each pixel's parameter row by the surface it hit.
"""

from __future__ import annotations

import math

import torch

# Texture families. Objects draw from OBJECT_FAMILIES; bricks only appear on room walls
# and in the brick-wall probe.
SOLID, STRIPES, CHECKERS, NOISE, DOTS, RINGS, BRICKS = range(7)
FAMILY_NAMES = ("solid", "stripes", "checkers", "noise", "dots", "rings", "bricks")
OBJECT_FAMILIES = (SOLID, STRIPES, CHECKERS, NOISE, DOTS, RINGS)

# Column layout of a parameter row (float32, width NUM_PARAMS).
FAMILY, FREQ, PHASE = 0, 1, 2
COLOR_A = slice(3, 6)
COLOR_B = slice(6, 9)
DIR_1 = slice(9, 12)
DIR_2 = slice(12, 15)
NUM_PARAMS = 15


def make_params(family: int, freq: float, color_a, color_b, gen: torch.Generator) -> torch.Tensor:
    """One parameter row: (NUM_PARAMS,) float32. Directions and phase are drawn from `gen`.

    family: one of the family constants; freq: cycles per unit of texture coordinate;
    color_a, color_b: RGB in [0, 1] (3,) each.
    """
    row = torch.zeros(NUM_PARAMS)
    row[FAMILY] = float(family)
    row[FREQ] = float(freq)
    row[PHASE] = float(torch.rand((), generator=gen)) * 2 * math.pi
    row[COLOR_A] = torch.as_tensor(color_a, dtype=torch.float32)
    row[COLOR_B] = torch.as_tensor(color_b, dtype=torch.float32)
    dirs = torch.randn(2, 3, generator=gen)
    row[DIR_1] = dirs[0] / dirs[0].norm().clamp_min(1e-6)
    row[DIR_2] = dirs[1] / dirs[1].norm().clamp_min(1e-6)
    return row


def hsv_to_rgb(h: torch.Tensor, s: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """HSV in [0, 1] (any shape, broadcast) -> RGB (..., 3) in [0, 1]."""
    h, s, v = torch.broadcast_tensors(torch.as_tensor(h, dtype=torch.float32),
                                      torch.as_tensor(s, dtype=torch.float32),
                                      torch.as_tensor(v, dtype=torch.float32))
    k = torch.stack([(5 + h * 6) % 6, (3 + h * 6) % 6, (1 + h * 6) % 6], dim=-1)
    ramp = torch.clamp(torch.minimum(k, 4 - k), 0, 1)
    return v[..., None] - v[..., None] * s[..., None] * ramp


def _dot(p: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
    # Explicit sum instead of a matmul: elementwise ops give the same bits whatever the
    # batch composition, which keeps rendering deterministic per clip.
    return p[..., 0] * d[..., 0] + p[..., 1] * d[..., 1] + p[..., 2] * d[..., 2]


def family_weight(family: int, p: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
    """Weight of colour B in [0, 1] for points of ONE family.

    p: (M, 3) texture coordinates; params: (M, NUM_PARAMS) their rows. Returns (M,).
    """
    freq, phase = params[:, FREQ], params[:, PHASE]
    d1, d2 = params[:, DIR_1], params[:, DIR_2]
    if family == SOLID:
        return torch.zeros_like(freq)
    if family == STRIPES:
        return (torch.sin(math.pi * freq * _dot(p, d1) + phase) > 0).float()
    if family == CHECKERS:
        return torch.remainder(torch.floor(freq[:, None] * p + phase[:, None]).sum(-1), 2.0)
    if family == NOISE:
        # Sum of three plane waves with incommensurate frequencies: smooth, aperiodic-looking.
        d3 = torch.cross(d1, d2, dim=-1)
        s = (torch.sin(math.pi * freq * _dot(p, d1) + phase)
             + torch.sin(1.7 * math.pi * freq * _dot(p, d2) + 2.3 * phase)
             + torch.sin(2.9 * math.pi * freq * _dot(p, d3) + 0.7 * phase))
        return torch.sigmoid(2.0 * s)
    if family == DOTS:
        cell = torch.remainder(freq[:, None] * p + d1, 1.0) - 0.5
        return ((cell * cell).sum(-1) < 0.09).float()
    if family == RINGS:
        r = torch.sqrt(((p - 0.3 * d1) ** 2).sum(-1) + 1e-12)
        return (torch.sin(2 * math.pi * freq * r + phase) > 0).float()
    if family == BRICKS:
        # Running-bond bricks on a vertical surface: p[:, 0] along the wall, p[:, 1] up.
        # Brick height 1/freq, length twice that; mortar is colour B.
        row = torch.floor(freq * p[:, 1])
        v = torch.remainder(freq * p[:, 1], 1.0)
        u = torch.remainder(0.5 * freq * p[:, 0] + 0.5 * torch.remainder(row, 2.0), 1.0)
        return ((v < 0.12) | (u < 0.06)).float()
    raise ValueError(f"unknown texture family {family}; families are 0..{len(FAMILY_NAMES) - 1}")


def shade_rows(p: torch.Tensor, table: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """RGB (M, 3) in [0, 1] of points p (M, 3) whose parameters are table[rows].

    table: (R, NUM_PARAMS); rows: (M,) long. Each point is evaluated for its own family
    only (grouped by family), so the cost is one texture per point; the colours are
    mixed once for all points.
    """
    family = table[:, FAMILY].long()[rows]
    # bincount, not unique: a histogram over seven values instead of a sort of M.
    present = torch.nonzero(torch.bincount(family, minlength=len(FAMILY_NAMES))).flatten().tolist()
    w = torch.zeros(p.shape[0], dtype=p.dtype, device=p.device)
    for fam in present:
        if fam == SOLID:
            continue
        idx = torch.nonzero(family == fam).flatten()
        w[idx] = family_weight(fam, p[idx], table[rows[idx]])
    colors = table[:, COLOR_A.start:COLOR_B.stop][rows]
    a, b = colors[:, :3], colors[:, 3:]
    return a + (b - a) * w[:, None]


def shade(p: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
    """RGB (..., 3) in [0, 1] of texture coordinates p (..., 3) with rows params (..., NUM_PARAMS)."""
    flat = params.reshape(-1, NUM_PARAMS)
    rgb = shade_rows(p.reshape(-1, 3), flat, torch.arange(flat.shape[0], device=p.device))
    return rgb.reshape(p.shape)

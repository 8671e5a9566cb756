"""Vectorised ray casting of a batch of scenes: RGB, metric depth and object ids per frame.

Every pixel's ray is intersected with the room (the inside of an axis-aligned box, so
every ray hits it and depth is valid everywhere) and with each object (quadrics for
spheres / ellipsoids, slabs for cubes / cuboids) in the object's own frame; the nearest
hit wins. Texture coordinates and a Lambert term are kept for the winner only, and one
texture evaluation colours the frame (`textures.shade`). Everything is torch elementwise
work over (b, T, P) rays, so it runs on CPU or GPU unchanged and gives the same bits
for a clip whatever batch it is rendered in.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import einops
import torch

from tasks.synthetic import textures
from tasks.synthetic.scene import QUADRIC_SHAPES, ROOM_SURFACES, Scene, pixel_grid, pixel_rays

_EPS = 1e-4
_FAR = 1e6
# Light from above and slightly behind-left; ambient keeps the dark side textured.
_LIGHT = torch.tensor([0.35, -0.5, 0.8])
_AMBIENT = 0.45
# Flat shading per room surface (floor, walls, ceiling) so the layout reads at 64 x 64.
_ROOM_SHADE = (1.0, 0.82, 0.93)


@dataclasses.dataclass
class SceneBatch:
    """Scenes padded to a common object count N (padding objects have zero extent)."""

    room_lo: torch.Tensor         # (b, 3)
    room_hi: torch.Tensor         # (b, 3)
    surface_params: torch.Tensor  # (b, 3 + N, NUM_PARAMS)
    quadric: torch.Tensor         # (b, N) bool
    active: torch.Tensor          # (b, N) bool
    extents: torch.Tensor         # (b, N, 3)
    positions: torch.Tensor       # (b, N, T, 3)
    rotations: torch.Tensor       # (b, N, T, 3, 3)
    cam_to_world: torch.Tensor    # (b, T, 4, 4)
    intrinsics: torch.Tensor      # (b, 3, 3)


def batch_scenes(scenes: Sequence[Scene], device: torch.device | str = "cpu") -> SceneBatch:
    """Pads and stacks scenes of equal frame count."""
    frames = {s.num_frames for s in scenes}
    if len(frames) != 1:
        raise ValueError(f"scenes in one batch need the same frame count, got {sorted(frames)}")
    t = frames.pop()
    n = max(1, max(s.num_objects for s in scenes))
    b = len(scenes)
    params = torch.zeros(b, ROOM_SURFACES + n, textures.NUM_PARAMS)
    quadric = torch.zeros(b, n, dtype=torch.bool)
    active = torch.zeros(b, n, dtype=torch.bool)
    extents = torch.zeros(b, n, 3)
    positions = torch.zeros(b, n, t, 3)
    rotations = torch.eye(3).expand(b, n, t, 3, 3).clone()
    for i, s in enumerate(scenes):
        k = s.num_objects
        params[i, : ROOM_SURFACES + k] = s.surface_params
        quadric[i, :k] = torch.isin(s.shapes, torch.tensor(QUADRIC_SHAPES))
        active[i, :k] = True
        extents[i, :k] = s.extents
        positions[i, :k] = s.positions
        rotations[i, :k] = s.rotations
    stack = lambda name: torch.stack([getattr(s, name) for s in scenes])  # noqa: E731
    batch = SceneBatch(stack("room_lo"), stack("room_hi"), params, quadric, active, extents,
                       positions, rotations, stack("cam_to_world"), stack("intrinsics"))
    return SceneBatch(**{f.name: getattr(batch, f.name).to(device) for f in dataclasses.fields(batch)})


def _room_hit(batch: SceneBatch, origin: torch.Tensor, dirs: torch.Tensor):
    """Exit point of rays from inside the room box: t (b, T, P), surface (b, T, P), uvw (b, T, P, 3)."""
    lo = batch.room_lo[:, None, None, :]
    hi = batch.room_hi[:, None, None, :]
    # The exit wall along each axis and the step to it; the two must agree on the direction's
    # sign. (They once did not: a component in (-1e-12, 0) picked the low wall but stepped
    # towards +1e-12, giving one pixel in ~300 clips a depth of about -1e12.)
    ahead = dirs >= 0
    step = torch.where(dirs.abs() < 1e-12, torch.where(ahead, 1e-12, -1e-12), dirs)
    t_axis = (torch.where(ahead, hi, lo) - origin[:, :, None]) / step
    t, axis = t_axis.min(dim=-1)
    p = origin[:, :, None] + t[..., None] * dirs
    # Surface 0 floor, 1 walls, 2 ceiling (axis 2 = z: floor when going down).
    floor_or_ceiling = axis == 2
    surface = torch.where(floor_or_ceiling, torch.where(dirs[..., 2] < 0, 0, 2), 1)
    # Texture coordinates: floor / ceiling use (x, y); walls use (along-wall, height).
    x, y, z = p.unbind(-1)
    uvw = torch.stack([torch.where(axis == 0, y, x), torch.where(floor_or_ceiling, y, z),
                       torch.zeros_like(x)], dim=-1)
    return t, surface, uvw


def _to_object(rot: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """R^T v for rot (..., 3, 3) and v (..., 3), broadcast over leading axes.

    Written as three scaled rows (no matmul, no (..., 3, 3) temporaries): elementwise ops
    give the same bits whatever the batch composition, and it is the hot loop.
    """
    return v[..., 0:1] * rot[..., 0, :] + v[..., 1:2] * rot[..., 1, :] + v[..., 2:3] * rot[..., 2, :]


def _light(device) -> torch.Tensor:
    return (_LIGHT / _LIGHT.norm()).to(device)


@dataclasses.dataclass
class _Rects:
    """Per (clip, frame, object) slot tables, flat over (b T N): the frame of everything an
    object's rays need, so that per (ray, object) pair only the direction is transformed.

    Object coordinates are normalised by the half-extents (the object is the unit sphere or
    the cube [-1, 1]^3 there): to_unit (R, 3, 3) has rows rot[i, :] / extent, so
    `_to_object(to_unit, d)` = R^T d / extent; origin (R, 3) is the frame's camera centre
    in those coordinates; light (R, 3) the unit light direction in object axes.
    """

    to_unit: torch.Tensor
    origin: torch.Tensor
    light: torch.Tensor
    inv_extent: torch.Tensor
    quadric: torch.Tensor   # (R,) bool
    active: torch.Tensor    # (R,) bool
    num_objects: int


def _rects(batch: SceneBatch, origin: torch.Tensor) -> _Rects:
    """origin: (b, T, 3) ray origins of each frame."""
    n, t = batch.extents.shape[1], origin.shape[1]
    rot = einops.rearrange(batch.rotations, "b N T i j -> (b T N) i j")
    centre = einops.rearrange(batch.positions, "b N T c -> (b T N) c")
    inv_extent = 1.0 / einops.repeat(batch.extents, "b N c -> (b T N) c", T=t).clamp_min(1e-9)
    to_unit = rot * inv_extent[:, None, :]
    origin_r = einops.repeat(origin, "b T c -> (b T N) c", N=n)
    return _Rects(
        to_unit=to_unit, origin=_to_object(to_unit, origin_r - centre),
        light=_to_object(rot, _light(origin.device).expand(rot.shape[:-1])), inv_extent=inv_extent,
        quadric=einops.repeat(batch.quadric, "b N -> (b T N)", T=t),
        active=einops.repeat(batch.active, "b N -> (b T N)", T=t), num_objects=n)


def _pairs(rects: _Rects, count: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Enumerates `count` (R,) rays per slot: rect (pairs,) slot of each pair, offset
    (pairs,) its rank inside the slot, and the number of quadric pairs, which come first
    so that each intersection routine runs on one contiguous slice."""
    count = torch.where(rects.active, count, 0)
    order = torch.cat([torch.nonzero(rects.quadric & (count > 0)).flatten(),
                       torch.nonzero(~rects.quadric & (count > 0)).flatten()])
    count = count[order]
    rect = torch.repeat_interleave(order, count)
    start = torch.cumsum(count, 0) - count
    offset = torch.arange(rect.numel(), device=rect.device) - torch.repeat_interleave(start, count)
    num_quadric = int(count[: int(rects.quadric[order].sum())].sum())
    return rect, offset, num_quadric


def _quadric_t(o: torch.Tensor, d: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """Entry t of rays o + t d (unit coordinates) into the unit sphere; c = |o|^2 - 1."""
    a = _dot(d, d)
    half_b = _dot(o, d)
    disc = half_b * half_b - a * c
    return torch.where(disc > 0, (-half_b - torch.sqrt(disc.clamp_min(0))) / a, _FAR)


def _slab_t(o: torch.Tensor, d: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Entry t of rays into the cube [-1, 1]^3 (largest near-plane crossing) and its axis."""
    inv = 1.0 / torch.where(d.abs() < 1e-12, 1e-12, d)
    t1, t2 = (-1.0 - o) * inv, (1.0 - o) * inv
    t_near, axis = torch.minimum(t1, t2).max(dim=-1)
    t_far = torch.maximum(t1, t2).min(dim=-1).values
    return torch.where(t_far >= t_near, t_near, _FAR), axis


def _dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return a[..., 0] * b[..., 0] + a[..., 1] * b[..., 1] + a[..., 2] * b[..., 2]


def _nearest(rects: _Rects, rect: torch.Tensor, ray: torch.Tensor, num_quadric: int,
             dirs: torch.Tensor, t_room: torch.Tensor, surface: torch.Tensor, uvw: torch.Tensor,
             lambert: torch.Tensor) -> dict[str, torch.Tensor]:
    """Resolves (ray, object) pairs against the room hits of the flat rays.

    rect, ray: (pairs,) slot and flat ray index of each pair, quadric pairs first;
    dirs: (rays, 3) world directions; t_room, surface, lambert: (rays,), uvw (rays, 3) of
    the room. Every per-pair value is an elementwise function of the pair's own inputs,
    so a ray's result does not depend on the other rays traced with it.
    """
    # 1. Ray parameter of every pair in unit object coordinates (same t as in the world).
    d = _to_object(rects.to_unit[rect], dirs[ray])                          # (pairs, 3)
    o = rects.origin[rect]
    q = slice(0, num_quadric)
    t_q = _quadric_t(o[q], d[q], _dot(o[q], o[q]) - 1)
    t_s, axis_s = _slab_t(o[num_quadric:], d[num_quadric:])
    t_pair = torch.cat([t_q, t_s])
    t_pair = torch.where(t_pair > _EPS, t_pair, _FAR)

    # 2. Nearest hit per ray; ties go to the highest slot so the result is unique.
    obj = rect % rects.num_objects
    t_best = t_room.scatter_reduce(0, ray, t_pair, "amin")
    win = (t_pair == t_best[ray]) & (t_pair < _FAR)
    top = torch.full_like(t_best, -1, dtype=torch.long).scatter_reduce(0, ray[win], obj[win], "amax")
    win = torch.nonzero(win & (obj == top[ray])).flatten()

    # 3. Texture coordinates and Lambert shading of the winners only.
    r = rect[win]
    p_n = o[win] + t_pair[win, None] * d[win]
    light = rects.light[r]
    normal = p_n * rects.inv_extent[r]   # gradient of |p_n|^2 in object axes
    lam_q = _dot(normal, light) / normal.norm(dim=-1).clamp_min(1e-9)
    axis = torch.cat([torch.zeros_like(t_q, dtype=torch.long), axis_s])[win, None]
    lam_s = torch.sign(p_n.gather(1, axis)[:, 0]) * light.gather(1, axis)[:, 0]
    lam = _AMBIENT + (1 - _AMBIENT) * torch.where(win < num_quadric, lam_q, lam_s).clamp_min(0)
    hit = ray[win]
    return {"t": t_best, "surface": surface.index_put((hit,), ROOM_SURFACES + obj[win]),
            "uvw": uvw.index_put((hit,), p_n), "lambert": lambert.index_put((hit,), lam)}


def _room(batch: SceneBatch, origin: torch.Tensor, dirs: torch.Tensor):
    """Room hits of rays (b, T, P), flattened to (rays,) / (rays, 3)."""
    t, surface, uvw = _room_hit(batch, origin, dirs)
    lambert = torch.tensor(_ROOM_SHADE, device=dirs.device)[surface]
    flat = lambda x: einops.rearrange(x, "b T P ... -> (b T P) ...")  # noqa: E731
    return flat(t), flat(surface), flat(uvw), flat(lambert)


def _unflatten(hits: dict[str, torch.Tensor], b: int, t: int) -> dict[str, torch.Tensor]:
    return {k: einops.rearrange(v, "(b T P) ... -> b T P ...", b=b, T=t) for k, v in hits.items()}


def trace(batch: SceneBatch, origin: torch.Tensor, dirs: torch.Tensor) -> dict[str, torch.Tensor]:
    """Nearest surface along each ray (dense: every ray against every object).

    origin: (b, T or 1, 3) world ray origins; dirs: (b, T or 1, P, 3) world directions (any scale;
    the returned t is in units of dirs, i.e. depth when dirs have camera z = 1).
    Returns t (b, T, P), surface (b, T, P) long (0-2 room, 3 + n object n), uvw
    (b, T, P, 3) texture coordinates, lambert (b, T, P) shading factor.
    """
    b, t = batch.cam_to_world.shape[:2]
    p = dirs.shape[2]
    # Rays given for one frame are cast in every frame of the batch (broadcast over T).
    origin, dirs = origin.expand(b, t, 3), dirs.expand(b, t, p, 3)
    rects = _rects(batch, origin)
    rect, offset, num_quadric = _pairs(rects, torch.full_like(rects.quadric, p, dtype=torch.long))
    ray = rect // rects.num_objects * p + offset
    hits = _nearest(rects, rect, ray, num_quadric, einops.rearrange(dirs, "b T P c -> (b T P) c"),
                    *_room(batch, origin, dirs))
    return _unflatten(hits, b, t)


def _silhouette_ranges(batch: SceneBatch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Exact image-plane ranges of each object's silhouette, for objects wholly in front
    of the camera: u_lo, u_hi (b, T, N, 2) of x / z and y / z in camera coordinates, and
    valid (b, T, N).

    In camera coordinates an object is X = c + M s with M = R_cam^T R_obj diag(extent) and
    s in the unit ball (quadrics) or the cube [-1, 1]^3 (slabs). For a box the range is that
    of its 8 projected corners. For an ellipsoid the bounding lines x / z = u are the planes
    (1, 0, -u) . X = 0 tangent to it, |n . c| = |M^T n|: a quadratic in u with S = M M^T.
    """
    rot_c = batch.cam_to_world[:, :, None, :3, :3]                          # (b, T, 1, 3, 3)
    rel = einops.rearrange(batch.positions, "b N T c -> b T N c") - batch.cam_to_world[:, :, None, :3, 3]
    c = _to_object(rot_c, rel)                                              # (b, T, N, 3)
    rotations = einops.rearrange(batch.rotations, "b N T i j -> b T N i j")
    m = rot_c.transpose(-1, -2) @ (rotations * batch.extents[:, None, :, None, :])  # matrix products
    z = c[..., 2]
    # Ellipsoid: support along the optical axis sqrt(S_22); tangent-plane quadratic per axis.
    s = m @ m.transpose(-1, -2)
    quad_front = z - torch.sqrt(s[..., 2, 2].clamp_min(0)) > 1e-3
    denom = (z * z - s[..., 2, 2]).clamp_min(1e-9)
    quad_lo, quad_hi = [], []
    for j in (0, 1):
        half_b = c[..., j] * z - s[..., j, 2]
        root = torch.sqrt((half_b * half_b - denom * (c[..., j] ** 2 - s[..., j, j])).clamp_min(0))
        quad_lo.append((half_b - root) / denom)
        quad_hi.append((half_b + root) / denom)
    # Box: support sum_i |M_2i|; projected corners.
    box_front = z - m[..., 2, :].abs().sum(-1) > 1e-3
    signs = torch.tensor([[x, y, w] for x in (-1.0, 1.0) for y in (-1.0, 1.0) for w in (-1.0, 1.0)],
                         device=c.device)
    corners = c[..., None, :] + (m[..., None, :, :] * signs[:, None, :]).sum(-1)   # (b, T, N, 8, 3)
    uv = corners[..., :2] / corners[..., 2:].clamp_min(1e-6)
    quad = batch.quadric[:, None, :, None]
    u_lo = torch.where(quad, torch.stack(quad_lo, -1), uv.min(dim=-2).values)
    u_hi = torch.where(quad, torch.stack(quad_hi, -1), uv.max(dim=-2).values)
    valid = torch.where(batch.quadric[:, None, :], quad_front, box_front)
    return u_lo, u_hi, valid


def _pixel_ranges(batch: SceneBatch, image_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Conservative pixel rectangles of each object per frame.

    Returns lo, hi (b, T, N, 2) long [col, row], inclusive; empty where lo > hi. The
    rectangle of the object's bounding sphere always applies: in the camera's xz-plane the
    sphere is a disk, so its x / z range is exactly tan(theta -+ alpha) (same for y);
    it goes full-frame when the camera is inside the sphere or the sphere straddles the
    image plane's horizon. Objects wholly in front of the camera are further cut to their
    exact silhouette range (`_silhouette_ranges`), which halves the pairs tested.
    """
    rot = batch.cam_to_world[:, :, None, :3, :3]                       # (b, T, 1, 3, 3)
    rel = einops.rearrange(batch.positions, "b N T c -> b T N c") - batch.cam_to_world[:, :, None, :3, 3]
    cam = _to_object(rot, rel)                                          # (b, T, N, 3)
    radius = batch.extents.norm(dim=-1)[:, None, :] * 1.001 + 1e-4     # (b, 1, N)
    k = batch.intrinsics[:, None, None]
    tight_lo, tight_hi, tight = _silhouette_ranges(batch)
    lo, hi = [], []
    for axis, f, c in ((0, k[..., 0, 0], k[..., 0, 2]), (1, k[..., 1, 1], k[..., 1, 2])):
        x, z = cam[..., axis], cam[..., 2]
        dist = torch.sqrt(x * x + z * z)
        theta = torch.atan2(x, z)
        alpha = torch.asin((radius / dist.clamp_min(1e-9)).clamp(max=1.0))
        full = (dist <= radius) | (theta + alpha >= 1.55) | (theta - alpha <= -1.55)
        u_lo = f * torch.tan((theta - alpha).clamp(-1.55, 1.55)) + c
        u_hi = f * torch.tan((theta + alpha).clamp(-1.55, 1.55)) + c
        u_lo = torch.where(full, -1e9, u_lo)
        u_hi = torch.where(full, 1e9, u_hi)
        # Both ranges are conservative, so is their intersection.
        u_lo = torch.where(tight, torch.maximum(u_lo, f * tight_lo[..., axis] + c), u_lo)
        u_hi = torch.where(tight, torch.minimum(u_hi, f * tight_hi[..., axis] + c), u_hi)
        # Pixel i is covered when its centre i + 0.5 lies in [u_lo, u_hi]; one pixel of slack.
        first = (torch.ceil(u_lo.clamp(-1e6, 1e6) - 0.5) - 1).clamp(0, image_size - 1)
        last = (torch.floor(u_hi.clamp(-1e6, 1e6) - 0.5) + 1).clamp(-1, image_size - 1)
        behind = (z + radius) <= 0
        last = torch.where(behind | ~batch.active[:, None, :], -1.0, last)
        lo.append(first.long())
        hi.append(torch.maximum(last, first - 1).long())
    return torch.stack(lo, -1), torch.stack(hi, -1)


def trace_frames(batch: SceneBatch, image_size: int) -> dict[str, torch.Tensor]:
    """`trace` for every pixel of every frame, testing each object only inside its
    screen rectangle: cost follows the objects' screen area, not P x N.

    Returns the dict of `trace` with P = H * W (row-major).
    """
    b, t = batch.cam_to_world.shape[:2]
    p = image_size * image_size
    xy = einops.repeat(pixel_grid(image_size, image_size).to(batch.cam_to_world.device),
                       "P xy -> b T P xy", b=b, T=t)
    origin, dirs = pixel_rays(xy, batch.cam_to_world, batch.intrinsics)
    rects = _rects(batch, origin)
    # (ray, object) pairs inside each object's rectangle, enumerated row-major per slot.
    lo, hi = (einops.rearrange(x, "b T N xy -> (b T N) xy") for x in _pixel_ranges(batch, image_size))
    width, height = (hi - lo + 1).clamp_min(0).unbind(-1)
    rect, offset, num_quadric = _pairs(rects, width * height)
    w = width[rect]
    row, col = lo[rect, 1] + offset // w, lo[rect, 0] + offset % w
    ray = rect // rects.num_objects * p + row * image_size + col
    hits = _nearest(rects, rect, ray, num_quadric, einops.rearrange(dirs, "b T P c -> (b T P) c"),
                    *_room(batch, origin, dirs))
    return _unflatten(hits, b, t)


def colorize(batch: SceneBatch, hits: dict[str, torch.Tensor]) -> torch.Tensor:
    """RGB (b, T, P, 3) in [0, 1] of traced hits (one texture evaluation per ray)."""
    b, t, p = hits["surface"].shape
    s = batch.surface_params.shape[1]
    # Row of each ray's surface in the (b S) parameter table.
    rows = hits["surface"] + s * torch.arange(b, device=hits["surface"].device)[:, None, None]
    rgb = textures.shade_rows(einops.rearrange(hits["uvw"], "b T P c -> (b T P) c"),
                              einops.rearrange(batch.surface_params, "b S f -> (b S) f"),
                              einops.rearrange(rows, "b T P -> (b T P)"))
    rgb = einops.rearrange(rgb, "(b T P) c -> b T P c", b=b, T=t) * hits["lambert"][..., None]
    return rgb.clamp(0, 1)


def render(scenes: Sequence[Scene] | SceneBatch, image_size: int,
           device: torch.device | str = "cpu") -> dict[str, torch.Tensor]:
    """Renders whole frames.

    scenes: clips of equal frame count T (or an already batched SceneBatch); image_size:
    H = W of the raster, which must match the scenes' intrinsics.
    Returns on the CPU: video uint8 (b, T, H, W, 3); depth float32 (b, T, H, W) metres
    along the optical axis (valid everywhere, the room is closed); ids uint8 (b, T, H, W),
    0 = room, n + 1 = object n; surface uint8 (b, T, H, W), the index of `trace`.
    """
    batch = scenes if isinstance(scenes, SceneBatch) else batch_scenes(scenes, device)
    hits = trace_frames(batch, image_size)
    rgb = colorize(batch, hits)
    ids = (hits["surface"] - ROOM_SURFACES + 1).clamp_min(0)
    to_image = lambda x: einops.rearrange(x, "b T (H W) ... -> b T H W ...", H=image_size)  # noqa: E731
    return {
        "video": to_image((rgb * 255 + 0.5).to(torch.uint8)).cpu(),
        "depth": to_image(hits["t"]).float().cpu(),
        "ids": to_image(ids.to(torch.uint8)).cpu(),
        "surface": to_image(hits["surface"].to(torch.uint8)).cpu(),
    }

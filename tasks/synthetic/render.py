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
    safe = torch.where(dirs.abs() < 1e-12, torch.full_like(dirs, 1e-12), dirs)
    t_axis = torch.where(safe > 0, hi - origin[:, :, None], lo - origin[:, :, None]) / safe
    t, axis = t_axis.min(dim=-1)
    p = origin[:, :, None] + t[..., None] * dirs
    # Surface 0 floor, 1 walls, 2 ceiling (axis 2 = z: floor when going down).
    surface = torch.where(axis == 2, torch.where(dirs[..., 2] < 0, 0, 2), 1)
    # Texture coordinates: floor / ceiling use (x, y); walls use (along-wall, height).
    along = torch.where(axis == 0, p[..., 1], p[..., 0])
    wall_uvw = torch.stack([along, p[..., 2], torch.zeros_like(along)], dim=-1)
    flat_uvw = torch.stack([p[..., 0], p[..., 1], torch.zeros_like(along)], dim=-1)
    uvw = torch.where((surface == 1)[..., None], wall_uvw, flat_uvw)
    return t, surface, uvw


def _to_object(rot: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """R^T v for rot (..., 3, 3) and v (..., 3), broadcast over leading axes.

    Written as three scaled rows (no matmul, no (..., 3, 3) temporaries): elementwise ops
    give the same bits whatever the batch composition, and it is the hot loop.
    """
    return v[..., 0:1] * rot[..., 0, :] + v[..., 1:2] * rot[..., 1, :] + v[..., 2:3] * rot[..., 2, :]


def _intersect(o_l: torch.Tensor, d_l: torch.Tensor, ext: torch.Tensor, quad: torch.Tensor,
               light_l: torch.Tensor):
    """Ray-object hits in object coordinates (all arguments broadcast to (..., 3) / (...)).

    o_l, d_l: ray origin / direction in the object frame; ext: half-extents; quad: True for
    quadrics (sphere, ellipsoid), False for slabs (cube, cuboid); light_l: unit light
    direction in the object frame. Returns t (...) (_FAR on a miss), normalised surface
    coordinates (..., 3) in [-1, 1] and a Lambert factor (...).
    """
    ext = ext.clamp_min(1e-9)
    # Quadric: the unit sphere in extent-scaled coordinates (same ray parameter t).
    os_, ds_ = o_l / ext, d_l / ext
    a = (ds_ * ds_).sum(-1)
    half_b = (os_ * ds_).sum(-1)
    disc = half_b * half_b - a * ((os_ * os_).sum(-1) - 1)
    t_quad = torch.where(disc > 0, (-half_b - torch.sqrt(disc.clamp_min(0))) / a, _FAR)
    # Slabs: entry = the largest near-plane crossing over the three axes.
    inv = 1.0 / torch.where(d_l.abs() < 1e-12, torch.full_like(d_l, 1e-12), d_l)
    t1, t2 = (-ext - o_l) * inv, (ext - o_l) * inv
    t_near, axis = torch.minimum(t1, t2).max(dim=-1)
    t_far = torch.maximum(t1, t2).min(dim=-1).values
    t_box = torch.where(t_far >= t_near, t_near, _FAR)
    t = torch.where(quad, t_quad, t_box)
    t = torch.where(t > _EPS, t, _FAR)
    p_n = (o_l + t[..., None] * d_l) / ext
    normal_box = torch.nn.functional.one_hot(axis, 3).to(p_n.dtype) * torch.sign(p_n)
    normal = torch.where(quad[..., None], p_n / ext, normal_box)
    normal = normal / normal.norm(dim=-1, keepdim=True).clamp_min(1e-9)
    lam = _AMBIENT + (1 - _AMBIENT) * (normal * light_l).sum(-1).clamp_min(0)
    return t, p_n, lam


def _light(device) -> torch.Tensor:
    return (_LIGHT / _LIGHT.norm()).to(device)


def _room_lambert(surface: torch.Tensor) -> torch.Tensor:
    lambert = torch.ones(surface.shape, device=surface.device)
    for i, value in enumerate(_ROOM_SHADE):
        lambert = torch.where(surface == i, value, lambert)
    return lambert


def trace(batch: SceneBatch, origin: torch.Tensor, dirs: torch.Tensor) -> dict[str, torch.Tensor]:
    """Nearest surface along each ray (dense: every ray against every object).

    origin: (b, T, 3) world ray origins; dirs: (b, T, P, 3) world directions (any scale;
    the returned t is in units of dirs, i.e. depth when dirs have camera z = 1).
    Returns t (b, T, P), surface (b, T, P) long (0-2 room, 3 + n object n), uvw
    (b, T, P, 3) texture coordinates, lambert (b, T, P) shading factor.
    """
    t_best, surface, uvw = _room_hit(batch, origin, dirs)
    lambert = _room_lambert(surface)
    for n in range(batch.extents.shape[1]):
        if not bool(batch.active[:, n].any()):
            continue
        rot = batch.rotations[:, n]                                          # (b, T, 3, 3)
        o_l = _to_object(rot, origin - batch.positions[:, n])[:, :, None]   # (b, T, 1, 3)
        d_l = _to_object(rot[:, :, None], dirs)                              # (b, T, P, 3)
        light_l = _to_object(rot, _light(dirs.device).expand(rot.shape[:-1]))[:, :, None]
        t_obj, p_n, lam = _intersect(o_l, d_l, batch.extents[:, n, None, None, :],
                                     batch.quadric[:, n, None, None], light_l)
        closer = (t_obj < t_best) & batch.active[:, n, None, None]
        t_best = torch.where(closer, t_obj, t_best)
        surface = torch.where(closer, ROOM_SURFACES + n, surface)
        uvw = torch.where(closer[..., None], p_n, uvw)
        lambert = torch.where(closer, lam, lambert)
    return {"t": t_best, "surface": surface, "uvw": uvw, "lambert": lambert}


def _pixel_ranges(batch: SceneBatch, image_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Conservative pixel rectangles of each object's bounding sphere per frame.

    Returns lo, hi (b, T, N, 2) long [col, row], inclusive; empty where lo > hi. In the
    camera's xz-plane the sphere is a disk, so its x / z range is exactly
    tan(theta -+ alpha) (same for y); rectangles go full-frame when the camera is inside
    a bounding sphere or the sphere straddles the image plane's horizon.
    """
    rot = batch.cam_to_world[:, :, None, :3, :3]                       # (b, T, 1, 3, 3)
    rel = batch.positions.transpose(1, 2) - batch.cam_to_world[:, :, None, :3, 3]
    cam = _to_object(rot, rel)                                          # (b, T, N, 3)
    radius = batch.extents.norm(dim=-1)[:, None, :] * 1.001 + 1e-4     # (b, 1, N)
    k = batch.intrinsics[:, None, None]
    lo, hi = [], []
    for axis, f, c in ((0, k[..., 0, 0], k[..., 0, 2]), (1, k[..., 1, 1], k[..., 1, 2])):
        x, z = cam[..., axis], cam[..., 2]
        dist = torch.sqrt(x * x + z * z)
        theta = torch.atan2(x, z)
        alpha = torch.asin((radius / dist.clamp_min(1e-9)).clamp(max=1.0))
        full = (dist <= radius) | (theta + alpha >= 1.55) | (theta - alpha <= -1.55)
        u_lo = f * torch.tan((theta - alpha).clamp(-1.55, 1.55)) + c
        u_hi = f * torch.tan((theta + alpha).clamp(-1.55, 1.55)) + c
        # Pixel i is covered when its centre i + 0.5 lies in [u_lo, u_hi]; one pixel of slack.
        first = torch.where(full, 0.0, torch.ceil(u_lo - 0.5) - 1).clamp(0, image_size - 1)
        last = torch.where(full, image_size - 1.0, torch.floor(u_hi - 0.5) + 1).clamp(-1, image_size - 1)
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
    n = batch.extents.shape[1]
    p = image_size * image_size
    device = batch.cam_to_world.device
    xy = einops.repeat(pixel_grid(image_size, image_size).to(device), "P xy -> b T P xy", b=b, T=t)
    origin, dirs = pixel_rays(xy, batch.cam_to_world, batch.intrinsics)
    t_best, surface, uvw = _room_hit(batch, origin, dirs)
    lambert = _room_lambert(surface)

    # 1. (ray, object) pairs inside each object's rectangle, packed into flat lists.
    lo, hi = _pixel_ranges(batch, image_size)
    width, height = (hi - lo + 1).clamp_min(0).unbind(-1)
    area = (width * height).reshape(-1)                       # (b T N) rectangles, row-major
    rect = torch.repeat_interleave(torch.arange(area.numel(), device=device), area)
    if rect.numel() == 0:
        return {"t": t_best, "surface": surface, "uvw": uvw, "lambert": lambert}
    offset = torch.arange(rect.numel(), device=device) - (torch.cumsum(area, 0) - area)[rect]
    w_r = width.reshape(-1)[rect]
    col = lo[..., 0].reshape(-1)[rect] + offset % w_r
    row = lo[..., 1].reshape(-1)[rect] + offset // w_r
    frame, obj = rect // n, rect % n                          # frame = flat (b T), obj = slot
    ray = frame * p + row * image_size + col                  # flat (b T P)
    clip = frame // t

    # 2. Intersections of the packed pairs.
    rot = batch.rotations.transpose(1, 2).reshape(-1, 3, 3)[rect]          # (pairs, 3, 3)
    centre = batch.positions.transpose(1, 2).reshape(-1, 3)[rect]
    o_l = _to_object(rot, origin.reshape(-1, 3)[frame] - centre)
    d_l = _to_object(rot, dirs.reshape(-1, 3)[ray])
    light_l = _to_object(rot, _light(device).expand(rot.shape[:-1]))
    ext = batch.extents.reshape(-1, 3)[clip * n + obj]
    quad = batch.quadric.reshape(-1)[clip * n + obj]
    t_pair, p_n, lam = _intersect(o_l, d_l, ext, quad, light_l)

    # 3. Nearest hit per ray; ties go to the highest slot so the result is unique.
    t_flat = t_best.reshape(-1).scatter_reduce(0, ray, t_pair, "amin")
    win = (t_pair == t_flat[ray]) & (t_pair < _FAR)
    top = torch.full_like(t_flat, -1, dtype=torch.long).scatter_reduce(0, ray[win], obj[win], "amax")
    win &= obj == top[ray]
    surface = surface.reshape(-1).index_put((ray[win],), ROOM_SURFACES + obj[win])
    uvw = uvw.reshape(-1, 3).index_put((ray[win],), p_n[win])
    lambert = lambert.reshape(-1).index_put((ray[win],), lam[win])
    shape = (b, t, p)
    return {"t": t_flat.reshape(shape), "surface": surface.reshape(shape),
            "uvw": uvw.reshape(*shape, 3), "lambert": lambert.reshape(shape)}


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

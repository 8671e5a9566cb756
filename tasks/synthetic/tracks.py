"""Ground truth that follows surfaces through a clip: point tracks and object boxes.

Point tracks (TAP-Vid conventions, tasks/task.py): a query is a pixel centre of frame 0;
its surface point is fixed in the coordinates of the surface it lies on (object frame for
objects, world for the static room), carried through every frame by the object's motion,
and projected with the camera of that frame. A point is visible in frame t when it is in
front of the camera, inside the raster, and a ray cast through its exact projected
position hits the same surface at the same depth (an exact depth test, no depth-map
resampling).

Boxes: per object and frame, the tight pixel rectangle of its id mask, normalised to
[0, 1] of the frame width / height as [x0, y0, x1, y1] (a pixel column i spans
[i, i + 1)).
"""

from __future__ import annotations

import einops
import torch

from tasks.synthetic.render import SceneBatch, trace
from tasks.synthetic.scene import ROOM_SURFACES, pixel_rays, project

# Relative depth agreement for the visibility test (float32 ray casts agree to ~1e-6).
_DEPTH_TOL = 1e-3


def sample_queries(ids0: torch.Tensor, num_queries: int, gen: torch.Generator,
                   object_share: float = 0.5) -> torch.Tensor:
    """Query pixels of frame 0: (Q, 2) long [row, col], distinct.

    ids0: (H, W) id mask of frame 0. About `object_share` of the queries land on objects
    (when there are object pixels), the rest anywhere.
    """
    flat = einops.rearrange(ids0, "H W -> (H W)")
    weights = torch.ones(flat.shape[0], dtype=torch.float64)
    on_objects = int((flat > 0).sum())
    if on_objects:
        # Weight object pixels so that they make up object_share of the draw on average.
        ratio = object_share / (1 - object_share) * (flat.numel() - on_objects) / on_objects
        weights[flat > 0] = max(ratio, 1.0)
    pick = torch.multinomial(weights, num_queries, replacement=False, generator=gen)
    width = ids0.shape[1]
    return torch.stack([pick // width, pick % width], dim=-1)


def point_tracks(batch: SceneBatch, depth0: torch.Tensor, surface0: torch.Tensor,
                 queries: torch.Tensor) -> dict[str, torch.Tensor]:
    """Tracks of frame-0 pixel centres through every frame.

    batch: b scenes of T frames; depth0: (b, H, W) frame-0 depth; surface0: (b, H, W) long
    surface index of frame 0 (0-2 room, 3 + n object n, as `render.trace`); queries:
    (b, Q, 2) long [row, col] of frame-0 pixels.
    Returns query_points (b, Q, 3) [t, y, x]; target_points (b, Q, T, 2) [x, y] pixels;
    occluded (b, Q, T) bool; depth (b, Q, T) camera z of the point; surface (b, Q).
    """
    b, q = queries.shape[:2]
    t = batch.cam_to_world.shape[1]
    rows, cols = queries.unbind(-1)
    batch_idx = torch.arange(b, device=queries.device)[:, None].expand(b, q)
    xy0 = torch.stack([cols + 0.5, rows + 0.5], dim=-1).float()            # (b, Q, 2)
    z0 = depth0[batch_idx, rows, cols]
    surf = surface0[batch_idx, rows, cols]
    origin0, dirs0 = pixel_rays(xy0[:, None], batch.cam_to_world[:, :1], batch.intrinsics)
    world0 = origin0[:, :, None] + z0[:, None, :, None] * dirs0              # (b, 1, Q, 3)

    # Carry object points with their object: p_obj = R_0^T (X - c_0), X_t = R_t p_obj + c_t.
    slot = (surf - ROOM_SURFACES).clamp_min(0)
    rot = batch.rotations[batch_idx, slot]                                   # (b, Q, T, 3, 3)
    pos = batch.positions[batch_idx, slot]                                   # (b, Q, T, 3)
    rel = world0[:, 0] - pos[:, :, 0]
    local = (rot[:, :, 0] * rel[..., :, None]).sum(-2)                       # R_0^T rel
    moved = (rot * local[:, :, None, None, :]).sum(-1) + pos                 # (b, Q, T, 3)
    on_object = (surf >= ROOM_SURFACES)[:, :, None, None]
    world = torch.where(on_object, moved, world0[:, 0, :, None].expand_as(moved))
    world = einops.rearrange(world, "b Q T c -> b T Q c")
    xy, z = project(world, batch.cam_to_world, batch.intrinsics)            # (b, T, Q, 2), (b, T, Q)

    # Exact depth test: cast a ray through the projected position.
    origin, dirs = pixel_rays(xy, batch.cam_to_world, batch.intrinsics)
    hits = trace(batch, origin, dirs)
    size = batch.intrinsics[0, :2, 2] * 2                                   # [W, H]
    inside = (xy >= 0).all(-1) & (xy < size).all(-1) & (z > 1e-3)
    same = (hits["surface"] == surf[:, None]) & ((hits["t"] - z).abs() <= _DEPTH_TOL * z.abs())
    occluded = ~(inside & same)
    query_points = torch.stack([torch.zeros_like(xy0[..., 0]), xy0[..., 1], xy0[..., 0]], dim=-1)
    return {
        "query_points": query_points,
        "target_points": einops.rearrange(xy, "b T Q xy -> b Q T xy"),
        "occluded": einops.rearrange(occluded, "b T Q -> b Q T"),
        "depth": einops.rearrange(z, "b T Q -> b Q T"),
        "surface": surf,
    }


def object_boxes(ids: torch.Tensor, num_objects: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Tight boxes of each object's id mask.

    ids: (T, H, W) uint8 (0 room, n + 1 object n). Returns boxes (N, T, 4) float32
    [x0, y0, x1, y1] in [0, 1] and present (N, T) bool (object has at least one pixel).
    """
    _, height, width = ids.shape
    slots = torch.arange(1, num_objects + 1, dtype=ids.dtype)
    mask = ids[None] == slots[:, None, None, None]                          # (N, T, H, W)
    cols, rows = mask.any(dim=2), mask.any(dim=3)                           # (N, T, W), (N, T, H)
    present = cols.any(-1)

    def span(hit: torch.Tensor, size: int) -> tuple[torch.Tensor, torch.Tensor]:
        idx = torch.arange(size)
        first = torch.where(hit, idx, size).min(-1).values
        last = torch.where(hit, idx, -1).max(-1).values + 1
        return first.float() / size, last.float() / size

    x0, x1 = span(cols, width)
    y0, y1 = span(rows, height)
    boxes = torch.stack([x0, y0, x1, y1], dim=-1)
    return torch.where(present[..., None], boxes, torch.zeros_like(boxes)), present

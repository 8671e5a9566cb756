"""True optical flow of rendered clips, and the motion clips of the Fig. 3 measurement.

Forward flow of frame tau at a pixel: the surface point the pixel sees in frame tau (its ray
at the rendered depth), carried to frame tau + 1 with its surface (the static room stays put;
a point on object n follows the object's pose: p_obj = R_tau^T (X - c_tau),
X' = R_{tau+1} p_obj + c_{tau+1}) and projected by the camera of frame tau + 1; flow = that
position minus the pixel centre, in pixels ([dx, dy]; x right, y down). The last frame has no
successor; its flow repeats frame T - 2's (so every frame has a map).

  optical_flow(batch, depth, surface) -> (b, T, H, W, 2)
  motion_clip(seed, image_size, num_frames, moving=True) -> video, flow, magnitude, ids
"""

from __future__ import annotations

import torch
from einops import rearrange, repeat

from tasks.synthetic import world
from tasks.synthetic.render import SceneBatch, batch_scenes, render
from tasks.synthetic.scene import ROOM_SURFACES, pixel_grid, pixel_rays, project


def optical_flow(batch: SceneBatch, depth: torch.Tensor, surface: torch.Tensor) -> torch.Tensor:
    """Forward optical flow (b, T, H, W, 2) [dx, dy] in pixels (module docstring).

    batch: the rendered scenes; depth: (b, T, H, W) camera z per pixel (render's 'depth');
    surface: (b, T, H, W) surface index per pixel (render's 'surface': 0-2 room, 3 + n object n).
    """
    b, t, h, w = depth.shape
    if t < 2:
        raise ValueError(f"optical flow needs at least 2 frames, got {t}")
    xy = repeat(pixel_grid(h, w), "P xy -> b T P xy", b=b, T=t)
    origin, dirs = pixel_rays(xy, batch.cam_to_world, batch.intrinsics)    # (b, T, 3), (b, T, P, 3)
    points = origin[:, :, None] + rearrange(depth, "b T H W -> b T (H W)")[..., None] * dirs
    surf = rearrange(surface.long(), "b T H W -> b T (H W)")
    slot = (surf - ROOM_SURFACES).clamp_min(0)                               # object index
    bi = torch.arange(b)[:, None, None].expand_as(slot)
    ti = torch.arange(t)[None, :, None].expand_as(slot)
    nxt = (ti + 1).clamp_max(t - 1)
    rot0, pos0 = batch.rotations[bi, slot, ti], batch.positions[bi, slot, ti]
    rot1, pos1 = batch.rotations[bi, slot, nxt], batch.positions[bi, slot, nxt]
    local = (rot0 * (points - pos0)[..., :, None]).sum(-2)                  # R_tau^T (X - c_tau)
    moved = (rot1 * local[..., None, :]).sum(-1) + pos1
    carried = torch.where((surf >= ROOM_SURFACES)[..., None], moved, points)
    # Project frame tau's carried points with the camera of frame tau + 1.
    cams = batch.cam_to_world[:, (torch.arange(t) + 1).clamp_max(t - 1)]
    xy_next, _ = project(carried, cams, batch.intrinsics)
    flow = xy_next - xy
    flow[:, -1] = flow[:, -2]  # no successor of the last frame: repeat the previous flow
    return rearrange(flow, "b T (H W) xy -> b T H W xy", H=h)


def motion_clip(seed: int, image_size: int = 64, num_frames: int = 17, moving: bool = True,
                num_static: int = 2) -> dict[str, torch.Tensor]:
    """A clip of the synthetic world in which only one object moves: static camera, one moving
    object and `num_static` static ones. moving=False freezes the moving object too (a static
    clip: zero flow everywhere).

    Returns video uint8 (T, H, W, 3), flow float32 (T, H, W, 2) [dx, dy] pixels (forward,
    `optical_flow`), magnitude float32 (T, H, W) = |flow|, ids uint8 (T, H, W) (0 room,
    n + 1 object n; object 0 is the moving one).
    """
    gen = torch.Generator().manual_seed(int(seed))
    room = world.sample_room(gen)
    mover = world.sample_object(gen, room, num_frames, static=not moving, scale=2.0)
    still = [world.sample_object(gen, room, num_frames, static=True) for _ in range(num_static)]
    cam = world.sample_camera(gen, num_frames, moving=False)
    batch = batch_scenes([world.assemble(room, [mover, *still], cam, image_size)])
    out = render(batch, image_size)
    flow = optical_flow(batch, out["depth"], out["surface"])[0].float()
    return {"video": out["video"][0], "flow": flow, "magnitude": flow.norm(dim=-1),
            "ids": out["ids"][0]}

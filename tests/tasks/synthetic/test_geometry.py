"""Geometry of the synthetic world: reprojection, occlusion, boxes, poses, culling."""

import einops
import pytest
import torch

from tasks.synthetic import render, textures, world
from tasks.synthetic.scene import (ROOM_SURFACES, SPHERE, CUBE, axis_angle, intrinsics_for, look_at,
                                   pixel_grid, pixel_rays, project, relative_pose)
from tasks.synthetic.tracks import object_boxes, point_tracks, sample_queries

SIZE, FRAMES = 32, 6


def _scenes(seeds, size=SIZE, frames=FRAMES):
    return [world.random_scene(torch.Generator().manual_seed(s), frames, size) for s in seeds]


def _tracks(scenes, size=SIZE, queries=48):
    out = render.render(scenes, size)
    batch = render.batch_scenes(scenes)
    q = torch.stack([sample_queries(out["ids"][i, 0], queries, torch.Generator().manual_seed(i))
                     for i in range(len(scenes))])
    return out, batch, point_tracks(batch, out["depth"][:, 0], out["surface"][:, 0].long(), q)


def test_reprojection_with_rendered_depth_and_pose_lands_on_track():
    scenes = _scenes([1, 2, 3])
    out, batch, tr = _tracks(scenes)
    checked = 0
    for i, scene in enumerate(scenes):
        c2w = scene.cam_to_world.double()
        k = scene.intrinsics.double()
        y, x = tr["query_points"][i, :, 1].double(), tr["query_points"][i, :, 2].double()
        z = out["depth"][i, 0, y.long(), x.long()].double()      # rendered depth map
        cam = torch.stack([(x - k[0, 2]) / k[0, 0] * z, (y - k[1, 2]) / k[1, 1] * z, z], -1)
        world0 = cam @ c2w[0, :3, :3].T + c2w[0, :3, 3]
        surf = tr["surface"][i]
        for t in range(1, FRAMES):
            pts = world0.clone()
            for n in range(scene.num_objects):   # carry object points with their object's motion
                sel = surf == ROOM_SURFACES + n
                r0, rt = scene.rotations[n, 0].double(), scene.rotations[n, t].double()
                c0, ct = scene.positions[n, 0].double(), scene.positions[n, t].double()
                pts[sel] = (pts[sel] - c0) @ r0 @ rt.T + ct
            cam_t = (pts - c2w[t, :3, 3]) @ c2w[t, :3, :3]
            xy = cam_t[:, :2] / cam_t[:, 2:] * torch.stack([k[0, 0], k[1, 1]]) + k[:2, 2]
            vis = ~tr["occluded"][i, :, t]
            err = (xy - tr["target_points"][i, :, t].double()).norm(dim=-1)[vis]
            assert err.numel() == 0 or err.max() < 0.5
            checked += int(vis.sum())
    assert checked > 100


def test_visible_track_hits_the_same_surface_point():
    scenes = _scenes([4, 5])
    out, batch, tr = _tracks(scenes)
    xy0 = einops.rearrange(tr["query_points"][..., [2, 1]], "b Q xy -> b 1 Q xy")
    o, d = pixel_rays(xy0, batch.cam_to_world[:, :1], batch.intrinsics)
    uvw0 = render.trace(batch, o, d)["uvw"][:, 0]                                  # (b, Q, 3)
    xy = einops.rearrange(tr["target_points"], "b Q T xy -> b T Q xy")
    o, d = pixel_rays(xy, batch.cam_to_world, batch.intrinsics)
    hits = render.trace(batch, o, d)
    vis = einops.rearrange(~tr["occluded"], "b Q T -> b T Q")
    on_object = (tr["surface"] >= ROOM_SURFACES)[:, None].expand_as(vis)
    diff = (hits["uvw"] - uvw0[:, None]).norm(dim=-1)
    assert diff[vis & on_object].max() < 1e-2      # object coordinates in [-1, 1]: 0.5% of its size
    assert diff[vis & ~on_object].max() < 1e-2     # room coordinates: 1 cm (grazing rays)


def test_visibility_flips_when_an_object_passes_in_front():
    gen = torch.Generator().manual_seed(0)
    room = world.sample_room(gen)
    frames = 9
    eye, target = torch.tensor([0.0, -3.0, 1.0]), torch.tensor([0.0, 2.0, 1.0])
    cam = look_at(eye.expand(frames, 3), target.expand(frames, 3), torch.zeros(frames))
    still = torch.eye(3).expand(frames, 3, 3)
    back = world.Object(SPHERE, torch.full((3,), 0.4), world.object_params(gen, textures.STRIPES),
                        target.expand(frames, 3).clone(), still.clone())
    path = torch.stack([torch.linspace(-2.5, 2.5, frames), torch.zeros(frames), torch.ones(frames)], -1)
    front = world.Object(CUBE, torch.full((3,), 0.5), world.object_params(gen, textures.CHECKERS),
                         path, still.clone())
    scene = world.assemble(room, [back, front], cam, SIZE)
    out = render.render([scene], SIZE)
    centre = torch.tensor([[[SIZE // 2, SIZE // 2]]])
    assert int(out["ids"][0, 0, SIZE // 2, SIZE // 2]) == 1
    tr = point_tracks(render.batch_scenes([scene]), out["depth"][:, 0], out["surface"][:, 0].long(), centre)
    occ = tr["occluded"][0, 0]
    assert not occ[0] and not occ[-1] and occ[frames // 2]


def test_boxes_enclose_the_mask_tightly():
    scenes = _scenes([6, 7])
    out = render.render(scenes, SIZE)
    for i, scene in enumerate(scenes):
        boxes, present = object_boxes(out["ids"][i], scene.num_objects)
        for n in range(scene.num_objects):
            for t in range(FRAMES):
                rows, cols = torch.nonzero(out["ids"][i, t] == n + 1, as_tuple=True)
                assert bool(present[n, t]) == (rows.numel() > 0)
                if rows.numel():
                    x0, y0, x1, y1 = (boxes[n, t] * SIZE).round().long().tolist()
                    assert (x0, y0, x1, y1) == (int(cols.min()), int(rows.min()),
                                                int(cols.max()) + 1, int(rows.max()) + 1)


def test_relative_pose_composes_from_consecutive_steps():
    c2w = _scenes([8], frames=7)[0].cam_to_world
    total = torch.eye(4, dtype=torch.float64)
    for t in range(6):
        step = torch.eye(4, dtype=torch.float64)
        step[:3] = relative_pose(c2w, t, t + 1).double()
        total = total @ step
    assert torch.allclose(total[:3].float(), relative_pose(c2w), atol=1e-5)
    # The pose maps last-camera points into first-camera coordinates.
    p_last = torch.tensor([0.3, -0.2, 2.0])
    world_p = c2w[-1, :3, :3] @ p_last + c2w[-1, :3, 3]
    pose = relative_pose(c2w)
    expect = c2w[0, :3, :3].T @ (world_p - c2w[0, :3, 3])
    assert torch.allclose(pose[:, :3] @ p_last + pose[:, 3], expect, atol=1e-5)


@pytest.mark.parametrize("source", ["random", "objects", "appearance", "motion"])
def test_screen_rectangle_culling_matches_dense_tracing(source):
    """Sphere and silhouette rectangles cut no visible pixel (large close objects included)."""
    if source == "random":
        scenes = _scenes([9, 10, 11])
    else:
        from tasks.synthetic import analogs
        scenes = [analogs.get(source).sample(torch.Generator().manual_seed(s), FRAMES, SIZE)[0]
                  for s in range(8)]
    batch = render.batch_scenes(scenes)
    sparse = render.trace_frames(batch, SIZE)
    xy = einops.repeat(pixel_grid(SIZE, SIZE), "P xy -> b T P xy", b=len(scenes), T=FRAMES)
    o, d = pixel_rays(xy, batch.cam_to_world, batch.intrinsics)
    dense = render.trace(batch, o, d)
    assert torch.equal(sparse["surface"], dense["surface"])
    assert torch.equal(sparse["t"], dense["t"])


def test_depth_is_camera_z_of_the_hit_point():
    scene = _scenes([12])[0]
    out = render.render([scene], SIZE)
    batch = render.batch_scenes([scene])
    xy = einops.repeat(pixel_grid(SIZE, SIZE), "P xy -> 1 T P xy", T=FRAMES)
    o, d = pixel_rays(xy, batch.cam_to_world, batch.intrinsics)
    pts = o[:, :, None] + einops.rearrange(out["depth"], "b T H W -> b T (H W) 1") * d
    reproj, z = project(pts, batch.cam_to_world, batch.intrinsics)
    assert torch.allclose(z, einops.rearrange(out["depth"], "b T H W -> b T (H W)"), rtol=1e-4)
    assert (reproj - xy).abs().max() < 1e-3


@pytest.mark.parametrize("angle", [0.0, 0.7, -2.0])
def test_axis_angle_is_a_rotation(angle):
    r = axis_angle(torch.tensor([0.3, -1.0, 0.5]), torch.tensor(angle))
    assert torch.allclose(r @ r.T, torch.eye(3), atol=1e-6)
    assert abs(float(torch.det(r)) - 1) < 1e-5
    assert intrinsics_for(64)[0, 2] == 32


@pytest.mark.parametrize("component", [0.0, -0.0, -1e-13, 1e-13, -5e-12])
def test_a_ray_with_a_vanishing_component_exits_the_room_ahead_of_the_camera(component):
    """A direction component in (-1e-12, 1e-12) once stepped towards the wrong wall: one pixel
    in ~300 clips got a depth of about -1e12 (the oracle's features overflowed float16 with it,
    and its tracking probes diverged on the GPU). Every ray from inside the room exits it at a
    positive, finite distance on the wall it points at."""
    batch = render.batch_scenes(_scenes([0], frames=1))
    origin = (batch.room_lo + batch.room_hi)[:, None] / 2                       # (b, T, 3) centre
    dirs = torch.tensor([[[[component, 0.6, 0.8], [0.6, component, -0.8], [0.8, 0.6, component]]]])
    t, surface, _ = render._room_hit(batch, origin, dirs)
    half = (batch.room_hi - batch.room_lo)[0] / 2
    expect = torch.stack([torch.min(half[1] / 0.6, half[2] / 0.8), torch.min(half[0] / 0.6, half[2] / 0.8),
                          torch.min(half[0] / 0.8, half[1] / 0.6)])
    torch.testing.assert_close(t[0, 0], expect)
    assert surface[0, 0].tolist() == [1 if half[1] / 0.6 < half[2] / 0.8 else 2,
                                      1 if half[0] / 0.6 < half[2] / 0.8 else 0, 1]


def test_rendered_depth_is_positive_and_finite_on_the_clips_that_once_broke_it():
    """Item 87 of the point-track analog's train split (seed 0, 64 x 64 x 17) had a pixel at
    depth -1.4e12 before the fix above."""
    from backbones.oracle import OracleBackbone
    oracle = OracleBackbone("point_tracks", seed=0, image_size=64, num_frames=17)
    out = render.render(render.batch_scenes([oracle._sample("train", 87)[0]]), 64)
    assert torch.isfinite(out["depth"]).all() and (out["depth"] > 0).all()

"""One clip of the synthetic world, as plain tensors, and the geometry to build it.

Conventions (the whole of `tasks/synthetic/` uses them):
  world      right-handed, metres, z up; the floor is z = 0. The room is the axis-aligned
             box [room_lo, room_hi]; the camera and every object stay inside it.
  camera     OpenCV: x right, y down, z forward (optical axis). `cam_to_world` (T, 4, 4)
             maps camera coordinates to world coordinates; its last column is the camera
             centre. Depth is the camera z of a point (metres along the optical axis).
  pixels     x to the right, y down, the centre of the top-left pixel at (0.5, 0.5);
             `intrinsics` K (3, 3) maps camera coordinates to homogeneous pixels.
  objects    each has a shape, half-extents (3,) in its own frame, and per frame a
             position (T, 3) and an object-to-world rotation (T, 3, 3). A surface point p
             in object coordinates sits at R_t p + c_t in frame t.
  surfaces   rows of `surface_params` (S, NUM_PARAMS): 0 floor, 1 walls, 2 ceiling, then
             one row per object (S = 3 + N). Id masks use 0 for the room and n + 1 for
             object n.
"""

from __future__ import annotations

import dataclasses
import math

import torch

# Object shapes. Spheres and ellipsoids share the quadric intersection; cubes and cuboids
# share the slab intersection.
SPHERE, ELLIPSOID, CUBE, CUBOID = range(4)
SHAPE_NAMES = ("sphere", "ellipsoid", "cube", "cuboid")
QUADRIC_SHAPES = (SPHERE, ELLIPSOID)
ROOM_SURFACES = 3


@dataclasses.dataclass
class Scene:
    """Everything needed to render one clip of T frames. Shapes in the module docstring."""

    room_lo: torch.Tensor         # (3,)
    room_hi: torch.Tensor         # (3,)
    surface_params: torch.Tensor  # (3 + N, NUM_PARAMS)
    shapes: torch.Tensor          # (N,) long
    extents: torch.Tensor         # (N, 3) half-extents in metres
    positions: torch.Tensor       # (N, T, 3)
    rotations: torch.Tensor       # (N, T, 3, 3) object-to-world
    cam_to_world: torch.Tensor    # (T, 4, 4)
    intrinsics: torch.Tensor      # (3, 3)

    @property
    def num_frames(self) -> int:
        return self.cam_to_world.shape[0]

    @property
    def num_objects(self) -> int:
        return self.shapes.shape[0]


def intrinsics_for(image_size: int, fov_degrees: float = 60.0) -> torch.Tensor:
    """Pinhole K (3, 3) of a square image_size raster with the given horizontal field of view."""
    f = 0.5 * image_size / math.tan(math.radians(fov_degrees) / 2)
    c = 0.5 * image_size
    return torch.tensor([[f, 0.0, c], [0.0, f, c], [0.0, 0.0, 1.0]])


def axis_angle(axis: torch.Tensor, angle: torch.Tensor) -> torch.Tensor:
    """Rotation matrices (..., 3, 3) from unit axes (..., 3) and angles (...,) in radians (Rodrigues)."""
    axis = axis / axis.norm(dim=-1, keepdim=True).clamp_min(1e-9)
    x, y, z = axis.unbind(-1)
    zero = torch.zeros_like(x)
    k = torch.stack([zero, -z, y, z, zero, -x, -y, x, zero], dim=-1).unflatten(-1, (3, 3))
    s, c = torch.sin(angle)[..., None, None], torch.cos(angle)[..., None, None]
    eye = torch.eye(3, dtype=axis.dtype).expand_as(k)
    return eye + s * k + (1 - c) * (k @ k)


def random_rotation(gen: torch.Generator) -> torch.Tensor:
    """A uniformly random rotation (3, 3): a normalised Gaussian quaternion."""
    w, x, y, z = (lambda q: q / q.norm())(torch.randn(4, generator=gen)).tolist()
    return torch.tensor([
        [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
        [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
        [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)]])


def look_at(eye: torch.Tensor, target: torch.Tensor, roll: torch.Tensor) -> torch.Tensor:
    """Camera-to-world (..., 4, 4) of OpenCV cameras at eye (..., 3) looking at target (..., 3).

    roll (...,) radians turns the camera about its optical axis; roll 0 keeps image rows
    level with the floor (camera y points down in the world).
    """
    forward = target - eye
    forward = forward / forward.norm(dim=-1, keepdim=True)
    up = torch.tensor([0.0, 0.0, 1.0]).expand_as(forward)
    right = torch.cross(forward, up, dim=-1)
    right = right / right.norm(dim=-1, keepdim=True)
    down = torch.cross(forward, right, dim=-1)
    c, s = torch.cos(roll)[..., None], torch.sin(roll)[..., None]
    right, down = c * right + s * down, -s * right + c * down
    pose = torch.zeros(*eye.shape[:-1], 4, 4)
    pose[..., :3, 0], pose[..., :3, 1], pose[..., :3, 2] = right, down, forward
    pose[..., :3, 3] = eye
    pose[..., 3, 3] = 1.0
    return pose


def relative_pose(cam_to_world: torch.Tensor, i: int = 0, j: int = -1) -> torch.Tensor:
    """(3, 4) [R | t] of frame j w.r.t. frame i: inv(cam_to_world[i]) @ cam_to_world[j].

    Maps points from camera-j coordinates into camera-i coordinates (tasks/task.py `pose`).
    cam_to_world: (T, 4, 4).
    """
    a = cam_to_world[i].double()
    b = cam_to_world[j].double()
    return (torch.linalg.inv(a) @ b)[:3].float()


def project(points_world: torch.Tensor, cam_to_world: torch.Tensor,
            intrinsics: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Pixel positions and depths of world points.

    points_world: (..., T, Q, 3); cam_to_world: (..., T, 4, 4); intrinsics: (..., 3, 3).
    Returns xy (..., T, Q, 2) in pixels ([x, y], pixel-centre convention above) and
    depth (..., T, Q) (camera z in metres; <= 0 behind the camera).
    """
    rot = cam_to_world[..., :3, :3]
    centre = cam_to_world[..., None, :3, 3]
    rel = points_world - centre
    # camera coords = R^T (X - C), as an explicit sum over the world axis.
    cam = (rot[..., None, :, :] * rel[..., :, None]).sum(-2)
    z = cam[..., 2]
    k = intrinsics[..., None, None, :, :] if intrinsics.dim() > 2 else intrinsics
    safe_z = torch.where(z.abs() < 1e-9, torch.full_like(z, 1e-9), z)
    x = k[..., 0, 0] * cam[..., 0] / safe_z + k[..., 0, 2]
    y = k[..., 1, 1] * cam[..., 1] / safe_z + k[..., 1, 2]
    return torch.stack([x, y], dim=-1), z


def pixel_rays(xy: torch.Tensor, cam_to_world: torch.Tensor,
               intrinsics: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """World rays through pixel positions, scaled so the ray parameter IS the depth.

    xy: (..., T, P, 2) pixel [x, y]; cam_to_world: (..., T, 4, 4); intrinsics (..., 3, 3).
    Returns origins (..., T, 3) and directions (..., T, P, 3) whose camera z component is 1.
    """
    k = intrinsics[..., None, None, :, :] if intrinsics.dim() > 2 else intrinsics
    dx = (xy[..., 0] - k[..., 0, 2]) / k[..., 0, 0]
    dy = (xy[..., 1] - k[..., 1, 2]) / k[..., 1, 1]
    # R @ [dx, dy, 1] as a sum of scaled columns: no (..., P, 3, 3) temporary.
    rot = cam_to_world[..., None, :3, :3]
    d_world = dx[..., None] * rot[..., 0] + dy[..., None] * rot[..., 1] + rot[..., 2]
    return cam_to_world[..., :3, 3], d_world


def pixel_grid(height: int, width: int) -> torch.Tensor:
    """Pixel-centre positions (H * W, 2) as [x, y], row-major (row = y)."""
    ys, xs = torch.meshgrid(torch.arange(height) + 0.5, torch.arange(width) + 0.5, indexing="ij")
    return torch.stack([xs.reshape(-1), ys.reshape(-1)], dim=-1).float()

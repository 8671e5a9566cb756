"""Random rooms, objects, motions and camera paths: the generative model of the world.

Every sampler takes a `torch.Generator` and draws from it in a fixed order, so a clip is a
pure function of its seed. Analogs (`analogs.py`) call these samplers with some factors
pinned (the label) and the rest random. Conventions are those of `scene.py`.

Layout: the camera stands near the front wall (y < -2) looking into the room; objects live
in the middle region (y in [-1.2, 2.5]) so neither ever contains the other.
"""

from __future__ import annotations

import dataclasses
import math

import torch

from tasks.synthetic import textures
from tasks.synthetic.scene import (CUBE, CUBOID, ELLIPSOID, SPHERE, Scene, axis_angle,
                                   intrinsics_for, look_at, random_rotation)

# Room layouts: (half width x, back wall y, height z). The front wall is at y = -4.
LAYOUTS = ((4.5, 5.0, 3.0), (2.6, 6.0, 3.6))
ROOM_FRONT = -4.0
ROOM_FAMILIES = (textures.CHECKERS, textures.STRIPES, textures.NOISE, textures.BRICKS)


def _uniform(gen: torch.Generator, lo: float, hi: float, shape=()) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(shape, generator=gen)


def _choice(gen: torch.Generator, n: int) -> int:
    return int(torch.randint(n, (), generator=gen))


def random_color(gen: torch.Generator, hue: float | None = None) -> torch.Tensor:
    """A saturated RGB colour (3,); hue in [0, 1) if given, else random."""
    h = float(torch.rand((), generator=gen)) if hue is None else hue % 1.0
    s = float(_uniform(gen, 0.45, 1.0))
    v = float(_uniform(gen, 0.55, 1.0))
    return textures.hsv_to_rgb(torch.tensor(h), torch.tensor(s), torch.tensor(v))


def contrasting_color(gen: torch.Generator, color: torch.Tensor) -> torch.Tensor:
    """A colour far from `color` (3,): darker or lighter, hue shifted."""
    base = 1.0 - color if float(color.mean()) > 0.5 else color * 0.25
    jitter = 0.25 * torch.rand(3, generator=gen)
    return (0.7 * base + jitter).clamp(0, 1)


# ----------------------------------------------------------------------------- room

@dataclasses.dataclass
class Room:
    lo: torch.Tensor      # (3,)
    hi: torch.Tensor      # (3,)
    params: torch.Tensor  # (3, NUM_PARAMS) floor, walls, ceiling


def sample_room(gen: torch.Generator, layout: int | None = None, floor_family: int | None = None,
                wall_family: int | None = None, contrast: float = 1.0) -> Room:
    """A room of a layout in LAYOUTS with floor / wall textures from ROOM_FAMILIES.

    contrast in [0, 1] scales each texture's second colour towards its first: the
    object-centred analogs use a quiet room so that the object, not the room, carries the
    texture cues in a 64 x 64 frame (same random draws whatever the contrast)."""
    layout = _choice(gen, len(LAYOUTS)) if layout is None else layout
    half_w, back, height = LAYOUTS[layout]
    jitter = _uniform(gen, 0.92, 1.08, (3,))
    lo = torch.tensor([-half_w * float(jitter[0]), ROOM_FRONT, 0.0])
    hi = torch.tensor([half_w * float(jitter[0]), back * float(jitter[1]), height * float(jitter[2])])
    floor_family = ROOM_FAMILIES[_choice(gen, 4)] if floor_family is None else floor_family
    wall_family = ROOM_FAMILIES[_choice(gen, 4)] if wall_family is None else wall_family
    rows = []
    for family, freq_range in ((floor_family, (0.8, 1.6)), (wall_family, (1.0, 2.2)),
                               (textures.SOLID, (1.0, 1.0))):
        a = random_color(gen) * 0.85
        b = a + contrast * (contrasting_color(gen, a) - a)
        rows.append(textures.make_params(family, float(_uniform(gen, *freq_range)), a, b, gen))
    return Room(lo, hi, torch.stack(rows))


# ----------------------------------------------------------------------------- objects

@dataclasses.dataclass
class Object:
    shape: int
    extent: torch.Tensor     # (3,)
    params: torch.Tensor     # (NUM_PARAMS,)
    positions: torch.Tensor  # (T, 3)
    rotations: torch.Tensor  # (T, 3, 3)


def object_extent(gen: torch.Generator, shape: int, scale: float = 1.0) -> torch.Tensor:
    """Half-extents (3,) in metres of a shape, randomly sized (times `scale`)."""
    size = float(_uniform(gen, 0.28, 0.5)) * scale
    if shape == SPHERE:
        return torch.full((3,), size)
    if shape == CUBE:
        return torch.full((3,), size * 0.8)
    if shape == ELLIPSOID:
        return torch.tensor([1.7, 0.75, 0.6]) * size
    if shape == CUBOID:
        return torch.tensor([1.5, 0.8, 0.4]) * size
    raise ValueError(f"unknown shape {shape}; use one of scene.SPHERE, ELLIPSOID, CUBE, CUBOID")


def object_params(gen: torch.Generator, family: int | None = None, hue: float | None = None,
                  freq: float | None = None) -> torch.Tensor:
    """A texture row for an object: family from OBJECT_FAMILIES, colours and frequency random."""
    family = textures.OBJECT_FAMILIES[_choice(gen, 6)] if family is None else family
    a = random_color(gen, hue)
    freq = float(_uniform(gen, 1.5, 3.0)) if freq is None else freq
    return textures.make_params(family, freq, a, contrasting_color(gen, a), gen)


def smooth_path(gen: torch.Generator, start: torch.Tensor, num_frames: int, travel: float,
                wobble: float = 0.15) -> torch.Tensor:
    """A smooth random path (T, 3) from `start`: a straight drift of length up to `travel`
    plus a half-sine wobble, so velocity is continuous."""
    u = torch.linspace(0, 1, num_frames)[:, None]
    drift = torch.randn(3, generator=gen)
    drift = drift / drift.norm() * travel * float(torch.rand((), generator=gen))
    bend = torch.randn(3, generator=gen) * wobble
    return start + u * drift + torch.sin(math.pi * u) * bend


def spin(gen: torch.Generator, num_frames: int, total_angle: float,
         initial: torch.Tensor | None = None, axis: torch.Tensor | None = None) -> torch.Tensor:
    """Rotations (T, 3, 3): `initial` then a constant-rate turn of total_angle about `axis`."""
    initial = random_rotation(gen) if initial is None else initial
    axis = torch.randn(3, generator=gen) if axis is None else axis
    angles = torch.linspace(0, total_angle, num_frames)
    return axis_angle(axis.expand(num_frames, 3), angles) @ initial


def clamp_inside(room: Room, positions: torch.Tensor, extent: torch.Tensor) -> torch.Tensor:
    """Keeps an object's bounding sphere inside the room and out of the camera zone."""
    r = float(extent.max())
    lo = torch.maximum(room.lo + r, torch.tensor([-1e9, -1.2, -1e9]))
    hi = room.hi - r
    return torch.maximum(torch.minimum(positions, hi), lo)


def sample_object(gen: torch.Generator, room: Room, num_frames: int, *, shape: int | None = None,
                  family: int | None = None, hue: float | None = None, freq: float | None = None,
                  static: bool | None = None, scale: float = 1.0,
                  centre: torch.Tensor | None = None) -> Object:
    """A random object inside `room`; any factor can be pinned. Static objects never move."""
    shape = _choice(gen, 4) if shape is None else shape
    extent = object_extent(gen, shape, scale)
    params = object_params(gen, family, hue, freq)
    static = bool(torch.rand((), generator=gen) < 0.3) if static is None else static
    if centre is None:
        half_w = float(room.hi[0]) - 0.6
        centre = torch.stack([_uniform(gen, -min(2.2, half_w), min(2.2, half_w)),
                              _uniform(gen, -1.0, 2.5), torch.tensor(0.0)])
        on_floor = bool(torch.rand((), generator=gen) < 0.6)
        lift = 0.0 if on_floor else float(_uniform(gen, 0.2, 1.2))
        centre[2] = float(extent.max()) + lift
    if static:
        positions = centre.expand(num_frames, 3).clone()
        rotations = random_rotation(gen).expand(num_frames, 3, 3).clone()
    else:
        positions = smooth_path(gen, centre, num_frames, travel=1.2)
        rotations = spin(gen, num_frames, float(_uniform(gen, -2.0, 2.0)))
    return Object(shape, extent, params, clamp_inside(room, positions, extent), rotations)


# ----------------------------------------------------------------------------- camera

def sample_camera(gen: torch.Generator, num_frames: int, *, moving: bool = True,
                  travel: float = 0.8, turn: float = 0.6) -> torch.Tensor:
    """Camera-to-world (T, 4, 4) of a smooth 6-DoF path: the eye drifts up to `travel`
    metres, the look-at target up to `turn` metres, the roll up to 0.15 rad."""
    eye = torch.stack([_uniform(gen, -0.8, 0.8), _uniform(gen, -3.4, -2.7), _uniform(gen, 1.0, 1.7)])
    target = torch.stack([_uniform(gen, -1.0, 1.0), _uniform(gen, 0.5, 2.0), _uniform(gen, 0.3, 0.9)])
    roll0 = float(_uniform(gen, -0.08, 0.08))
    if not moving:
        return look_at(eye, target, torch.tensor(roll0)).expand(num_frames, 4, 4).clone()
    eyes = smooth_path(gen, eye, num_frames, travel, wobble=0.1)
    eyes[:, 1] = eyes[:, 1].clamp(max=-2.3)  # never walk into the object region
    targets = smooth_path(gen, target, num_frames, turn, wobble=0.2)
    roll = roll0 + torch.linspace(0, 1, num_frames) * float(_uniform(gen, -0.15, 0.15))
    return look_at(eyes, targets, roll)


# ----------------------------------------------------------------------------- assembly

def assemble(room: Room, objects: list[Object], cam_to_world: torch.Tensor, image_size: int) -> Scene:
    """Packs a room, objects and a camera path into a Scene (object n -> id n + 1)."""
    t = cam_to_world.shape[0]
    n = len(objects)
    return Scene(
        room_lo=room.lo, room_hi=room.hi,
        surface_params=torch.cat([room.params] + [o.params[None] for o in objects]),
        shapes=torch.tensor([o.shape for o in objects], dtype=torch.long),
        extents=torch.stack([o.extent for o in objects]) if n else torch.zeros(0, 3),
        positions=torch.stack([o.positions for o in objects]) if n else torch.zeros(0, t, 3),
        rotations=torch.stack([o.rotations for o in objects]) if n else torch.zeros(0, t, 3, 3),
        cam_to_world=cam_to_world, intrinsics=intrinsics_for(image_size))


def random_scene(gen: torch.Generator, num_frames: int = 17, image_size: int = 64,
                 num_objects: int | None = None, moving_camera: bool = True) -> Scene:
    """A generic clip: random room, 1-8 objects (some static), smoothly moving camera."""
    room = sample_room(gen)
    n = 1 + _choice(gen, 8) if num_objects is None else num_objects
    objects = [sample_object(gen, room, num_frames) for _ in range(n)]
    return assemble(room, objects, sample_camera(gen, num_frames, moving=moving_camera), image_size)

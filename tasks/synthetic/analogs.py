"""The ten task analogs: which factor of the world is the label, and what each item holds.

Each analog samples a scene (and a label) from a per-clip generator, then `render_items`
renders a batch of them and builds the item keys of tasks/task.py:

  objects       ImageNet     image; label = object shape x texture family (24)
  scenes        Places365    image; label = room layout x floor x wall material (32)
  finegrained   iNat2018     image; label = stripe frequency x hue shift (40), Zipf-unbalanced
  appearance    K400         clip; label = the actor's appearance (24), each with its own coarse motion
  appearance_xl K700         clip; as above with two palettes (48 classes)
  motion        SSv2         clip; label = motion pattern only (11); appearance random
  depth         ScanNet      clip + per-frame metric depth
  pose          RealEstate10K clip + pose of the last frame w.r.t. the first (metres)
  point_tracks  MOVi-E       clip + 64 frame-0 queries, tracks, occlusion (TAP-Vid)
  box_tracks    Waymo        clip + up to 25 box tracks (first-frame area >= 0.5%)
"""

from __future__ import annotations

import dataclasses
import math
from typing import Callable, Sequence

import numpy as np
import torch

from tasks.synthetic import textures, world
from tasks.synthetic.render import batch_scenes, render
from tasks.synthetic.scene import CUBOID, Scene, axis_angle, random_rotation, relative_pose
from tasks.synthetic.tracks import object_boxes, point_tracks, sample_queries

NUM_QUERIES = 64
MAX_BOXES = 25
MIN_BOX_AREA = 0.005
MOTION_CLASSES = ("left", "right", "up", "down", "approach", "recede", "turn_cw", "turn_ccw",
                  "left_and_back", "right_and_back", "behind_occluder")


@dataclasses.dataclass(frozen=True)
class Analog:
    """name; real: the task it stands for; kind: task kind in tasks/kinds.py;
    image: single frames (T = 1); num_classes for classification; sample:
    (gen, num_frames, image_size) -> (Scene, label or -1)."""

    name: str
    real: str
    kind: str
    image: bool
    num_classes: int
    sample: Callable[[torch.Generator, int, int], tuple[Scene, int]]


# Object-centred analogs: the labelled object is large in frame (a third to a half of the
# frame's width), in a quiet room, with coarse texture (stripes, cells and dots of 4+
# pixels at 64 x 64), so that one frame shows its shape and texture family clearly.
HERO_DISTANCE = (2.0, 2.5)
HERO_FREQ = (1.3, 2.0)
ROOM_CONTRAST = 0.3


def _hero_centre(cam: torch.Tensor, gen: torch.Generator, distance=HERO_DISTANCE, spread=0.25):
    """A point in front of the frame-0 camera, near the optical axis (3,)."""
    d = float(world._uniform(gen, *distance))
    right, down, fwd = cam[0, :3, 0], cam[0, :3, 1], cam[0, :3, 2]
    off = world._uniform(gen, -spread, spread, (2,))
    return cam[0, :3, 3] + d * fwd + off[0] * right + off[1] * down


def _small_distractors(gen, room, num_frames, max_count=2):
    count = world._choice(gen, max_count + 1)
    return [world.sample_object(gen, room, num_frames, scale=0.45, static=True) for _ in range(count)]


def _static_hero(gen, room, cam, num_frames, shape, family=None, hue=None, freq=None, scale=1.35):
    centre = _hero_centre(cam, gen)
    freq = float(world._uniform(gen, *HERO_FREQ)) if freq is None else freq
    hero = world.sample_object(gen, room, num_frames, shape=shape, family=family, hue=hue,
                               freq=freq, static=True, scale=scale, centre=centre)
    return hero


# ----------------------------------------------------------------------------- image analogs

def _objects(gen, num_frames, image_size):
    label = world._choice(gen, 24)
    room = world.sample_room(gen, contrast=ROOM_CONTRAST)
    cam = world.sample_camera(gen, num_frames, moving=False)
    hero = _static_hero(gen, room, cam, num_frames, shape=label // 6, family=textures.OBJECT_FAMILIES[label % 6])
    return world.assemble(room, _small_distractors(gen, room, num_frames) + [hero], cam, image_size), label


def _scenes(gen, num_frames, image_size):
    label = world._choice(gen, 32)
    room = world.sample_room(gen, layout=label // 16, floor_family=world.ROOM_FAMILIES[(label // 4) % 4],
                             wall_family=world.ROOM_FAMILIES[label % 4])
    cam = world.sample_camera(gen, num_frames, moving=False)
    objects = [world.sample_object(gen, room, num_frames, scale=0.8) for _ in range(world._choice(gen, 4))]
    return world.assemble(room, objects, cam, image_size), label


_FINE_FREQS, _FINE_HUES = 8, 5
# Zipf-like class prior: a long tail, like iNat2018.
_FINE_PRIOR = torch.tensor([1.0 / (1 + k) ** 0.8 for k in range(_FINE_FREQS * _FINE_HUES)], dtype=torch.float64)


def _finegrained(gen, num_frames, image_size):
    label = int(torch.multinomial(_FINE_PRIOR, 1, generator=gen))
    freq = 1.2 + 0.3 * (label // _FINE_HUES) + float(world._uniform(gen, -0.05, 0.05))
    hue = 0.5 + 0.06 * (label % _FINE_HUES) + float(world._uniform(gen, -0.01, 0.01))
    room = world.sample_room(gen)
    cam = world.sample_camera(gen, num_frames, moving=False)
    hero = _static_hero(gen, room, cam, num_frames, shape=world._choice(gen, 4),
                        family=textures.STRIPES, hue=hue, freq=freq, scale=1.4)
    return world.assemble(room, _small_distractors(gen, room, num_frames) + [hero], cam, image_size), label


# ----------------------------------------------------------------------------- clip analogs

def _coarse_motion(gen, centre, motion: int, num_frames: int):
    """Positions (T, 3) and rotations (T, 3, 3) of four coarse actions: 0 slide sideways,
    1 hop up and down, 2 spin in place, 3 circle."""
    u = torch.linspace(0, 1, num_frames)[:, None]
    rest = random_rotation(gen)
    still = rest.expand(num_frames, 3, 3)
    if motion == 0:
        side = float(world._uniform(gen, 0.8, 1.3)) * (1 if bool(torch.rand((), generator=gen) < 0.5) else -1)
        return centre + (u - 0.5) * torch.tensor([side, 0.0, 0.0]), still
    if motion == 1:
        return centre + torch.tensor([0.0, 0.0, 0.6]) * torch.abs(torch.sin(2 * math.pi * u)), still
    if motion == 2:
        return centre.expand(num_frames, 3), world.spin(gen, num_frames, 3.0, rest, torch.tensor([0.0, 0.0, 1.0]))
    ang = 2 * math.pi * u[:, 0]
    return centre + 0.5 * torch.stack([torch.cos(ang) - 1, torch.sin(ang), torch.zeros_like(ang)], -1), still


def _appearance(num_classes: int):
    def sample(gen, num_frames, image_size):
        label = world._choice(gen, num_classes)
        look = label % 24
        palette = label // 24  # K700 analog: warm or cool actors double the classes
        hue = None if num_classes <= 24 else float(world._uniform(gen, -0.06, 0.1) if palette == 0
                                                   else world._uniform(gen, 0.45, 0.65))
        room = world.sample_room(gen, contrast=ROOM_CONTRAST)
        cam = world.sample_camera(gen, num_frames, travel=0.3, turn=0.3)
        hero = _static_hero(gen, room, cam, num_frames, shape=look // 6,
                            family=textures.OBJECT_FAMILIES[look % 6], hue=hue, scale=1.2)
        hero.positions, hero.rotations = _coarse_motion(gen, hero.positions[0], label % 4, num_frames)
        others = _small_distractors(gen, room, num_frames)
        return world.assemble(room, others + [hero], cam, image_size), label
    return sample


def _motion(gen, num_frames, image_size):
    """SSv2 analog: random appearance and placement; only the trajectory tells the class.
    Every path is centred on a random mid point so no frame's position gives it away,
    and a pillar stands in every clip (in front of or behind the actor's plane)."""
    label = world._choice(gen, len(MOTION_CLASSES))
    name = MOTION_CLASSES[label]
    room = world.sample_room(gen)
    cam = world.sample_camera(gen, num_frames, travel=0.1, turn=0.1)
    right, down, fwd = cam[0, :3, 0], cam[0, :3, 1], cam[0, :3, 2]
    family = textures.OBJECT_FAMILIES[1 + world._choice(gen, 5)]  # textured, so turns show
    actor = world.sample_object(gen, room, num_frames, family=family, static=True, scale=1.1,
                                centre=_hero_centre(cam, gen, distance=(2.8, 3.3), spread=0.4))
    mid = actor.positions[0]
    u = torch.linspace(0, 1, num_frames)[:, None]
    step = float(world._uniform(gen, 0.9, 1.3))
    sign = {"left": -1.0, "right": 1.0, "up": -1.0, "down": 1.0, "approach": -1.0, "recede": 1.0,
            "left_and_back": -1.0, "right_and_back": 1.0}.get(name, 1.0)
    if name == "behind_occluder":
        sign = 1.0 if bool(torch.rand((), generator=gen) < 0.5) else -1.0
    axis = {"up": down, "down": down, "approach": fwd, "recede": fwd}.get(name, right)
    if name in ("left", "right", "up", "down", "approach", "recede", "behind_occluder"):
        actor.positions = mid + (u - 0.5) * step * sign * axis
    elif name.endswith("_and_back"):
        actor.positions = mid + (torch.sin(math.pi * u) - 0.5) * step * sign * axis
    else:
        turn = 2.2 if name == "turn_cw" else -2.2
        angles = torch.linspace(0, turn, num_frames)
        actor.rotations = axis_angle(fwd.expand(num_frames, 3), angles) @ actor.rotations[0]
    # The pillar: tall thin cuboid, in front of the actor for the occluder class, else anywhere.
    front = name == "behind_occluder" or bool(torch.rand((), generator=gen) < 0.5)
    shift = 0.0 if name == "behind_occluder" else float(world._uniform(gen, -1.0, 1.0))
    depth = -0.9 if front else 0.9
    base = mid + shift * right + depth * fwd
    base[2] = 0.0
    height = float(world._uniform(gen, 1.6, 2.2))
    pillar = world.Object(CUBOID, torch.tensor([0.14, 0.14, height / 2]),
                          world.object_params(gen, family=textures.SOLID),
                          (base + torch.tensor([0.0, 0.0, height / 2])).expand(num_frames, 3).clone(),
                          torch.eye(3).expand(num_frames, 3, 3).clone())
    return world.assemble(room, [pillar, actor], cam, image_size), label


def _generic(travel=0.8, turn=0.6):
    def sample(gen, num_frames, image_size):
        room = world.sample_room(gen)
        objects = [world.sample_object(gen, room, num_frames) for _ in range(1 + world._choice(gen, 8))]
        cam = world.sample_camera(gen, num_frames, travel=travel, turn=turn)
        return world.assemble(room, objects, cam, image_size), -1
    return sample


ANALOGS: dict[str, Analog] = {a.name: a for a in (
    Analog("objects", "imagenet", "classification", True, 24, _objects),
    Analog("scenes", "places365", "classification", True, 32, _scenes),
    Analog("finegrained", "inat2018", "classification", True, _FINE_FREQS * _FINE_HUES, _finegrained),
    Analog("appearance", "k400", "classification", False, 24, _appearance(24)),
    Analog("appearance_xl", "k700", "classification", False, 48, _appearance(48)),
    Analog("motion", "ssv2", "classification", False, len(MOTION_CLASSES), _motion),
    Analog("depth", "scannet", "depth", False, 0, _generic()),
    Analog("pose", "realestate10k", "camera_pose", False, 0, _generic(travel=1.0, turn=0.9)),
    Analog("point_tracks", "movi_e", "point_tracks", False, 0, _generic()),
    Analog("box_tracks", "waymo", "box_tracks", False, 0, _generic()),
)}


def get(name: str) -> Analog:
    if name not in ANALOGS:
        raise KeyError(f"unknown synthetic analog '{name}'; choose one of {', '.join(ANALOGS)}")
    return ANALOGS[name]


# ----------------------------------------------------------------------------- items

def render_items(analog: Analog, gens: Sequence[torch.Generator], image_size: int = 64,
                 num_frames: int = 17, device: str = "cpu") -> list[dict[str, np.ndarray]]:
    """Samples and renders one item per generator (numpy arrays with tasks/task.py keys,
    `index` excepted, which the dataset adds)."""
    frames = 1 if analog.image else num_frames
    samples = [analog.sample(g, frames, image_size) for g in gens]
    scenes = [s for s, _ in samples]
    batch = batch_scenes(scenes, device)
    out = render(batch, image_size)
    items = [{"video": out["video"][i].numpy()} for i in range(len(scenes))]
    if analog.kind == "classification":
        for item, (_, label) in zip(items, samples):
            item["label"] = np.int64(label)
    elif analog.kind == "depth":
        for i, item in enumerate(items):
            item["depth"] = out["depth"][i].numpy()
            item["intrinsics"] = scenes[i].intrinsics.numpy()
    elif analog.kind == "camera_pose":
        for i, item in enumerate(items):
            item["pose"] = relative_pose(scenes[i].cam_to_world).numpy()
            item["intrinsics"] = scenes[i].intrinsics.numpy()
    elif analog.kind == "point_tracks":
        queries = torch.stack([sample_queries(out["ids"][i, 0], NUM_QUERIES, g) for i, g in enumerate(gens)])
        tr = point_tracks(batch, out["depth"][:, 0].to(device), out["surface"][:, 0].long().to(device),
                          queries.to(device))
        for i, item in enumerate(items):
            item["query_points"] = tr["query_points"][i].cpu().numpy()
            item["target_points"] = tr["target_points"][i].cpu().numpy()
            item["occluded"] = tr["occluded"][i].cpu().numpy()
    elif analog.kind == "box_tracks":
        for i, item in enumerate(items):
            boxes, present = object_boxes(out["ids"][i], scenes[i].num_objects)
            area0 = (boxes[:, 0, 2] - boxes[:, 0, 0]) * (boxes[:, 0, 3] - boxes[:, 0, 1])
            keep = torch.nonzero(present[:, 0] & (area0 >= MIN_BOX_AREA)).flatten()[:MAX_BOXES]
            padded = torch.zeros(MAX_BOXES, frames, 4)
            valid = torch.zeros(MAX_BOXES, frames, dtype=torch.bool)
            padded[: len(keep)], valid[: len(keep)] = boxes[keep], present[keep]
            item["boxes"], item["box_valid"] = padded.numpy(), valid.numpy()
    return items

"""The oracle backbone: "activations" made of the synthetic world's own ground truth.

A positive control for the readouts. Given features that hold the answer in plain form, a
readout that works must reach its target (results/controls/); one that does not is broken,
whatever the probed model knows. Nothing here is learned.

Where the ground truth comes from (the decision): the oracle RE-RENDERS each clip from its
seed. An item of analog A is a pure function of (A, split, dataset seed, index)
(tasks/synthetic/dataset.py), and the engine hands every backbone per-example `seeds` =
index + NOISE_STRIDE * noise_seed (runners/extract.noise_seeds), so the oracle recovers the
index, finds the split by rendering frame 0 of that index in each split until it equals the
clip it was given, renders the matching scene with its per-pixel buffers, and checks the whole
video byte for byte before it trusts that scene. So no engine hook is needed, the feature
cache works unchanged (the fingerprint names the analog and its data parameters), and a clip
that is not the scene the oracle thinks it is raises instead of silently pairing the wrong
ground truth with a clip. The price: one extra render per clip (plus a frame-0 render per
split tried), paid once per cache entry.

Token grid: pixels (T, H, W) -> (t', H / p, W / p) with p = `patch` (8, the tokenizer's spatial
stride); each token carries its p x p pixels' fields as channels ("space to depth",
channel order (p1 p2 field)). Time, `time_grid`:
  'latent'  t' = 1 + (T - 1) / 4, token k holds frame 4k: the last frame of the 4 that the
            tokenizer's latent k covers (latent 0 = frame 0, latent k = frames 4k-3..4k), so
            the readout's 5 -> 17 resampling is exercised as with WALT;
  'frames'  t' = T, every frame (the resampling is the identity): the oracle of the head alone.

Fields per task kind (per pixel unless said; coordinates in metres):
  classification  one-hot label (K,) at every token (not per pixel)
  depth           depth along the optical axis (1)
  camera_pose     the pixel's surface point in frame-0 camera coordinates (3), and per token
                  the frame's pose w.r.t. frame 0, inv(c2w_0) @ c2w_t row-major [R | t] (12)
  point / box     one-hot surface (3 room surfaces + MAX_OBJECTS objects), the surface point
  tracks          in that surface's own frame (object frame for objects, world for the room;
                  constant along a track), and the pixel's centre (x, y) / (W, H) (2)
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import pathlib
from typing import Sequence

import einops
import torch
import torch.nn.functional as F
from torch import Tensor

from backbones.base import NoiseLevel, resolve_blocks
from tasks.synthetic import analogs
from tasks.synthetic.dataset import SPLITS, clip_generator, source_fingerprint
from tasks.synthetic.render import batch_scenes, render
from tasks.synthetic.scene import ROOM_SURFACES, Scene, pixel_grid, pixel_rays

# runners/extract.NOISE_STRIDE: the engine's seeds are index + NOISE_STRIDE * noise_seed.
NOISE_STRIDE = 1_000_003
MAX_OBJECTS = 8          # analogs._generic draws 1..8 objects
TIME_GRIDS = ("latent", "frames")
LATENT_STRIDE = 4        # the tokenizer's temporal downsampling


def latent_frames(num_frames: int) -> list[int]:
    """Frame carried by each latent-grid token: [0, 4, 8, ...] (latent k covers 4k-3..4k)."""
    if num_frames == 1:
        return [0]
    if (num_frames - 1) % LATENT_STRIDE:
        raise ValueError(f"time_grid='latent' needs T = 1 + 4k frames (the tokenizer's grid); "
                         f"got T = {num_frames}; use time_grid='frames'")
    return list(range(0, num_frames, LATENT_STRIDE))


def space_to_depth(x: Tensor, patch: int) -> Tensor:
    """(b, T, H, W, c) -> (b, T, H / p, W / p, p * p * c), channels ordered (p1 p2 c)."""
    return einops.rearrange(x, "b T (h p1) (w p2) c -> b T h w (p1 p2 c)", p1=patch, p2=patch)


def _first_frame(scene: Scene) -> Scene:
    return dataclasses.replace(scene, positions=scene.positions[:, :1],
                               rotations=scene.rotations[:, :1], cam_to_world=scene.cam_to_world[:1])


def _surface_points(batch, depth: Tensor) -> Tensor:
    """World point of every pixel (b, T, H, W, 3) from depth (b, T, H, W)."""
    b, t, h, w = depth.shape
    xy = einops.repeat(pixel_grid(h, w), "P xy -> b T P xy", b=b, T=t)
    origin, dirs = pixel_rays(xy, batch.cam_to_world, batch.intrinsics)   # (b, T, 3), (b, T, P, 3)
    points = origin[:, :, None] + einops.rearrange(depth, "b T H W -> b T (H W) 1") * dirs
    return einops.rearrange(points, "b T (H W) c -> b T H W c", H=h)


def _to_frame0_camera(points: Tensor, cam_to_world: Tensor) -> Tensor:
    """World points (b, T, H, W, 3) -> frame-0 camera coordinates R0^T (X - c0)."""
    rot, centre = cam_to_world[:, 0, :3, :3], cam_to_world[:, 0, :3, 3]
    return torch.einsum("bji,bthwj->bthwi", rot, points - centre[:, None, None, None])


def _surface_local(batch, points: Tensor, surface: Tensor) -> Tensor:
    """Each pixel's point in its surface's own frame (b, T, H, W, 3): R_t^T (X - c_t) of the
    object it lies on (constant while the object moves), the world point on the room."""
    slot = (surface - ROOM_SURFACES).clamp_min(0)                              # (b, T, H, W)
    b_idx = torch.arange(slot.shape[0])[:, None, None, None]
    t_idx = torch.arange(slot.shape[1])[None, :, None, None]
    rot = batch.rotations[b_idx, slot, t_idx]                                  # (b, T, H, W, 3, 3)
    pos = batch.positions[b_idx, slot, t_idx]                                  # (b, T, H, W, 3)
    local = torch.einsum("bthwji,bthwj->bthwi", rot, points - pos)
    return torch.where((surface >= ROOM_SURFACES)[..., None], local, points)


class OracleBackbone:
    """Ground-truth features of one synthetic analog (module docstring).

    analog: the analog's name (tasks/synthetic/analogs.ANALOGS); seed, image_size, num_frames:
      the dataset parameters of the task being probed (they must match, or every clip is
      refused). patch: token size in pixels (8 = WALT's grid). time_grid: 'latent' | 'frames'.
    features(video uint8 (b, T, H, W, 3), t ignored, blocks (only 0 exists), seeds (b,) long,
    required) -> {0: (b, t', H / p, W / p, feature_dim) float32}.
    """

    family, variant, num_blocks = "oracle", "video", 0

    def __init__(self, analog: str, *, seed: int = 0, image_size: int = 64, num_frames: int = 17,
                 patch: int = 8, time_grid: str = "latent"):
        self.analog = analogs.get(analog)
        if time_grid not in TIME_GRIDS:
            raise ValueError(f"time_grid must be one of {TIME_GRIDS}; got {time_grid!r}")
        if image_size % patch:
            raise ValueError(f"image_size {image_size} is not a multiple of patch {patch}")
        self.seed, self.image_size, self.patch, self.time_grid = seed, image_size, patch, time_grid
        self.num_frames = 1 if self.analog.image else num_frames
        self.frames = (latent_frames(self.num_frames) if time_grid == "latent"
                       else list(range(self.num_frames)))
        self.name = f"oracle-{self.analog.name}"
        self.size = f"p{patch}-{time_grid}"
        self.feature_dim = self._dim()

    def _dim(self) -> int:
        per_pixel = self.patch * self.patch
        kind = self.analog.kind
        if kind == "classification":
            return self.analog.num_classes
        if kind == "depth":
            return per_pixel
        if kind == "camera_pose":
            return 3 * per_pixel + 12
        return (ROOM_SURFACES + MAX_OBJECTS + 3 + 2) * per_pixel

    @property
    def fingerprint(self) -> str:
        blob = json.dumps({"family": self.family, "analog": self.analog.name, "seed": self.seed,
                           "image_size": self.image_size, "num_frames": self.num_frames,
                           "patch": self.patch, "time_grid": self.time_grid,
                           "world": source_fingerprint(),
                           "oracle": hashlib.sha256(pathlib.Path(__file__).read_bytes()).hexdigest()},
                          sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def noise_level(self, t) -> NoiseLevel | None:
        return None

    # ---- the ground truth of the given clips ----------------------------------------------

    def _sample(self, split: str, index: int) -> tuple[Scene, int]:
        gen = clip_generator(self.analog.name, split, self.seed, index)
        return self.analog.sample(gen, self.num_frames, self.image_size)

    def _find_scenes(self, video: Tensor, index: Tensor) -> tuple[list[Scene], list[int]]:
        """The scene and label of each clip, found by its index and verified against its bytes."""
        scenes, labels = [], []
        for clip, i in zip(video, index.tolist()):
            for split in SPLITS:
                scene, label = self._sample(split, i)
                frame0 = render([_first_frame(scene)], self.image_size)["video"][0, 0]
                if torch.equal(frame0, clip[0]):
                    scenes.append(scene)
                    labels.append(label)
                    break
            else:
                raise ValueError(
                    f"oracle-{self.analog.name}: clip of index {i} is not item {i} of any split "
                    f"({', '.join(SPLITS)}) of analog '{self.analog.name}' with seed={self.seed}, "
                    f"image_size={self.image_size}, num_frames={self.num_frames}; give the oracle "
                    f"the task's dataset parameters")
        return scenes, labels

    @torch.no_grad()
    def features(self, video: Tensor, t, blocks: Sequence[int],
                 seeds: Tensor | None = None) -> dict[int, Tensor]:
        blocks = resolve_blocks(blocks, self.num_blocks)
        if seeds is None:
            raise ValueError("the oracle needs per-example seeds (item index + NOISE_STRIDE * "
                             "noise_seed, as runners/extract.noise_seeds gives) to find each clip")
        if video.ndim != 5 or video.shape[1:] != (self.num_frames, self.image_size, self.image_size, 3):
            raise ValueError(f"oracle-{self.analog.name}: video {tuple(video.shape)} is not "
                             f"(b, {self.num_frames}, {self.image_size}, {self.image_size}, 3)")
        video = video.cpu()
        scenes, labels = self._find_scenes(video, seeds.cpu().long() % NOISE_STRIDE)
        batch = batch_scenes(scenes)
        out = render(batch, self.image_size)
        if not torch.equal(out["video"], video):
            raise ValueError(f"oracle-{self.analog.name}: re-rendered clips differ from the given "
                             f"ones after frame 0; the renderer is not deterministic here")
        feats = self._fields(batch, out, torch.tensor(labels))[:, self.frames]
        return {block: feats.float() for block in blocks}

    def _fields(self, batch, out: dict, labels: Tensor) -> Tensor:
        """(b, T, h, w, feature_dim) for the analog's kind."""
        kind, p = self.analog.kind, self.patch
        b, t, height, width = out["depth"].shape
        h, w = height // p, width // p
        if kind == "classification":
            onehot = F.one_hot(labels, self.analog.num_classes).float()
            return einops.repeat(onehot, "b k -> b T h w k", T=t, h=h, w=w)
        if kind == "depth":
            return space_to_depth(out["depth"][..., None], p)
        points = _surface_points(batch, out["depth"])
        if kind == "camera_pose":
            c2w = batch.cam_to_world.double()
            rel = (torch.linalg.inv(c2w[:, :1]) @ c2w)[:, :, :3].float()      # (b, T, 3, 4)
            pose = einops.repeat(rel, "b T i j -> b T h w (i j)", h=h, w=w)
            cam0 = space_to_depth(_to_frame0_camera(points, batch.cam_to_world), p)
            return torch.cat([cam0, pose], dim=-1)
        surface = out["surface"].long()
        if int(surface.max()) >= ROOM_SURFACES + MAX_OBJECTS:
            raise ValueError(f"a scene has more than MAX_OBJECTS = {MAX_OBJECTS} objects")
        onehot = F.one_hot(surface, ROOM_SURFACES + MAX_OBJECTS).float()
        local = _surface_local(batch, points, surface)
        xy = einops.repeat(pixel_grid(height, width) / torch.tensor([width, height]),
                           "(H W) xy -> b T H W xy", b=b, T=t, H=height)
        return space_to_depth(torch.cat([onehot, local, xy], dim=-1), p)

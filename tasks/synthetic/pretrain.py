"""Unlabelled pretraining streams from the synthetic world: clips, and single frames of clips.

The mix draws each clip's sampler from the analogs (generic moving scenes most often, plus
the object-centred, scene, appearance-action and motion-action samplers) so pretraining
sees every factor the probes later ask about. Labels are dropped. Cached like the analogs.
"""

from __future__ import annotations

import dataclasses
import functools

import torch

from tasks.synthetic import analogs
from tasks.synthetic.dataset import ItemDataset, cached_dataset_dict, clip_generator
from tasks.synthetic.render import render
from tasks.synthetic.scene import Scene

# (analog whose sampler is used, weight).
MIX = (("depth", 0.4), ("pose", 0.1), ("motion", 0.15), ("appearance_xl", 0.15),
       ("objects", 0.1), ("scenes", 0.1))


def at_frames(scene: Scene, frames: slice) -> Scene:
    """The scene restricted to a range of frames."""
    return dataclasses.replace(scene, positions=scene.positions[:, frames],
                               rotations=scene.rotations[:, frames],
                               cam_to_world=scene.cam_to_world[frames])


def sample_mixed(gen: torch.Generator, num_frames: int, image_size: int) -> Scene:
    """One unlabelled scene of num_frames frames from the MIX of analog samplers."""
    weights = torch.tensor([w for _, w in MIX], dtype=torch.float64)
    name = MIX[int(torch.multinomial(weights, 1, generator=gen))][0]
    scene, _ = analogs.get(name).sample(gen, num_frames, image_size)
    if scene.num_frames != num_frames:  # image samplers give one frame: hold it still
        scene = dataclasses.replace(
            scene, positions=scene.positions.expand(-1, num_frames, -1).clone(),
            rotations=scene.rotations.expand(-1, num_frames, -1, -1).clone(),
            cam_to_world=scene.cam_to_world.expand(num_frames, -1, -1).clone())
    return scene


def render_chunk(indices, *, name: str, seed: int, image_size: int, num_frames: int,
                 images: bool, device: str = "cpu") -> list[dict]:
    """{'video'} items; for images, one uniformly drawn frame of each clip (T = 1)."""
    scenes = []
    for i in indices:
        gen = clip_generator(name, "train", seed, i)
        scene = sample_mixed(gen, num_frames, image_size)
        if images:
            t = int(torch.randint(num_frames, (), generator=gen))
            scene = at_frames(scene, slice(t, t + 1))
        scenes.append(scene)
    video = render(scenes, image_size, device)["video"]
    return [{"video": v.numpy()} for v in video]


def _stream(name: str, count: int, image_size: int, num_frames: int, seed: int,
            cache_dir: str | None, num_proc: int | None, images: bool, device: str) -> ItemDataset:
    params = {"image_size": image_size, "num_frames": num_frames, "seed": seed, "images": images}
    make = lambda split, dev: functools.partial(render_chunk, name=name, seed=seed,  # noqa: E731
                                                image_size=image_size, num_frames=num_frames,
                                                images=images, device=dev)
    dd = cached_dataset_dict(name, params, {"train": count}, make, cache_dir, num_proc, device)
    return ItemDataset(dd["train"])


def pretrain_clips(num_clips: int, image_size: int = 64, num_frames: int = 17, seed: int = 0,
                   cache_dir: str | None = None, num_proc: int | None = None,
                   device: str = "cpu") -> ItemDataset:
    """Torch dataset of {'video': uint8 (T, H, W, 3), 'index'} unlabelled clips.

    num_proc, device: as `builders.analog_datasets` (None: one process per usable core for
    large splits; 'cpu', 'cuda' or 'auto', part of the cache key)."""
    return _stream("pretrain_clips", num_clips, image_size, num_frames, seed, cache_dir, num_proc,
                   False, device)


def pretrain_images(num_images: int, image_size: int = 64, num_frames: int = 17, seed: int = 0,
                    cache_dir: str | None = None, num_proc: int | None = None,
                    device: str = "cpu") -> ItemDataset:
    """Torch dataset of {'video': uint8 (1, H, W, 3), 'index'}: one random frame of each of
    num_images clips of the same world (the image version of `pretrain_clips`)."""
    return _stream("pretrain_images", num_images, image_size, num_frames, seed, cache_dir, num_proc,
                   True, device)

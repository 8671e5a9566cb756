"""The ten synthetic analogs as Tasks (through tasks/kinds.py), and their cached datasets.

`analog_datasets(name, ...)` renders (once) and loads a DatasetDict and returns
{'train', 'val', 'test'} -> ItemDataset (train fits the readout, val selects cells, test
reports them; seeded apart by their names, dataset.clip_generator); `synthetic_task(name, ...)` wraps it into the Task of the
analog's kind. The named builders (`objects_task`, ..., `box_tracks_task`) are what gin
registers (runners/configurables.py).
"""

from __future__ import annotations

import functools

import torch

from tasks import kinds
from tasks.synthetic import analogs
from tasks.synthetic.dataset import SPLITS, ItemDataset, cached_dataset_dict, clip_generator
from tasks.task import Task


def render_chunk(indices, *, name: str, split: str, seed: int, image_size: int,
                 num_frames: int, device: str = "cpu") -> list[dict]:
    """Items of analog `name` for the given indices of a split (a picklable worker function)."""
    gens = [clip_generator(name, split, seed, i) for i in indices]
    return analogs.render_items(analogs.get(name), gens, image_size, num_frames, device)


def analog_datasets(name: str, *, cache_dir: str | None = None, num_train: int = 2000,
                    num_val: int = 500, image_size: int = 64, num_frames: int = 17, seed: int = 0,
                    num_proc: int | None = None, device: str = "cpu",
                    num_test: int | None = None) -> dict[str, ItemDataset]:
    """{'train', 'val', 'test'} -> ItemDataset of analog `name` (rendered on first use, then
    cached; a split of size 0 is left out).

    num_test: size of the held-out test split; None = num_val.
    num_proc: CPU render processes (None: one per usable core, given 64 clips each);
    device: render device, 'cpu', 'cuda' or 'auto' (cuda when available). The device is
    part of the cache key (GPU bits may differ); num_proc never changes the bytes.
    """
    analog = analogs.get(name)
    if image_size % 8:
        raise ValueError(f"image_size must be a multiple of 8 (the tokenizer's stride); got {image_size}")
    params = {"image_size": image_size, "num_frames": 1 if analog.image else num_frames, "seed": seed}
    make = lambda split, dev: functools.partial(render_chunk, name=name, split=split, seed=seed,  # noqa: E731
                                                image_size=image_size, num_frames=num_frames, device=dev)
    num_test = num_val if num_test is None else num_test
    if min(num_train, num_val, num_test) < 0:
        raise ValueError(f"split sizes must be >= 0; got train={num_train}, val={num_val}, test={num_test}")
    dd = cached_dataset_dict(name, params, {"train": num_train, "val": num_val, "test": num_test},
                             make, cache_dir, num_proc, device)
    return {split: ItemDataset(dd[hf_name]) for split, hf_name in SPLITS.items() if hf_name in dd}


def synthetic_task(name: str, *, cache_dir: str | None = None, num_train: int = 2000,
                   num_val: int = 500, image_size: int = 64, num_frames: int = 17, seed: int = 0,
                   num_proc: int | None = None, device: str = "cpu",
                   head_kwargs: dict | None = None, make_head=None, num_test: int | None = None,
                   task_kwargs: dict | None = None) -> Task:
    """The Task of analog `name` (see analogs.ANALOGS), named 'synthetic_<name>'; data
    arguments as `analog_datasets`; head_kwargs / make_head as the task kind (tasks/kinds.py):
    None keeps the kind's default head, e.g. `SyntheticObjects.make_head = @LinearReadout`;
    task_kwargs: further keyword arguments of the kind's constructor (e.g.
    {'visibility_rule': 'visibility'} for point tracks)."""
    analog = analogs.get(name)
    data = analog_datasets(name, cache_dir=cache_dir, num_train=num_train, num_val=num_val,
                           image_size=image_size, num_frames=num_frames, seed=seed, num_proc=num_proc,
                           device=device, num_test=num_test)
    task_name = f"synthetic_{name}"
    extra = dict(task_kwargs or {})
    if analog.kind == "classification":
        return kinds.classification(task_name, data, analog.num_classes, image_task=analog.image,
                                    num_frames=num_frames, head_kwargs=head_kwargs, make_head=make_head,
                                    **extra)
    if analog.kind == "depth":
        return kinds.depth(task_name, data, image_size=image_size, num_frames=num_frames,
                           head_kwargs=head_kwargs, make_head=make_head, **extra)
    if analog.kind == "camera_pose":
        return kinds.camera_pose(task_name, data, head_kwargs=head_kwargs, make_head=make_head,
                                 **extra)
    if analog.kind == "point_tracks":
        return kinds.point_tracks(task_name, data, image_size=image_size, num_frames=num_frames,
                                  head_kwargs=head_kwargs, make_head=make_head, **extra)
    if analog.kind == "box_tracks":
        return kinds.box_tracks(task_name, data, num_frames=num_frames, head_kwargs=head_kwargs,
                                make_head=make_head, **extra)
    raise ValueError(f"analog '{name}' has unknown kind '{analog.kind}'")


def _builder(name: str):
    def build(cache_dir: str | None = None, num_train: int = 2000, num_val: int = 500,
              image_size: int = 64, num_frames: int = 17, seed: int = 0,
              num_proc: int | None = None, device: str = "cpu", head_kwargs: dict | None = None,
              make_head=None, num_test: int | None = None,
              task_kwargs: dict | None = None) -> Task:
        return synthetic_task(name, cache_dir=cache_dir, num_train=num_train, num_val=num_val,
                              image_size=image_size, num_frames=num_frames, seed=seed,
                              num_proc=num_proc, device=device, head_kwargs=head_kwargs,
                              make_head=make_head, num_test=num_test, task_kwargs=task_kwargs)
    build.__name__ = f"{name}_task"
    build.__doc__ = (f"Task of the synthetic '{name}' analog ({analogs.get(name).real} stand-in); "
                     "arguments as `synthetic_task`.")
    return build


objects_task = _builder("objects")
scenes_task = _builder("scenes")
finegrained_task = _builder("finegrained")
appearance_task = _builder("appearance")
appearance_xl_task = _builder("appearance_xl")
motion_task = _builder("motion")
depth_task = _builder("depth")
pose_task = _builder("pose")
point_tracks_task = _builder("point_tracks")
box_tracks_task = _builder("box_tracks")

BUILDERS = {name: globals()[f"{name}_task"] for name in analogs.ANALOGS}

"""Spatial preprocessing of images and clips (torchvision transforms v2, uint8 in, uint8 out).

Paper App. D.1: training images get the inception crop (random resized crop, area 8-100%,
aspect 3/4-4/3) and a random horizontal flip; evaluation images are resized so the short side
is 256 and centre-cropped (224 for a 224 model). For another model resolution `size` the
evaluation resize keeps the same ratio: short side round(size * 256 / 224), crop `size`.

Clips (Kinetics, SSv2; the paper does not spell this out) follow the V-JEPA probe recipe:
training takes one random resized crop (area 30-100%, aspect 3/4-4/3) for the whole clip and
flips it unless the labels depend on left/right (SSv2); evaluation is the image recipe applied
to every frame.
"""

from __future__ import annotations

import torch
from torchvision.transforms import v2

EVAL_RESIZE_RATIO = 256 / 224


def eval_resize(size: int) -> int:
    """Short side before the centre crop: 256 for size 224, the same ratio otherwise."""
    return round(size * EVAL_RESIZE_RATIO)


def image_transform(size: int, train: bool) -> v2.Transform:
    """uint8 (3, H, W) -> uint8 (3, size, size): inception crop + flip, or resize + centre crop."""
    if train:
        return v2.Compose([
            v2.RandomResizedCrop(size, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3), antialias=True),
            v2.RandomHorizontalFlip(),
        ])
    return v2.Compose([v2.Resize(eval_resize(size), antialias=True), v2.CenterCrop(size)])


def clip_transform(size: int, train: bool, flip: bool = True) -> v2.Transform:
    """uint8 (T, 3, H, W) -> uint8 (T, 3, size, size); one set of random parameters per clip.

    flip: allow the random horizontal flip in training (False for SSv2, whose classes such as
    'pushing something from left to right' change meaning under a flip).
    """
    if train:
        steps = [v2.RandomResizedCrop(size, scale=(0.3, 1.0), ratio=(3 / 4, 4 / 3), antialias=True)]
        if flip:
            steps.append(v2.RandomHorizontalFlip())
        return v2.Compose(steps)
    return v2.Compose([v2.Resize(eval_resize(size), antialias=True), v2.CenterCrop(size)])


def apply_to_clip(transform: v2.Transform, frames: torch.Tensor) -> torch.Tensor:
    """Applies `transform` with the same random parameters to every frame of (T, 3, H, W)."""
    from torchvision import tv_tensors

    # Wrapping as a Video tells v2 that the leading axis is time, not independent images.
    return transform(tv_tensors.Video(frames)).as_subclass(torch.Tensor)

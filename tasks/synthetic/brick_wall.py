"""The brick-wall probe of the paper's Fig. 4: a freely moving brick wall, a frozen region,
and inside it a subset of pixels that keeps moving.

The camera pans along a brick wall (so the whole wall moves); the `frozen` rectangle shows
frame 0's pixels in every frame, except the `moving` rectangle inside it, whose frame-0
content slides sideways by `shift` pixels per frame (wrapping inside the rectangle). An
image model sees every frozen-region frame as the same image; a video model can tell the
moving subset from the frozen surround only through time.
"""

from __future__ import annotations

import torch

from tasks.synthetic import textures, world
from tasks.synthetic.render import render
from tasks.synthetic.scene import look_at


def brick_wall_clip(image_size: int = 64, num_frames: int = 17, seed: int = 0, shift: int = 1,
                    frozen: tuple[float, float, float, float] = (0.2, 0.2, 0.8, 0.8),
                    moving: tuple[float, float, float, float] = (0.35, 0.35, 0.65, 0.65)) -> dict:
    """Returns video uint8 (T, H, W, 3), frozen_mask and moving_mask bool (H, W).

    frozen, moving: [x0, y0, x1, y1] in [0, 1] of the frame (moving inside frozen).
    """
    gen = torch.Generator().manual_seed(seed)
    room = world.sample_room(gen, layout=0, wall_family=textures.BRICKS)
    brick, mortar = torch.tensor([0.62, 0.25, 0.18]), torch.tensor([0.8, 0.78, 0.72])
    room.params[1] = textures.make_params(textures.BRICKS, 3.0, brick, mortar, gen)
    # Facing the back wall from 2 m, panning 0.4 m to the right over the clip.
    u = torch.linspace(0, 1, num_frames)[:, None]
    back = float(room.hi[1])
    eye = torch.tensor([-0.2, back - 2.0, 1.5]) + u * torch.tensor([0.4, 0.0, 0.0])
    cam = look_at(eye, eye + torch.tensor([0.0, 2.0, 0.0]), torch.zeros(num_frames))
    video = render([world.assemble(room, [], cam, image_size)], image_size)["video"][0]

    def rect(box):
        x0, y0, x1, y1 = (round(v * image_size) for v in box)
        mask = torch.zeros(image_size, image_size, dtype=torch.bool)
        mask[y0:y1, x0:x1] = True
        return mask, (x0, y0, x1, y1)

    frozen_mask, _ = rect(frozen)
    moving_mask, (x0, y0, x1, y1) = rect(moving)
    if bool((moving_mask & ~frozen_mask).any()):
        raise ValueError(f"the moving rectangle {moving} must lie inside the frozen one {frozen}")
    first = video[0]
    out = video.clone()
    for t in range(num_frames):
        out[t][frozen_mask] = first[frozen_mask]
        out[t, y0:y1, x0:x1] = torch.roll(first[y0:y1, x0:x1], shifts=shift * t, dims=1)
    return {"video": out, "frozen_mask": frozen_mask, "moving_mask": moving_mask}

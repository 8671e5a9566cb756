"""Pretraining data: clips held in memory, checked once, and batches that are a pure function of
(seed, step).

Every batch is drawn by a generator seeded from (seed, stage salt, step) over the *global* batch;
each DDP rank takes its contiguous slice. Hence (a) a resumed run draws exactly the batches an
uninterrupted one would, with no sampler state to save, and (b) the global batch does not
depend on the number of processes.

Diffusion batches (I-WALT vs V-WALT, paper section 3.3): each step picks the same clip indices,
frame indices, timesteps and noise for both variants. A batch slot holds either a clip (the
latents of the whole clip) or an image stack: `t` frames sampled from that slot's clip, each
encoded alone as an image (1 frame -> 1 latent frame) and stacked along the latent time axis,
flagged `independent_frames` so WALT lets no attention cross its frames. V-WALT fills a slot
with an image stack with probability `image_fraction` (joint image + video training); I-WALT
fills every slot with one. Both variants thus see the same clips and the same number of latent
tokens (the model's pixels) per step.
"""

from __future__ import annotations

import hashlib
from typing import Iterable, Mapping

import numpy as np
import torch
from einops import rearrange
from torch.utils.data import DataLoader

# Salts keep the streams of the two stages (and of data vs noise) independent.
SALT_TOKENIZER, SALT_DIFFUSION = 1, 2


def step_generator(seed: int, salt: int, step: int, device="cpu") -> torch.Generator:
    """A generator whose state depends only on (seed, salt, step).

    On CUDA the batch is drawn on the GPU itself: no host-to-device copy, so no per-step sync
    (a resumed run reproduces the uninterrupted one on the same device type).
    """
    g = torch.Generator(device=device)
    g.manual_seed((seed * 1_000_003 + salt * 7_919 + step * 104_729) % (2 ** 63 - 1))
    return g


def rank_slice(batch_size: int, rank: int, world_size: int) -> slice:
    """This rank's contiguous share of a global batch (the batch must split evenly)."""
    if batch_size % world_size:
        raise ValueError(f"batch_size {batch_size} does not split over {world_size} processes; "
                         f"use a multiple of {world_size}")
    per = batch_size // world_size
    return slice(rank * per, (rank + 1) * per)


def check_clip_shape(num_frames: int, height: int, width: int, *, expected: tuple[int, int, int] | None = None,
                     where: str = "dataset") -> None:
    """Raises ValueError unless the tokenizer can take clips of this shape.

    The causal tokenizer encodes the first frame alone and then groups of 4 (T = 1 + 4k) and
    downsamples space by 8 (H, W multiples of 8). `expected` = (T, H, W) a model was built for.
    """
    if (num_frames - 1) % 4 or num_frames < 1:
        raise ValueError(f"{where}: clips have {num_frames} frames, but the tokenizer needs 1 + 4k "
                         f"frames (1, 5, 9, 13, 17, ...); resample or crop the clips (e.g. to 17)")
    if height % 8 or width % 8:
        raise ValueError(f"{where}: frames are {height} x {width}, but the tokenizer needs height and "
                         f"width divisible by 8; resize the clips (e.g. image_size=64)")
    if expected is not None and (num_frames, height, width) != tuple(expected):
        raise ValueError(f"{where}: clips are {num_frames} x {height} x {width} (T x H x W), but the run is "
                         f"configured for {expected[0]} x {expected[1]} x {expected[2]}; set "
                         f"Pretrain.num_frames / Pretrain.image_size to match, or change the data")


def _collate(items):
    return torch.stack([torch.as_tensor(np.asarray(it["video"])) for it in items])


def load_clips(dataset, *, num_frames: int, image_size: int, num_workers: int = 0,
               where: str = "dataset") -> torch.Tensor:
    """Reads every item's 'video' into one uint8 tensor (N, T, H, W, 3), checking shape and dtype.

    dataset: a torch-style dataset of item dicts (tasks/task.py keys; only 'video' is used).
    num_workers > 0 renders / decodes in parallel worker processes.
    """
    n = len(dataset)
    if n == 0:
        raise ValueError(f"{where} is empty")
    if isinstance(getattr(dataset, "videos", None), np.ndarray):  # already one array (SyntheticClips)
        clips = torch.from_numpy(np.ascontiguousarray(dataset.videos))
        if clips.dtype != torch.uint8 or clips.ndim != 5 or clips.shape[-1] != 3:
            raise ValueError(f"{where}: videos must be uint8 (N, T, H, W, 3), got {clips.dtype} {tuple(clips.shape)}")
        check_clip_shape(*clips.shape[1:4], expected=(num_frames, image_size, image_size), where=where)
        return clips
    first = torch.as_tensor(np.asarray(dataset[0]["video"]))
    if first.dtype != torch.uint8 or first.ndim != 4 or first.shape[-1] != 3:
        raise ValueError(f"{where}: item['video'] must be uint8 (T, H, W, 3), got {first.dtype} "
                         f"{tuple(first.shape)}")
    check_clip_shape(*first.shape[:3], expected=(num_frames, image_size, image_size), where=where)
    loader = DataLoader(dataset, batch_size=32, num_workers=num_workers, collate_fn=_collate,
                        persistent_workers=False)
    out = torch.empty((n, *first.shape), dtype=torch.uint8)
    i = 0
    for batch in loader:
        if tuple(batch.shape[1:]) != tuple(first.shape):
            raise ValueError(f"{where}: items have different shapes ({tuple(first.shape)} and "
                             f"{tuple(batch.shape[1:])}); a pretraining dataset needs one clip shape")
        out[i:i + len(batch)] = batch
        i += len(batch)
    return out


def fingerprint_clips(clips: torch.Tensor) -> str:
    """sha256 (16 hex) of the clip tensor's bytes: proves two runs trained on identical data."""
    h = hashlib.sha256()
    h.update(str(tuple(clips.shape)).encode())
    h.update(clips.contiguous().cpu().numpy().tobytes())
    return h.hexdigest()[:16]


def tokenizer_batch(clips: torch.Tensor, *, seed: int, step: int, batch_size: int, rank: int = 0,
                    world_size: int = 1, augment: bool = False) -> torch.Tensor:
    """This rank's share of step `step`'s clips: uint8 (b, T, H, W, 3), on the clips' device.

    augment: each clip is mirrored left-right with probability 1/2 and played backwards with
    probability 1/2 (coins drawn after the indices, so the indices do not depend on it). Both
    keep the world's statistics (the synthetic camera and objects move both ways) and cost one
    gather on the device.
    """
    g = step_generator(seed, SALT_TOKENIZER, step, clips.device)
    idx = torch.randint(len(clips), (batch_size,), generator=g, device=clips.device)
    sl = rank_slice(batch_size, rank, world_size)
    out = clips[idx[sl]]
    if augment:
        coins = torch.rand((batch_size, 2), generator=g, device=clips.device)[sl] < 0.5
        flip_w = coins[:, 0].view(-1, 1, 1, 1, 1)
        reverse = coins[:, 1].view(-1, 1, 1, 1, 1)
        out = torch.where(flip_w, out.flip(3), out)          # (b, T, H, W, 3): W is axis 3
        out = torch.where(reverse, out.flip(1), out)         # T is axis 1
    return out


class LatentBank:
    """Tokenized training data: clip latents and per-frame image latents, on one device.

    clip_latents: (N, z, t, h, w) normalised latents of each whole clip.
    frame_latents: (N, T, z, h, w) normalised latents of each frame encoded alone as an image.
    """

    def __init__(self, clip_latents: torch.Tensor, frame_latents: torch.Tensor):
        if clip_latents.shape[0] != frame_latents.shape[0]:
            raise ValueError("clip and frame latents cover different numbers of clips")
        self.clip_latents = clip_latents
        self.frame_latents = frame_latents

    @property
    def latent_shape(self) -> tuple[int, int, int]:
        return tuple(self.clip_latents.shape[2:])

    @classmethod
    @torch.no_grad()
    def encode(cls, tokenizer, clips: torch.Tensor, *, device, chunk: int = 64,
               mirrored: bool = False) -> "LatentBank":
        """Encodes uint8 clips (N, T, H, W, 3) with `tokenizer.encode` (normalised latents).

        mirrored: also encode every clip mirrored left-right, as clips N..2N-1 of the bank (the
        augmentation of the diffusion stage: the tokenizer is not mirror-equivariant, so the
        mirrored latents are encoded, not flipped). Encoded once; batches then index 2N clips.
        """
        from walt.training import uint8_to_unit
        clip_lat, frame_lat = [], []
        parts = [(i, False) for i in range(0, len(clips), chunk)]
        if mirrored:
            parts += [(i, True) for i in range(0, len(clips), chunk)]
        for i, mirror in parts:
            part = clips[i:i + chunk].to(device)                          # (b, T, H, W, 3)
            if mirror:
                part = part.flip(3)                                       # W is axis 3
            video = uint8_to_unit(part)                                   # (b, 3, T, H, W)
            clip_lat.append(tokenizer.encode(video).float())              # (b, z, t, h, w)
            # Each frame an image: the one per-frame encoder path, shared with the probe
            # (backbones/walt.py, video_route='frames'), so I-WALT is probed on its own kind of latent.
            z = tokenizer.encode_frames(video).float()                    # (b, z, T, h, w)
            frame_lat.append(rearrange(z, "b z T h w -> b T z h w"))
        return cls(torch.cat(clip_lat), torch.cat(frame_lat))

    def batch(self, *, variant: str, seed: int, step: int, batch_size: int, image_fraction: float,
              num_timesteps: int, rank: int = 0, world_size: int = 1) -> dict:
        """Step `step`'s diffusion batch (this rank's share) for `variant` ('video' | 'image').

        Every random draw is made for both variants in the same order, so the two runs share
        clips, frames, timesteps, noise and self-conditioning coins; only which latents fill
        the slots differs: V-WALT makes a slot an image stack with probability image_fraction,
        I-WALT makes every slot one.
        Returns {'z0': (b, z, t, h, w), 't': (b,) long, 'noise': like z0,
        'independent_frames': (b,) bool, 'self_cond_coin': float in [0, 1)}.
        """
        dev = self.clip_latents.device
        g = step_generator(seed, SALT_DIFFUSION, step, dev)
        n, T = self.frame_latents.shape[:2]
        tl = self.latent_shape[0]
        clip_idx = torch.randint(n, (batch_size,), generator=g, device=dev)
        frame_idx = torch.randint(T, (batch_size, tl), generator=g, device=dev)
        stack_coin = torch.rand((batch_size,), generator=g, device=dev)
        t = torch.randint(num_timesteps, (batch_size,), generator=g, device=dev)
        noise = torch.randn((batch_size, *self.clip_latents.shape[1:]), generator=g, device=dev)
        # The step's one scalar coin comes from the host, so reading it costs no device sync.
        coin_self_cond = float(torch.rand((), generator=step_generator(seed, SALT_DIFFUSION, step)))
        stack = torch.ones_like(stack_coin, dtype=torch.bool) if variant == "image" else stack_coin < image_fraction
        sl = rank_slice(batch_size, rank, world_size)
        ci, fi, stack = clip_idx[sl], frame_idx[sl], stack[sl]
        # (b, tl) frames of each slot's clip, each an independent image latent.
        images = rearrange(self.frame_latents[ci[:, None], fi], "b t z h w -> b z t h w")
        z0 = torch.where(stack.view(-1, 1, 1, 1, 1), images, self.clip_latents[ci])
        return {"z0": z0.contiguous(), "t": t[sl], "noise": noise[sl],
                "independent_frames": stack, "self_cond_coin": coin_self_cond}


def datasets_from(spec: Mapping[str, object] | object, split: str):
    """Accepts a dataset, or a mapping split -> dataset (a Task's `datasets`), and returns one."""
    if isinstance(spec, Mapping):
        if split not in spec:
            raise KeyError(f"pretraining data has no split '{split}'; it has {', '.join(spec)}")
        return spec[split]
    return spec


def iter_unit_batches(clips: torch.Tensor, device, chunk: int = 32) -> Iterable[torch.Tensor]:
    """(b, 3, T, H, W) in [-1, 1] chunks of uint8 clips (N, T, H, W, 3), moved to `device`."""
    from walt.training import uint8_to_unit
    for i in range(0, len(clips), chunk):
        yield uint8_to_unit(clips[i:i + chunk].to(device))

"""Tiny data and settings shared by the pretraining tests (CPU, seconds)."""

from __future__ import annotations

import numpy as np
import torch

from runners.pretrain import Pretrain


class MovingSquares(torch.utils.data.Dataset):
    """Clips of one bright square moving on a dark background: uint8 (T, H, W, 3)."""

    def __init__(self, n: int, num_frames: int = 5, size: int = 16, seed: int = 0):
        self.n, self.T, self.size, self.seed = n, num_frames, size, seed

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        rng = np.random.default_rng(self.seed * 1000 + i)
        video = np.zeros((self.T, self.size, self.size, 3), np.uint8)
        y, x = rng.integers(0, self.size // 2, 2)
        dy, dx = rng.integers(-1, 2, 2)
        colour = rng.integers(64, 256, 3)
        for t in range(self.T):
            yy, xx = (y + dy * t) % (self.size - 4), (x + dx * t) % (self.size - 4)
            video[t, yy:yy + 4, xx:xx + 4] = colour
        return {"video": video, "index": i}


def tiny_config(**overrides) -> Pretrain:
    base = dict(train_data=MovingSquares(12), val_data=MovingSquares(4, seed=1), num_frames=5,
                image_size=16, steps=6, batch_size=4, lr=1e-3, warmup=2, checkpoint_every=3,
                fractions=(0.5, 1.0), log_every=1, num_samples=1, sample_steps=2, stats_clips=8, eval_clips=4,
                tokenizer_size="tiny", walt_size="tiny", precision="fp32")
    base.update(overrides)
    return Pretrain(**base)


def run_settings(out_dir, seed: int = 0):
    from runners.settings import Run
    return Run(output_dir=str(out_dir), seed=seed, device="cpu")

"""The synthetic pretraining stream as a dataset: generic clips of the procedural world.

`SyntheticClips` samples `random_scene`s (tasks/synthetic/world.py: a random room, 1-8
objects, a moving camera) from one seed and renders them with tasks/synthetic/render.py, on
the GPU when one is given (the renderer is batched torch). The rendered clips are cached as one
.npy per (count, size, frames, seed) in `cache_dir`, written atomically, so the three stages of
a pretraining job (tokenizer, I-WALT, V-WALT) render the data once.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch


class SyntheticClips(torch.utils.data.Dataset):
    """num_clips clips {'video': uint8 (num_frames, image_size, image_size, 3), 'index'}.

    seed: clip i is a function of (seed, i) only (its own generator), so two datasets with
      different seeds are disjoint draws (train vs held-out).
    device: where to render ('auto' = CUDA when available); batch: clips per render call;
    workers: processes sampling scenes (0 or 1: in this process).
    cache_dir: folder for the rendered array (None: render in memory, no cache).
    """

    def __init__(self, num_clips: int = 1024, image_size: int = 64, num_frames: int = 17, seed: int = 0,
                 device: str = "auto", batch: int = 64, workers: int = 0,
                 cache_dir: str | None = "cache/pretrain_clips"):
        self.num_clips, self.image_size, self.num_frames, self.seed = num_clips, image_size, num_frames, seed
        self.device = ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device
        self.batch, self.workers, self.cache_dir = batch, workers, cache_dir
        self._videos = None

    def _scenes(self, idx: range) -> list:
        from tasks.synthetic.world import random_scene
        return [random_scene(torch.Generator().manual_seed(self.seed * 1_000_003 + i),
                             num_frames=self.num_frames, image_size=self.image_size) for i in idx]

    def _render(self) -> np.ndarray:
        from tasks.synthetic.render import render

        out = np.empty((self.num_clips, self.num_frames, self.image_size, self.image_size, 3), np.uint8)
        chunks = [range(s, min(self.num_clips, s + self.batch)) for s in range(0, self.num_clips, self.batch)]
        # Scene sampling is per-clip Python (CPU): spread it over processes; rendering is batched
        # torch on self.device, in this process.
        pool = None
        if self.workers > 1 and len(chunks) > 1:
            import concurrent.futures
            import multiprocessing
            pool = concurrent.futures.ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("fork"))
            scene_lists = pool.map(self._scenes, chunks)
        else:
            scene_lists = map(self._scenes, chunks)
        try:
            for idx, scenes in zip(chunks, scene_lists):
                out[idx.start:idx.stop] = render(scenes, self.image_size, device=self.device)["video"].numpy()
        finally:
            if pool is not None:
                pool.shutdown()
        return out

    @property
    def videos(self) -> np.ndarray:
        if self._videos is None:
            path = None
            if self.cache_dir:
                name = f"clips_n{self.num_clips}_s{self.image_size}_t{self.num_frames}_seed{self.seed}.npy"
                path = Path(self.cache_dir).expanduser() / name
            if path is not None and path.is_file():
                self._videos = np.load(path, mmap_mode="r")
            else:
                self._videos = self._render()
                if path is not None:
                    path.parent.mkdir(parents=True, exist_ok=True)
                    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.npy")
                    np.save(tmp, self._videos)
                    os.replace(tmp, path)
        return self._videos

    def __len__(self) -> int:
        return self.num_clips

    def __getitem__(self, i: int) -> dict:
        return {"video": np.asarray(self.videos[i]), "index": i}

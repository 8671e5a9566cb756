"""Point tracking: TAP-Vid pickles for evaluation, Kubric MOVi-E tracks for training.

Evaluation (paper App. D.5; TAP-Vid 'first' query mode). A TAP-Vid pickle, loaded only from the
path the user gives (a pickle can run code when loaded: only open files you trust):
  * DAVIS / Perception Test style: dict video_name -> {video uint8 (T, H, W, 3),
    points float (N, T, 2) [x, y] in [0, 1], occluded bool (N, T)};
  * Kinetics style: a list of such dicts whose video is a list of JPEG bytes per frame.
The first 17 frames at stride 4 are taken (frames 0, 4, ..., 64; a shorter video repeats its
last frame), resized to S x S (TAP-Vid resizes the whole frame, no crop). Each track's query is
its first visible frame in the clip; tracks never visible there have no query and are dropped.
A video keeps `num_points` tracks: a fixed (index-seeded) subset when it has more, the tracks
repeated in order when it has fewer. A video with no visible track is skipped (`dataset.skipped`).

Training (Kubric MOVi-E): a folder of `.npz` files (video uint8 (T, H, W, 3), target_points
float (N, T, 2) [x, y] pixels of that raster, occluded bool (N, T); or `points` in [0, 1] instead
of target_points), or a TAP-Vid pickle of the Kubric export. Each item takes a random window of
17 consecutive frames, one random crop (area 30-100%, aspect 0.5-2.0) resized to S x S, and
`num_points` tracks visible in the first frame (query t = 0), drawn with replacement when fewer.

Items: video uint8 (17, S, S, 3); query_points float32 (Q, 3) [t, y, x]; target_points float32
(Q, 17, 2) [x, y] pixels of the S x S raster (top-left pixel centre at (0.5, 0.5)); occluded
bool (Q, 17); index int64 ().
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import torch
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

from tasks.real.common import (DatasetFormatError, as_path, SkipLog, decode_image, require_dir,
                               to_chw, to_thwc, window_indices, window_start)


def load_tapvid_pickle(path: str | Path) -> list[dict]:
    """Videos of a TAP-Vid pickle as a list of dicts {name, video, points, occluded}.

    Only call this on a file you trust: unpickling can execute arbitrary code.
    """
    path = as_path(path, "TAP-Vid pickle")
    if not path.is_file():
        raise DatasetFormatError(f"TAP-Vid pickle not found: {path} (expected e.g. "
                                 f"tapvid_davis.pkl; see docs/real_datasets.md)")
    try:
        with open(path, "rb") as fh:
            data = pickle.load(fh)
    except (pickle.UnpicklingError, EOFError, AttributeError, ValueError) as err:
        raise DatasetFormatError(f"{path} is not a readable TAP-Vid pickle ({type(err).__name__}: "
                                 f"{err})") from err
    items = list(data.items()) if isinstance(data, dict) else list(enumerate(data))
    videos = []
    for name, entry in items:
        if not isinstance(entry, dict) or not {"video", "points", "occluded"} <= set(entry):
            raise DatasetFormatError(f"{path}: entry '{name}' lacks video/points/occluded; expected "
                                     f"the TAP-Vid format (docs/real_datasets.md)")
        video = entry["video"]
        if not isinstance(video, np.ndarray):  # Kinetics style: JPEG bytes per frame
            video = np.stack([decode_image(f, source=f"{path} video '{name}'") for f in video])
        points, occluded = np.asarray(entry["points"], np.float32), np.asarray(entry["occluded"], bool)
        if points.shape[:2] != occluded.shape or points.shape[1] != len(video):
            raise DatasetFormatError(f"{path}: video '{name}' has points {points.shape}, occluded "
                                     f"{occluded.shape} and {len(video)} frames; expected (N, T, 2), "
                                     f"(N, T) and T frames")
        videos.append({"name": str(name), "video": video, "points": points, "occluded": occluded})
    return videos


def query_first(occluded: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """TAP-Vid 'first' mode: (kept track indices (Q,), query frame of each (Q,)).

    occluded: bool (N, T). A track's query is its first visible frame; never-visible tracks go.
    """
    visible = ~occluded
    keep = np.flatnonzero(visible.any(axis=1))
    return keep, visible[keep].argmax(axis=1)


class TapVidEval(SkipLog):
    """TAP-Vid evaluation clips in 'first' query mode; see the module docstring."""

    def __init__(self, pickle_path: str | Path, *, image_size: int = 128, num_frames: int = 17,
                 stride: int = 4, num_points: int | None = 64):
        self.path, self.size = Path(pickle_path), image_size
        self.num_frames, self.stride, self.num_points = num_frames, stride, num_points
        self.videos = []
        for video in load_tapvid_pickle(pickle_path):
            frames = window_indices(0, num_frames, stride, len(video["video"]))
            keep, _ = query_first(video["occluded"][:, frames])
            if keep.size == 0:
                self._skip(f"{pickle_path}:{video['name']}", "no track visible in the sampled frames")
                continue
            self.videos.append((video, frames, keep))
        if not self.videos:
            raise DatasetFormatError(f"{pickle_path}: no video has a visible track")
        self._report_skips(f"tapvid/{self.path.name}")

    def __len__(self) -> int:
        return len(self.videos)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        video, frames, keep = self.videos[i]
        if self.num_points is not None:
            if keep.size >= self.num_points:  # a fixed subset per video: reproducible evaluation
                keep = np.sort(np.random.default_rng(i).choice(keep, self.num_points, replace=False))
            else:
                keep = np.resize(keep, self.num_points)
        s = self.size
        clip = F.resize(to_chw(video["video"][frames]), [s, s], antialias=True)
        occluded = video["occluded"][keep][:, frames]
        target = video["points"][keep][:, frames] * np.float32(s)     # [0, 1] -> pixels, (Q, T, 2)
        _, qt = query_first(occluded)
        q = np.arange(len(keep))
        query = np.stack([qt, target[q, qt, 1], target[q, qt, 0]], axis=-1)   # [t, y, x]
        return {"video": to_thwc(clip), "query_points": torch.from_numpy(query.astype(np.float32)),
                "target_points": torch.from_numpy(target.astype(np.float32)),
                "occluded": torch.from_numpy(occluded), "index": torch.tensor(i)}


class KubricTracks(SkipLog):
    """Kubric MOVi-E training clips with random crops; see the module docstring."""

    def __init__(self, path: str | Path, *, image_size: int = 128, num_frames: int = 17,
                 num_points: int = 64, crop_area=(0.3, 1.0), crop_aspect=(0.5, 2.0)):
        path = as_path(path, "Kubric MOVi-E tracks")
        self.size, self.num_frames, self.num_points = image_size, num_frames, num_points
        self.crop_area, self.crop_aspect = crop_area, crop_aspect
        if path.is_file():
            self.pickled = load_tapvid_pickle(path)
            self.files = [f"{path}:{v['name']}" for v in self.pickled]
        else:
            folder = require_dir(path, "Kubric MOVi-E tracks",
                                 "Expected a folder of .npz files or a TAP-Vid pickle.")
            self.pickled, self.files = None, sorted(folder.glob("*.npz"))
            if not self.files:
                raise DatasetFormatError(f"{folder} has no .npz files; expected one per video "
                                         f"with video, target_points, occluded")
        self._report_skips("kubric")

    def __len__(self) -> int:
        return len(self.files)

    def _load(self, i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if self.pickled is not None:
            v = self.pickled[i]
            h, w = v["video"].shape[1:3]
            return v["video"], v["points"] * np.array([w, h], np.float32), v["occluded"]
        try:
            with np.load(self.files[i]) as z:
                video, occluded = z["video"], z["occluded"].astype(bool)
                if "target_points" in z:
                    points = z["target_points"].astype(np.float32)
                else:
                    points = z["points"].astype(np.float32) * np.array(video.shape[2:0:-1], np.float32)
        except (KeyError, ValueError, OSError) as err:
            raise DatasetFormatError(f"{self.files[i]}: not a Kubric track file ({err}); expected "
                                     f"arrays video (T,H,W,3) uint8, target_points (N,T,2), "
                                     f"occluded (N,T)") from err
        return video, points, occluded

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        video, points, occluded = self._load(i)
        start = window_start(len(video), self.num_frames, "random")
        frames = window_indices(start, self.num_frames, 1, len(video))
        clip = to_chw(video[frames])
        points, occluded = points[:, frames], occluded[:, frames]
        s = self.size
        for _ in range(10):  # a crop can miss every first-frame point; draw again
            top, left, ch, cw = v2.RandomResizedCrop.get_params(clip, self.crop_area, self.crop_aspect)
            xy = (points - np.array([left, top], np.float32)) * np.array([s / cw, s / ch], np.float32)
            outside = ((xy < 0) | (xy >= s)).any(axis=-1)
            occ = occluded | outside
            candidates = np.flatnonzero(~occ[:, 0])
            if candidates.size:
                break
        else:
            raise DatasetFormatError(f"{self.files[i]}: no track is visible in the first frame")
        pick = candidates[torch.randint(0, candidates.size, (self.num_points,)).numpy()] \
            if candidates.size < self.num_points else \
            candidates[torch.randperm(candidates.size)[:self.num_points].numpy()]
        crop = F.resized_crop(clip, top, left, ch, cw, [s, s], antialias=True)
        target = xy[pick]
        query = np.stack([np.zeros(len(pick)), target[:, 0, 1], target[:, 0, 0]], axis=-1)
        return {"video": to_thwc(crop), "query_points": torch.from_numpy(query.astype(np.float32)),
                "target_points": torch.from_numpy(target.astype(np.float32)),
                "occluded": torch.from_numpy(occ[pick]), "index": torch.tensor(i)}

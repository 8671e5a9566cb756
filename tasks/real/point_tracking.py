"""Point tracking: TAP-Vid pickles for evaluation, Kubric MOVi-E tracks for training.

Evaluation (paper App. D.5; TAP-Vid 'first' query mode). A TAP-Vid pickle, loaded only from the
path the user gives (a pickle can run code when loaded: only open files you trust):
  * DAVIS / Perception Test style: dict video_name -> {video uint8 (T, H, W, 3),
    points float (N, T, 2) [x, y] in [0, 1], occluded bool (N, T)};
  * TAP-Vid-Kinetics, as tapnet's `generate_tapvid.py` writes it: ten shards
    `0000_of_0010.pkl` ... `0009_of_0010.pkl`, each a list of such dicts whose video is
    `np.array(tuple_of_jpeg_bytes)` (a 1-D array of dtype 'S', one JPEG per frame at 25 fps)
    and whose points are float64 shifted by half a pixel ((x W - 0.5) / W).
  The location may be one pickle, a folder of shards or a glob; JPEG frames are decoded only
  for the 17 frames sampled.
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

import glob
import os
import pickle
from pathlib import Path

import numpy as np
import torch
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

from tasks.real.common import (DatasetFormatError, SkipLog, as_path, carve_val, check_video_uint8,
                               decode_image, first_bad, require_dir, to_chw, to_thwc,
                               window_indices, window_start)


def tapvid_pickle_files(path: str | Path) -> list[Path]:
    """The pickle shards a user location names: one file, a folder, or a glob pattern.

    A folder gives its `*_of_*.pkl` shards (tapnet's generate_tapvid.py writes
    `0000_of_0010.pkl` ... `0009_of_0010.pkl`), or every `*.pkl` when it has none.
    """
    text = str(as_path(path, "TAP-Vid pickle"))
    if any(c in text for c in "*?["):
        files = sorted(Path(f) for f in glob.glob(os.path.expanduser(text)))
        where = f"the pattern {text}"
    elif Path(text).expanduser().is_dir():
        folder = Path(text).expanduser()
        files = sorted(folder.glob("*_of_*.pkl")) or sorted(folder.glob("*.pkl"))
        where = f"the folder {folder}"
    else:
        files, where = [Path(text).expanduser()], text
        if not files[0].is_file():
            raise DatasetFormatError(f"TAP-Vid pickle not found: {text} (expected a pickle such as "
                                     f"tapvid_davis.pkl, a folder of *_of_0010.pkl shards, or a "
                                     f"glob; see docs/real_datasets.md)")
    if not files:
        raise DatasetFormatError(f"TAP-Vid pickles: {where} matches no .pkl file (expected "
                                 f"tapvid_davis.pkl or the TAP-Vid-Kinetics shards *_of_0010.pkl)")
    return files


def _is_jpeg_frames(video) -> bool:
    # generate_tapvid.py stores np.array(tuple_of_jpeg_bytes): a 1-D array of dtype 'S' whose
    # elements are np.bytes_ (a bytes subclass); older exports used a plain list of bytes.
    if isinstance(video, np.ndarray):
        return video.ndim == 1 and (video.dtype.kind == "S" or video.dtype == object)
    return isinstance(video, (list, tuple))


def tapvid_frames(entry: dict, indices: np.ndarray | None = None) -> np.ndarray:
    """Frames `indices` (all when None) of a loaded TAP-Vid video as uint8 (n, H, W, 3).

    JPEG-encoded videos (TAP-Vid-Kinetics) are decoded here, frame by frame, so a loaded
    shard holds compressed bytes and only the sampled frames are ever decoded.
    """
    video = entry["video"]
    idx = np.arange(len(video)) if indices is None else np.asarray(indices)
    if entry.get("jpeg", False):
        return np.stack([decode_image(bytes(video[i]), source=f"{entry['source']} frame {i}")
                         for i in idx])
    return video[idx]


def load_tapvid_pickle(path: str | Path) -> list[dict]:
    """Videos of TAP-Vid pickle(s) as dicts {name, source, video, jpeg, points, occluded, height, width}.

    path: a pickle, a folder of shards or a glob (tapvid_pickle_files). Each pickle is either a
    dict name -> entry (DAVIS) or a list of entries (RGB-Stacking, TAP-Vid-Kinetics shards);
    an entry holds video (uint8 (T, H, W, 3), or T JPEG byte strings), points (N, T, 2) [x, y]
    in [0, 1] of the frame and occluded bool (N, T). `video` stays as stored (see
    tapvid_frames); points become float32, occluded bool. Visible points must lie within one
    pixel of [0, 1] and videos must be uint8: the error names the file, the video and the first
    bad record. Only call this on files you trust: unpickling can execute arbitrary code.
    """
    videos = []
    for file in tapvid_pickle_files(path):
        try:
            with open(file, "rb") as fh:
                data = pickle.load(fh)
        except (pickle.UnpicklingError, EOFError, AttributeError, ValueError, ImportError) as err:
            raise DatasetFormatError(f"{file} is not a readable TAP-Vid pickle ({type(err).__name__}: "
                                     f"{err})") from err
        if isinstance(data, dict):
            items = list(data.items())
        elif isinstance(data, list):
            items = [(f"{file.stem}:{i}", e) for i, e in enumerate(data)]
        else:
            raise DatasetFormatError(f"{file} holds a {type(data).__name__}; expected a dict "
                                     f"name -> video (DAVIS) or a list of videos (Kinetics shards)")
        videos += [_check_entry(file, str(name), entry) for name, entry in items]
    return videos


def _check_entry(file: Path, name: str, entry) -> dict:
    source = f"{file} video '{name}'"
    if not isinstance(entry, dict) or not {"video", "points", "occluded"} <= set(entry):
        raise DatasetFormatError(f"{file}: entry '{name}' lacks video/points/occluded; expected "
                                 f"the TAP-Vid format (docs/real_datasets.md)")
    video = entry["video"]
    jpeg = _is_jpeg_frames(video)
    if jpeg:
        video = np.asarray(video, dtype=object) if isinstance(video, (list, tuple)) else video
        height, width = decode_image(bytes(video[0]), source=f"{source} frame 0").shape[:2]
    else:
        video = check_video_uint8(video, source)
        height, width = video.shape[1:3]
    points, occluded = np.asarray(entry["points"], np.float32), np.asarray(entry["occluded"])
    if occluded.dtype != bool:
        raise DatasetFormatError(f"{source}: occluded has dtype {occluded.dtype}; expected bool (N, T)")
    if points.ndim != 3 or points.shape[2] != 2 or points.shape[:2] != occluded.shape \
            or points.shape[1] != len(video):
        raise DatasetFormatError(f"{source}: points {points.shape}, occluded {occluded.shape} and "
                                 f"{len(video)} frames; expected (N, T, 2), (N, T) and T frames")
    # generate_tapvid.py shifts points by half a pixel ((x W - 0.5) / W), so a visible point on
    # the first pixel sits just below 0: allow one pixel on each side.
    tol = np.array([1.0 / width, 1.0 / height], np.float32)
    outside = ((points < -tol) | (points > 1 + tol) | ~np.isfinite(points)).any(-1) & ~occluded
    bad = first_bad(outside)
    if bad is not None:
        n, t = bad
        raise DatasetFormatError(f"{source}: track {n} frame {t} is visible at [x, y] = "
                                 f"{points[n, t].tolist()}, outside [0, 1]; expected coordinates "
                                 f"normalised by the frame width and height")
    return {"name": name, "source": source, "video": video, "jpeg": jpeg, "points": points,
            "occluded": occluded, "height": int(height), "width": int(width)}


def query_first(occluded: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """TAP-Vid 'first' mode: (kept track indices (Q,), query frame of each (Q,)).

    occluded: bool (N, T). A track's query is its first visible frame; never-visible tracks go.
    """
    visible = ~occluded
    keep = np.flatnonzero(visible.any(axis=1))
    return keep, visible[keep].argmax(axis=1)


class TapVidEval(SkipLog):
    """TAP-Vid evaluation clips in 'first' query mode; see the module docstring.

    pickle_path: a TAP-Vid pickle, a folder of shards (*_of_0010.pkl) or a glob of them.
    """

    def __init__(self, pickle_path: str | Path, *, image_size: int = 128, num_frames: int = 17,
                 stride: int = 4, num_points: int | None = 64):
        self.path, self.size = str(pickle_path), image_size
        self.num_frames, self.stride, self.num_points = num_frames, stride, num_points
        self.videos = []
        for video in load_tapvid_pickle(pickle_path):
            frames = window_indices(0, num_frames, stride, len(video["video"]))
            keep, _ = query_first(video["occluded"][:, frames])
            if keep.size == 0:
                self._skip(video["source"], "no track visible in the sampled frames")
                continue
            self.videos.append((video, frames, keep))
        if not self.videos:
            raise DatasetFormatError(f"{pickle_path}: no video has a visible track")
        self._report_skips(f"tapvid/{Path(self.path).name}")

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
        clip = F.resize(to_chw(tapvid_frames(video, frames)), [s, s], antialias=True)
        occluded = video["occluded"][keep][:, frames]
        target = video["points"][keep][:, frames] * np.float32(s)     # [0, 1] -> pixels, (Q, T, 2)
        _, qt = query_first(occluded)
        q = np.arange(len(keep))
        query = np.stack([qt, target[q, qt, 1], target[q, qt, 0]], axis=-1)   # [t, y, x]
        return {"video": to_thwc(clip), "query_points": torch.from_numpy(query.astype(np.float32)),
                "target_points": torch.from_numpy(target.astype(np.float32)),
                "occluded": torch.from_numpy(occluded), "index": torch.tensor(i)}


class KubricTracks(SkipLog):
    """Kubric MOVi-E training clips with random crops; see the module docstring.

    split: 'train' or 'val', a seeded partition of the files (or pickled videos) by name
    (common.carve_val); None keeps them all. 'val' items draw their window and crop from a
    generator seeded by the item index, so the validation set is the same on every pass.
    """

    def __init__(self, path: str | Path, *, image_size: int = 128, num_frames: int = 17,
                 num_points: int = 64, crop_area=(0.3, 1.0), crop_aspect=(0.5, 2.0),
                 split: str | None = None, val_fraction: float = 0.02, split_seed: int = 0):
        path = as_path(path, "Kubric MOVi-E tracks")
        self.size, self.num_frames, self.num_points = image_size, num_frames, num_points
        self.crop_area, self.crop_aspect = crop_area, crop_aspect
        self.train = split != "val"
        if path.is_file():
            pickled = load_tapvid_pickle(path)
            names = [v["name"] for v in pickled]
        else:
            folder = require_dir(path, "Kubric MOVi-E tracks",
                                 "Expected a folder of .npz files or a TAP-Vid pickle.")
            pickled = None
            names = [p.name for p in sorted(folder.glob("*.npz"))]
            if not names:
                raise DatasetFormatError(f"{folder} has no .npz files; expected one per video "
                                         f"with video, target_points, occluded")
        order = list(range(len(names)))
        if split is not None:
            order = carve_val(order, names, split, val_fraction=val_fraction, seed=split_seed,
                              what=f"Kubric tracks {path}")
        self.pickled = None if pickled is None else [pickled[j] for j in order]
        self.files = ([f"{path}:{names[j]}" for j in order] if pickled is not None
                      else [path / names[j] for j in order])
        self._report_skips("kubric")

    def __len__(self) -> int:
        return len(self.files)

    def _load(self, i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if self.pickled is not None:
            v = self.pickled[i]
            scale = np.array([v["width"], v["height"]], np.float32)
            return tapvid_frames(v), v["points"] * scale, v["occluded"]
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
        source = str(self.files[i])
        video = check_video_uint8(video, source)
        if points.ndim != 3 or points.shape[2] != 2 or points.shape[:2] != occluded.shape \
                or points.shape[1] != len(video):
            raise DatasetFormatError(f"{source}: target_points {points.shape}, occluded "
                                     f"{occluded.shape}, {len(video)} frames; expected (N, T, 2), "
                                     f"(N, T) and T frames")
        h, w = video.shape[1:3]
        # Visible points lie on the raster: [0, W] x [0, H] pixels (pixel centres at +0.5).
        outside = ((points < 0) | (points > np.array([w, h], np.float32))
                   | ~np.isfinite(points)).any(-1) & ~occluded
        bad = first_bad(outside)
        if bad is not None:
            n, t = bad
            raise DatasetFormatError(f"{source}: track {n} frame {t} is visible at [x, y] = "
                                     f"{points[n, t].tolist()} px, outside the {w} x {h} raster; "
                                     f"expected pixel coordinates (or 'points' in [0, 1])")
        return video, points, occluded

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        if self.train:
            return self._item(i)
        # Validation: the same window and crop on every pass, without touching the global RNG.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(i)
            return self._item(i)

    def _item(self, i: int) -> dict[str, torch.Tensor]:
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

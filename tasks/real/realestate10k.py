"""RealEstate10K relative camera pose: the per-sequence camera files plus extracted frames.

Camera file `<root>/<split>/<sequence>.txt` (the official release; split 'train' or 'test',
'val' is read as 'test'): line 1 is the YouTube URL, then one line per frame with 19 numbers
    timestamp_us  fx fy cx cy  0 0  r00 r01 r02 t0  r10 r11 r12 t1  r20 r21 r22 t2
where the intrinsics are normalised by the image width (fx, cx) and height (fy, cy) and the
3 x 4 matrix maps world points into the camera (world-to-camera, OpenCV axes: x right, y down,
z forward). Frames: `<root>/frames/<split>/<sequence>/<timestamp_us>.{png,jpg}` (also accepted:
`<root>/<split>/<sequence>/<timestamp_us>.*`).

Clip: `num_frames` camera lines at `stride`, starting at a random line in training and at the
first in evaluation; frames resized (short side `image_size`) and centre-cropped.

Target (tasks/task.py): pose = inv(cam_to_world_first) @ cam_to_world_last
                             = w2c_first @ inv(w2c_last), a (3, 4) [R | t].
Translation units: RealEstate10K's poses come from SfM/SLAM, so their scale is arbitrary per
sequence. `translation_scale` documents the choice: None keeps SfM units; a float multiplies every
translation; a path to a JSON {sequence: metres_per_unit} (e.g. from a metric depth model)
gives metric translations. Sequences listed without frames on disk are skipped (recorded in
`dataset.skipped`), as are sequences shorter than the clip.

Items: video uint8 (T, S, S, 3); pose float32 (3, 4); intrinsics float32 (3, 3) pixel K of the
first frame on the S x S raster; index int64 ().
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from tasks.real.common import (IMAGE_EXTENSIONS, DatasetFormatError, SkipLog, decode_image,
                               require_dir, resize_short_crop, scale_intrinsics,
                               short_side_crop_geometry, to_chw, to_thwc, window_start)


def read_camera_file(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A RealEstate10K camera file -> (timestamps int64 (N,), intrinsics float64 (N, 4)
    normalised [fx, fy, cx, cy], world_to_camera float64 (N, 4, 4))."""
    lines = [ln for ln in path.read_text().splitlines()[1:] if ln.strip()]
    if not lines:
        raise DatasetFormatError(f"{path}: no camera lines after the URL line")
    rows = []
    for lineno, line in enumerate(lines, 2):
        parts = line.split()
        if len(parts) != 19:
            raise DatasetFormatError(f"{path}:{lineno}: {len(parts)} numbers; expected 19 "
                                     f"(timestamp, fx fy cx cy, 0 0, 12 of a 3x4 world-to-camera)")
        rows.append([float(p) for p in parts])
    arr = np.asarray(rows, dtype=np.float64)
    w2c = np.tile(np.eye(4), (len(arr), 1, 1))
    w2c[:, :3, :4] = arr[:, 7:].reshape(len(arr), 3, 4)  # row-major 3 x 4 per line
    return arr[:, 0].astype(np.int64), arr[:, 1:5], w2c


def relative_pose(w2c_first: np.ndarray, w2c_last: np.ndarray) -> np.ndarray:
    """(3, 4) pose of the last camera in the first camera's frame (tasks/task.py convention).

    inv(c2w_first) @ c2w_last = w2c_first @ inv(w2c_last): maps last-camera coordinates into
    first-camera coordinates.
    """
    return (w2c_first @ np.linalg.inv(w2c_last))[:3, :4]


class RealEstate10K(SkipLog):
    """Clips with the relative pose first -> last; see the module docstring for the item keys."""

    def __init__(self, root: str | Path, split: str, *, image_size: int = 128,
                 num_frames: int = 17, stride: int = 1,
                 translation_scale: float | str | None = None, frames_dir: str | None = None):
        root = require_dir(root, "RealEstate10K root", "Point the gin macro at the dataset folder.")
        split = "test" if split == "val" and not (root / "val").is_dir() else split
        cam_dir = require_dir(root / split, f"RealEstate10K split '{split}'",
                              f"expected the camera files {root / split}/<sequence>.txt")
        frames_root = Path(frames_dir.format(split=split)) if frames_dir else root / "frames" / split
        self.train, self.image_size = split == "train", image_size
        self.num_frames, self.stride = num_frames, stride
        self.scales = self._load_scales(translation_scale)
        span = (num_frames - 1) * stride + 1
        self.sequences = []
        for cam_file in sorted(cam_dir.glob("*.txt")):
            seq = cam_file.stem
            frame_dir = next((d for d in (frames_root / seq, cam_dir / seq) if d.is_dir()), None)
            if frame_dir is None:
                self._skip(cam_file, f"no extracted frames in {frames_root / seq}")
                continue
            timestamps, intr, w2c = read_camera_file(cam_file)
            if len(timestamps) < span:
                self._skip(cam_file, f"{len(timestamps)} frames, fewer than the clip's {span}")
                continue
            if isinstance(self.scales, dict) and seq not in self.scales:
                raise DatasetFormatError(f"translation_scale file has no entry for sequence "
                                         f"'{seq}' ({cam_file}); expected one per sequence")
            self.sequences.append((seq, frame_dir, timestamps, intr, w2c))
        if not self.sequences:
            raise DatasetFormatError(f"RealEstate10K '{split}' under {root}: no sequence with "
                                     f"frames on disk ({len(self.skipped)} skipped)")
        self._report_skips(f"realestate10k/{split}")

    @staticmethod
    def _load_scales(spec: float | str | None):
        if spec is None or isinstance(spec, (int, float)):
            return 1.0 if spec is None else float(spec)
        path = Path(spec)
        if not path.is_file():
            raise DatasetFormatError(f"translation_scale: file not found: {path} (expected a JSON "
                                     f"object {{sequence: metres_per_unit}})")
        return {k: float(v) for k, v in json.loads(path.read_text()).items()}

    def __len__(self) -> int:
        return len(self.sequences)

    def _frame_path(self, frame_dir: Path, ts: int) -> Path:
        for ext in IMAGE_EXTENSIONS:
            if (frame_dir / f"{ts}{ext}").is_file():
                return frame_dir / f"{ts}{ext}"
        raise DatasetFormatError(f"frame {frame_dir}/{ts}.png (or .jpg) not found: every camera "
                                 f"line needs its extracted frame, named by the timestamp")

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        seq, frame_dir, timestamps, intr, w2c = self.sequences[i]
        span = (self.num_frames - 1) * self.stride + 1
        start = window_start(len(timestamps), span, "random" if self.train else "first")
        lines = start + self.stride * np.arange(self.num_frames)
        frames = np.stack([decode_image(self._frame_path(frame_dir, timestamps[j])) for j in lines])
        h, w = frames.shape[1:3]
        s = self.image_size
        video = resize_short_crop(to_chw(frames), s, s)
        pose = relative_pose(w2c[lines[0]], w2c[lines[-1]])
        scale = self.scales[seq] if isinstance(self.scales, dict) else self.scales
        pose[:, 3] *= scale
        fx, fy, cx, cy = intr[lines[0]]
        k = np.array([[fx * w, 0.0, cx * w], [0.0, fy * h, cy * h], [0.0, 0.0, 1.0]])
        return {"video": to_thwc(video), "pose": torch.from_numpy(pose.astype(np.float32)),
                "intrinsics": torch.from_numpy(scale_intrinsics(k, *short_side_crop_geometry(h, w, s, s))),
                "index": torch.tensor(i)}

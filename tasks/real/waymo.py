"""Waymo Open 2-D box tracks from a converted layout (FRONT camera frames + per-frame box JSON).

Converted layout (docs/real_datasets.md says how to produce it from the v2 parquet files):
    <root>/<split>/<segment>/frames/<timestamp_us>.jpg     FRONT camera, 10 Hz, full resolution
    <root>/<split>/<segment>/boxes/<timestamp_us>.json     {"boxes": [{"id": str,
                                                             "box": [x0, y0, x1, y1]}, ...]}
box corners in pixels of that frame (x right, y down); split 'train' / 'val' (also
'training' / 'validation').

Clip (paper App. D.6, following MooG): 10 Hz -> 5 Hz (every other frame), a random window of 17
of those frames (seeded by the example index in evaluation, so the evaluation set is fixed),
frames resized so the short side is `image_size` and centre-cropped to a square. Tracks are the
objects present in the first frame of the window; a box is clipped to the crop; objects whose
first-frame box covers less than 0.5% of the crop are dropped; the 25 largest are kept. Segments
shorter than the window are skipped (`dataset.skipped`).

Items: video uint8 (17, S, S, 3); boxes float32 (25, 17, 4) [x0, y0, x1, y1] in [0, 1] of the crop
width / height, zero where padded or absent; box_valid bool (25, 17); index int64 ().
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from tasks.real.common import (DatasetFormatError, SkipLog, decode_image, require_dir,
                               require_file, resize_short_crop, short_side_crop_geometry,
                               to_chw, to_thwc, window_start)

SPLIT_ALIASES = {"train": ("train", "training"), "val": ("val", "validation")}


def read_box_file(path: Path) -> dict[str, np.ndarray]:
    """A per-frame box JSON -> {object id: [x0, y0, x1, y1] float64 pixels}."""
    try:
        data = json.loads(path.read_text())
        return {str(b["id"]): np.asarray(b["box"], np.float64).reshape(4) for b in data["boxes"]}
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as err:
        raise DatasetFormatError(f"{path}: not a box file ({type(err).__name__}: {err}); expected "
                                 f'{{"boxes": [{{"id": str, "box": [x0, y0, x1, y1]}}]}}') from err


class WaymoBoxes(SkipLog):
    """17-frame Waymo clips with up to 25 box tracks; see the module docstring for the keys."""

    def __init__(self, root: str | Path, split: str, *, image_size: int = 128,
                 num_frames: int = 17, frame_stride: int = 2, max_boxes: int = 25,
                 min_box_area: float = 0.005):
        root = require_dir(root, "Waymo root", "Point the gin macro at the converted layout.")
        split_dir = next((root / a for a in SPLIT_ALIASES.get(split, (split,)) if (root / a).is_dir()), None)
        if split_dir is None:
            raise DatasetFormatError(f"Waymo split '{split}' not found: expected "
                                     f"{root / split}/<segment>/frames and boxes")
        self.train, self.size, self.num_frames = split == "train", image_size, num_frames
        self.frame_stride, self.max_boxes, self.min_box_area = frame_stride, max_boxes, min_box_area
        self.segments = []
        for seg in sorted(p for p in split_dir.iterdir() if p.is_dir()):
            stamps = sorted((p.stem for p in (seg / "frames").glob("*.jpg")), key=int)
            stamps = stamps[::frame_stride]  # 10 Hz -> 5 Hz
            if len(stamps) < num_frames:
                self._skip(seg, f"{len(stamps)} frames at 5 Hz, fewer than {num_frames}")
                continue
            self.segments.append((seg, stamps))
        if not self.segments:
            raise DatasetFormatError(f"Waymo '{split}' under {split_dir}: no segment with "
                                     f"{num_frames} frames at 5 Hz ({len(self.skipped)} skipped)")
        self._report_skips(f"waymo/{split}")

    def __len__(self) -> int:
        return len(self.segments)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        seg, stamps = self.segments[i]
        # Evaluation windows are random too (paper), but seeded per example: a fixed set.
        gen = None if self.train else torch.Generator().manual_seed(i)
        start = window_start(len(stamps), self.num_frames, "random", generator=gen)
        names = stamps[start:start + self.num_frames]
        frames = np.stack([decode_image(seg / "frames" / f"{n}.jpg") for n in names])
        boxes = [read_box_file(require_file(seg / "boxes" / f"{n}.json", "Waymo box file",
                                            "every frame needs its box JSON")) for n in names]
        h, w = frames.shape[1:3]
        s = self.size
        video = resize_short_crop(to_chw(frames), s, s)
        sy, sx, top, left = short_side_crop_geometry(h, w, s, s)
        to_crop = np.array([sx, sy, sx, sy]), np.array([left, top, left, top], np.float64)

        def normalise(b: np.ndarray) -> np.ndarray:  # pixels -> [0, 1] of the crop, clipped
            return np.clip((b * to_crop[0] - to_crop[1]) / s, 0.0, 1.0)

        def area(b: np.ndarray) -> float:
            return max(b[2] - b[0], 0.0) * max(b[3] - b[1], 0.0)

        first = {k: normalise(b) for k, b in boxes[0].items()}
        ids = [k for k, b in first.items() if area(b) >= self.min_box_area]
        ids = sorted(ids, key=lambda k: (-area(first[k]), k))[:self.max_boxes]
        out = np.zeros((self.max_boxes, self.num_frames, 4), np.float32)
        valid = np.zeros((self.max_boxes, self.num_frames), bool)
        for n, obj in enumerate(ids):
            for t, frame_boxes in enumerate(boxes):
                if obj in frame_boxes:
                    b = normalise(frame_boxes[obj])
                    if area(b) > 0:  # a box entirely outside the crop is absent there
                        out[n, t], valid[n, t] = b, True
        return {"video": to_thwc(video), "boxes": torch.from_numpy(out),
                "box_valid": torch.from_numpy(valid), "index": torch.tensor(i)}
